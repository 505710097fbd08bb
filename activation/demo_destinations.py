"""The demo store's destinations (called by `manage.py seed_demo` after the audiences): a CSV
export for the email tool and a Meta Custom Audiences upload file, each synced once, so that
the admin shows sync runs with sent and excluded counts, the delivery ledger and the files
under CDP_EXPORT_DIR/demo-store/ without any webhook receiver. Idempotent: what exists is
reused, and a sync that ran already is not run again."""

from __future__ import annotations

from typing import Any

from activation.destinations import destination_create, sync_create
from activation.enums import AudienceStatus, DestinationKind, SyncMode
from activation.models import Audience, Destination, Sync, SyncRun
from activation.sync import sync_run_start

# The demo has about 150 shoppers: a minimum of 100 would refuse every audience of it.
DEMO_MIN_AUDIENCE_SIZE = 10

DESTINATIONS: list[dict[str, Any]] = [
    {
        "name": "Newsletter tool (CSV)",
        "kind": DestinationKind.CSV,
        "purposes": ["marketing_email"],
        "data": {"identifiers": ["user_id", "email"], "traits": ["first_name", "country"]},
        "config": {"prefix": "newsletter"},
    },
    {
        "name": "Meta Custom Audiences",
        "kind": DestinationKind.META_CUSTOM_AUDIENCES,
        "purposes": ["advertising"],
        "data": {
            "identifiers": ["email", "phone"],
            "traits": ["first_name", "last_name", "country"],
        },
        "config": {"prefix": "meta"},
        "min_audience_size": DEMO_MIN_AUDIENCE_SIZE,
    },
]


def _audience(workspace: Any) -> Audience | None:
    """The largest active audience of the demo (the syncs need members to show anything)."""
    return (
        Audience.objects.filter(workspace=workspace, status=AudienceStatus.ACTIVE)
        .order_by("-size", "key")
        .first()
    )


def demo_destinations_seed(*, workspace: Any) -> list[str]:
    """Create the demo's destinations and syncs and run each sync once; one line per sync."""
    audience = _audience(workspace)
    if audience is None:
        return ["No audience to sync: run the audience part of the demo first."]
    lines = []
    for spec in DESTINATIONS:
        destination = Destination.objects.filter(workspace=workspace, name=spec["name"]).first()
        if destination is None:
            destination = destination_create(workspace=workspace, **spec)
        sync = Sync.objects.filter(audience=audience, destination=destination).first()
        if sync is None:
            sync = sync_create(
                audience=audience, destination=destination, mode=SyncMode.FULL, interval_minutes=0
            )
        if not SyncRun.objects.filter(sync=sync).exists():
            # Without a broker the task runs at once (the command is not in a transaction).
            sync_run_start(sync=sync)
        run = SyncRun.objects.filter(sync=sync).order_by("-created_at").first()
        assert run is not None
        excluded = ", ".join(f"{k}: {v}" for k, v in sorted((run.excluded or {}).items()))
        lines.append(
            f"Sync {audience.key} -> {destination.name}: {run.status}, sent {run.sent}"
            + (f", excluded {excluded}" if excluded else "")
            + (f", file {run.artifact}" if run.artifact else "")
        )
    return lines
