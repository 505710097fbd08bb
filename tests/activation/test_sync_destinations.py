"""Creating destinations and syncs: what each kind may declare, clear errors for bad input,
the secret sealed under a key of its own, audit entries, and the scheduler."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.db import connection
from django.utils import timezone

from activation import services, sync
from activation.destinations import export_dir
from activation.exceptions import DestinationInvalid, SyncDisabled, SyncInvalid, SyncRunning
from activation.models import Destination, Sync, SyncRun
from activation.webhooks import WebhookUrlInvalid
from cdp.core import registry
from cdp.core.exceptions import Conflict
from consent import services as consent_services
from profiles.models import DataKey
from tests.activation.sync_helpers import SECRET, audience
from tests.profiles.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _purposes(workspace: Any) -> None:
    consent_services.purposes_ensure_defaults(workspace=workspace)


def _create(workspace: Any, **overrides: Any) -> Destination:
    fields: dict[str, Any] = {
        "workspace": workspace,
        "name": "Hook",
        "kind": "webhook",
        "purposes": ["advertising"],
        "data": {"identifiers": ["user_id"], "traits": ["country"]},
        "config": {"url": "https://93.184.215.14/hooks"},
        "secret": SECRET,
    }
    fields.update(overrides)
    return services.destination_create(**fields)


def test_a_webhook_destination_seals_its_secret_and_is_audited(workspace: Any, owner: Any) -> None:
    # when
    destination = _create(workspace, actor=owner)

    # then: the secret is sealed under a `destination` key owned by no profile
    key = DataKey.objects.get(pk=str(destination.data_key_id))
    assert (key.purpose, key.profile_id) == ("destination", None)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret FROM activation_destination WHERE id = %s",
            [destination.pk if connection.vendor == "postgresql" else destination.pk.hex],
        )
        (stored,) = cursor.fetchone()
    assert SECRET.encode() not in bytes(stored)
    assert Destination.objects.get(pk=destination.pk).secret == SECRET
    assert sorted(destination.purposes.values_list("key", flat=True)) == ["advertising"]
    # ...and its creation is in the audit trail under the steward, without the secret
    entry = get_logentry_model().objects.get(object_pk=str(destination.pk))
    assert entry.actor == owner
    assert "secret" not in entry.changes_dict


@pytest.mark.parametrize(
    ("overrides", "error", "code"),
    [
        ({"config": {}}, DestinationInvalid, "url_required"),
        ({"config": {"url": "ftp://example.com/x"}}, WebhookUrlInvalid, "invalid_webhook_url"),
        ({"config": {"url": "http://127.0.0.1:9/x"}}, WebhookUrlInvalid, "invalid_webhook_url"),
        (
            {"config": {"url": "https://user:pw@93.184.215.14/x"}},
            WebhookUrlInvalid,
            "invalid_webhook_url",
        ),
        (
            {"config": {"url": "https://93.184.215.14/x", "path": "/etc"}},
            DestinationInvalid,
            "invalid_config",
        ),
        ({"secret": None}, DestinationInvalid, "secret_required"),
        ({"secret": "short"}, DestinationInvalid, "secret_required"),
        ({"purposes": []}, DestinationInvalid, "purposes_required"),
        ({"purposes": ["telepathy"]}, DestinationInvalid, "unknown_purpose"),
        ({"kind": "carrier_pigeon"}, DestinationInvalid, "invalid_kind"),
        ({"name": "  "}, DestinationInvalid, "invalid_destination"),
        ({"data": {"identifiers": ["shoe_size"]}}, DestinationInvalid, "invalid_identifiers"),
        ({"data": {"identifiers": "email"}}, DestinationInvalid, "invalid_identifiers"),
        ({"data": {"emails": []}}, DestinationInvalid, "invalid_data"),
        ({"data": {"traits": ["a b"]}}, DestinationInvalid, "invalid_traits"),
        ({"min_audience_size": 0}, DestinationInvalid, "invalid_min_size"),
        (
            {"kind": "google_customer_match", "data": {"identifiers": ["user_id"]}},
            DestinationInvalid,
            "invalid_identifiers",
        ),
        (
            {"kind": "meta_custom_audiences", "data": {"identifiers": []}},
            DestinationInvalid,
            "invalid_identifiers",
        ),
        (
            {
                "kind": "google_customer_match",
                "data": {"identifiers": ["email"], "traits": ["lifetime_value"]},
            },
            DestinationInvalid,
            "invalid_traits",
        ),
        (
            {"kind": "csv", "data": {"identifiers": ["email"]}, "config": {"prefix": "../up"}},
            DestinationInvalid,
            "invalid_config",
        ),
        (
            {
                "kind": "google_customer_match",
                "data": {"identifiers": ["email"]},
                "config": {"default_region": "usa"},
            },
            DestinationInvalid,
            "invalid_config",
        ),
    ],
)
def test_bad_destinations_are_refused_with_a_code_and_nothing_is_stored(
    workspace: Any, overrides: dict[str, Any], error: type[Exception], code: str
) -> None:
    # given
    keys = DataKey.objects.count()

    # when
    with pytest.raises(error) as refused:
        _create(workspace, **overrides)

    # then
    assert refused.value.code == code  # type: ignore[attr-defined]
    assert not Destination.objects.exists()
    assert DataKey.objects.count() == keys


def test_a_private_webhook_address_is_allowed_only_when_configured(
    workspace: Any, settings: Any
) -> None:
    # given
    settings.CDP_WEBHOOK_ALLOW_PRIVATE = True

    # when
    destination = _create(workspace, config={"url": "http://127.0.0.1:8080/hook"})

    # then
    assert destination.config == {"url": "http://127.0.0.1:8080/hook"}


def test_a_destination_name_is_unique_in_its_workspace(workspace: Any) -> None:
    # given
    _create(workspace)

    # when / then
    with pytest.raises(Conflict) as refused:
        _create(workspace)
    assert refused.value.code == "destination_exists"
    assert Destination.objects.count() == 1


def test_file_destinations_need_no_secret_and_write_under_the_workspace(
    workspace: Any,
) -> None:
    # when
    destination = _create(
        workspace,
        kind="google_customer_match",
        secret=None,
        data={"identifiers": ["email", "phone"], "traits": ["first_name", "country"]},
        config={"prefix": "gads", "canonicalize_gmail": False, "default_region": "US"},
    )

    # then
    assert destination.data_key_id is None
    assert destination.min_audience_size == 100
    assert export_dir(workspace).name == "acme"


def test_a_sync_joins_an_audience_and_a_destination_of_one_workspace(
    workspace: Any, owner: Any
) -> None:
    # given
    destination = _create(workspace)
    other = WorkspaceFactory(slug="globex")
    foreign = audience(other)

    # then: another workspace's audience is refused; bad modes and intervals too
    with pytest.raises(SyncInvalid) as refused:
        services.sync_create(audience=foreign, destination=destination, actor=owner)
    assert refused.value.code == "workspace_mismatch"
    aud = audience(workspace)
    for bad, code in (
        ({"mode": "sometimes"}, "invalid_mode"),
        ({"interval_minutes": -1}, "invalid_interval"),
    ):
        with pytest.raises(SyncInvalid) as refused:
            services.sync_create(audience=aud, destination=destination, **bad)
        assert refused.value.code == code
    assert not Sync.objects.exists()

    # when
    created = services.sync_create(audience=aud, destination=destination, actor=owner)

    # then
    assert (created.workspace_id, created.mode, created.interval_minutes) == (
        workspace.pk,
        "incremental",
        60,
    )
    with pytest.raises(Conflict):
        services.sync_create(audience=aud, destination=destination)


def test_a_disabled_sync_does_not_run(workspace: Any) -> None:
    # given
    created = services.sync_create(audience=audience(workspace), destination=_create(workspace))
    Sync.objects.filter(pk=created.pk).update(enabled=False)

    # when / then
    with pytest.raises(SyncDisabled):
        services.sync_run_start(sync=created)
    assert not SyncRun.objects.exists()


def test_a_stale_run_is_marked_failed_and_no_longer_blocks(workspace: Any) -> None:
    # given: a run queued three hours ago whose worker died
    created = services.sync_create(audience=audience(workspace), destination=_create(workspace))
    stale = services.sync_run_start(sync=created)
    with pytest.raises(SyncRunning):
        services.sync_run_start(sync=created)
    SyncRun.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=3))

    # when
    fresh = services.sync_run_start(sync=created)

    # then
    stale.refresh_from_db()
    assert (stale.status, fresh.status) == ("failed", "queued")
    assert "Abandoned" in stale.error


def test_the_scheduler_starts_syncs_whose_interval_has_passed(workspace: Any) -> None:
    # given: an hourly sync last run 61 minutes ago, one run 10 minutes ago, a manual one
    destination = _create(workspace)
    due, recent, manual = (
        services.sync_create(
            audience=audience(workspace, key), destination=destination, interval_minutes=minutes
        )
        for key, minutes in (("due", 60), ("recent", 60), ("manual", 0))
    )
    now = timezone.now()
    Sync.objects.filter(pk=due.pk).update(last_run_at=now - timedelta(minutes=61))
    Sync.objects.filter(pk=recent.pk).update(last_run_at=now - timedelta(minutes=10))

    # when
    started = sync.syncs_start_due(now=now)

    # then
    assert [run.sync_id for run in started] == [due.pk]
    assert not SyncRun.objects.filter(sync__in=[recent, manual]).exists()


def test_destinations_are_listed_as_recipients_for_the_records_of_processing(
    workspace: Any,
) -> None:
    # given
    _create(workspace, purposes=["advertising", "analytics"])

    # when
    listed = [r for name, r in registry.recipients(workspace) if name == "activation.destinations"]

    # then
    assert [(r.name, r.kind, r.purposes, r.data_categories) for r in listed] == [
        (
            "Hook",
            "destination",
            ("advertising", "analytics"),
            ("identifier:user_id", "trait:country"),
        )
    ]
    assert registry.recipients(WorkspaceFactory(slug="globex")) == []
