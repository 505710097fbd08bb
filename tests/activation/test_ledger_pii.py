"""Sentinel personal data sent through every kind of destination and taken back again: no
table (the delivery ledger, sync runs, removals included) holds it in plaintext, no log line
carries it, and the ad-platform files hold only hashes of it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from activation import removals, services
from activation.models import Removal
from tests.activation.sync_helpers import (
    Person,
    Receiver,
    audience,
    decide,
    enter,
    file_destination,
    grant,
    run_sync,
    source_for,
    webhook,
)
from tests.profiles.ingest_helpers import msg
from tests.test_no_plaintext_pii import SENTINELS, scan_all_tables

pytestmark = pytest.mark.django_db


def _sentinel_person(workspace: Any) -> Person:
    from profiles import services as profile_services

    outcome = profile_services.ingest_messages(
        source=source_for(workspace),
        messages=[
            msg(
                "identify",
                user_id=SENTINELS["user_id"],
                traits={
                    "email": SENTINELS["email"],
                    "phone": SENTINELS["phone"],
                    "first_name": SENTINELS["first_name"],
                    "country": "GB",
                },
            )
        ],
    )
    return Person(
        outcome.profile_ids[0], SENTINELS["user_id"], SENTINELS["email"], SENTINELS["phone"]
    )


def _values() -> dict[str, str]:
    return {
        name: SENTINELS[name]
        for name in ("email_normalized", "phone_normalized", "first_name", "user_id")
    }


def test_identifier_values_never_rest_in_plaintext_nor_reach_the_logs(
    workspace: Any,
    receiver: Receiver,
    export_dir: Path,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: the person is sent to a webhook, Google, Meta
    caplog.set_level(logging.DEBUG)
    who = _sentinel_person(workspace)
    grant(workspace, who, "advertising")
    aud = audience(workspace)
    enter(aud, who)
    hook = webhook(workspace, receiver.url)
    ad_platforms = [
        file_destination(
            workspace,
            kind,
            data={"identifiers": ["email", "phone"], "traits": ["first_name", "country"]},
        )
        for kind in ("google_customer_match", "meta_custom_audiences")
    ]
    for destination in (hook, *ad_platforms):
        sync = services.sync_create(
            audience=aud, destination=destination, mode="full", interval_minutes=0
        )
        run_sync(sync, django_capture_on_commit_callbacks)

    # when: she withdraws: removals are queued with their payloads (still unsent)
    decide(workspace, who, advertising="withdrawn")
    assert Removal.objects.count() == 3

    # then: no table holds any of her values in plaintext
    assert scan_all_tables() == []
    # ...the webhook received them (it is the destination), signed
    assert SENTINELS["user_id"].encode() in receiver.hits[0].body
    # ...and the ad-platform files hold hashes only
    files = sorted(p for p in export_dir.rglob("*") if p.is_file())
    assert len(files) == 2
    for path in files:
        text = path.read_text(encoding="utf-8").lower()
        for name, value in _values().items():
            assert value.lower() not in text, (path.name, name)
            assert value.lower().lstrip("+") not in text, (path.name, name)

    # when: the removals go out
    done = removals.removals_send_due()

    # then: still nothing in plaintext; each removal's payload is gone with its key
    assert done.sent == 3
    assert scan_all_tables() == []
    assert set(Removal.objects.values_list("payload", flat=True)) == {None}
    for path in sorted(p for p in export_dir.rglob("*") if p.is_file()):
        text = path.read_text(encoding="utf-8").lower()
        assert all(v.lower().lstrip("+") not in text for v in _values().values())
    # ...and no log line, message or argument, ever carried a value
    logged = "\n".join(
        f"{r.getMessage()} {r.args!r} {getattr(r, '__dict__', {})!r}" for r in caplog.records
    ).lower()
    assert logged
    for name, value in _values().items():
        assert value.lower() not in logged, name
