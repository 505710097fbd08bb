"""Retention: each kind of policy removes exactly what is past its cutoff (rows at the cutoff
stay), in its own workspace only; inactive profiles are erased through the registry without
suppression; a dry run changes nothing; every real run is audited with its counts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from cdp.core import registry
from cdp.core.exceptions import InvalidInput
from cdp.core.registry import ErasureReport, ErasureStatus, PersonalDataHandler
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.models import ConsentRecord
from consent.services import Evidence, Subject
from governance import chain, retention, services, tasks
from governance.enums import RetentionKind, RetentionUnit
from governance.models import ExportArchive, GovernanceSettings, RetentionPolicy
from profiles import services as profile_services
from profiles.contracts import InboundMessage
from profiles.models import DataKey, Event, Identity, Profile, Suppression, Trait
from tests.governance.request_helpers import frozen, in_progress

NOW = datetime(2027, 3, 31, 3, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
LogEntry = get_logentry_model()
_ids = itertools.count(1)


def message(
    *,
    user_id: str,
    at: datetime,
    type: str = "track",
    name: str | None = None,
    received: datetime | None = None,
    **fields: Any,
) -> InboundMessage:
    n = next(_ids)
    return InboundMessage(
        type=type,
        message_id=f"ret-{n}",
        received_at=received or at,
        timestamp=at,
        user_id=user_id,
        name=name if name is not None else ("Order Completed" if type == "track" else ""),
        **fields,
    )


@pytest.fixture
def source(workspace: Any) -> Any:
    return profile_services.source_create(workspace=workspace, name="Web")


def ingest(source: Any, *messages: InboundMessage) -> list[Any]:
    return profile_services.ingest_messages(source=source, messages=list(messages)).profile_ids


def only_policies(workspace: Any, *specs: dict[str, Any]) -> list[RetentionPolicy]:
    """The workspace's policies are exactly these (the defaults are seeded, then removed)."""
    retention.retention_defaults_ensure(workspace=workspace)
    RetentionPolicy.objects.filter(workspace=workspace).delete()
    return [
        retention.retention_policy_create(workspace=workspace, name=f"policy {i}", **spec)
        for i, spec in enumerate(specs)
    ]


def run_entries(policy: RetentionPolicy) -> list[Any]:
    return [
        e
        for e in LogEntry.objects.get_for_object(policy).order_by("pk")
        if (e.additional_data or {}).get("retention_run")
    ]


# --- the cutoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "period", "unit", "expected"),
    [
        (NOW, 13, RetentionUnit.MONTHS, datetime(2026, 2, 28, 3, 0, tzinfo=UTC)),
        (NOW, 7, RetentionUnit.DAYS, datetime(2027, 3, 24, 3, 0, tzinfo=UTC)),
        (
            datetime(2028, 2, 29, 12, tzinfo=UTC),
            3,
            RetentionUnit.YEARS,
            datetime(2025, 2, 28, 12, tzinfo=UTC),
        ),
        (
            datetime(2027, 1, 15, tzinfo=UTC),
            1,
            RetentionUnit.MONTHS,
            datetime(2026, 12, 15, tzinfo=UTC),
        ),
    ],
)
def test_the_cutoff_counts_calendar_months_and_years(
    now: datetime, period: int, unit: str, expected: datetime
) -> None:
    # when / then
    assert retention.period_cutoff(now=now, period=period, unit=unit) == expected


# --- events ----------------------------------------------------------------------------------


def test_an_events_policy_deletes_events_before_the_cutoff_and_keeps_the_edge(
    workspace: Any, other_workspace: Any, source: Any
) -> None:
    # given: 13 months before NOW is 2026-02-28 03:00
    cutoff = datetime(2026, 2, 28, 3, 0, tzinfo=UTC)
    only_policies(workspace, {"kind": "events", "period": 13, "unit": "months"})
    ingest(
        source,
        message(user_id="u1", at=cutoff - TICK, name="old"),
        message(user_id="u1", at=cutoff, name="edge"),
        message(user_id="u1", at=cutoff + timedelta(days=1), name="new"),
    )
    elsewhere = profile_services.source_create(workspace=other_workspace, name="Web")
    ingest(elsewhere, message(user_id="u1", at=cutoff - timedelta(days=30), name="other"))
    # when
    result = retention.retention_apply(workspace=workspace, now=NOW)
    # then
    assert sorted(Event.objects.values_list("name", flat=True)) == ["edge", "new", "other"]
    assert [run.counts for run in result.runs] == [{"events": 1}]


def test_an_events_policy_with_names_deletes_only_those_events(workspace: Any, source: Any) -> None:
    # given
    only_policies(workspace, {"kind": "events", "period": 30, "event_names": ["Product Viewed"]})
    old = NOW - timedelta(days=31)
    ingest(
        source,
        message(user_id="u1", at=old, name="Product Viewed"),
        message(user_id="u1", at=old, name="Order Completed"),
        message(user_id="u1", at=NOW - timedelta(days=29), name="Product Viewed"),
    )
    # when
    retention.retention_apply(workspace=workspace, now=NOW)
    # then
    assert sorted(Event.objects.values_list("name", "timestamp")) == [
        ("Order Completed", old),
        ("Product Viewed", NOW - timedelta(days=29)),
    ]


def test_events_are_deleted_in_batches(workspace: Any, source: Any) -> None:
    # given: seven old events, purged three at a time
    ingest(source, *[message(user_id="u1", at=NOW - timedelta(days=400 + i)) for i in range(7)])
    ingest(source, message(user_id="u1", at=NOW))
    # when
    deleted = profile_services.events_purge(
        workspace=workspace, before=NOW - timedelta(days=1), batch_size=3
    )
    # then
    assert deleted == 7
    assert Event.objects.count() == 1


# --- full IP addresses -----------------------------------------------------------------------


def test_the_ip_policy_clears_the_sealed_full_ip_and_keeps_the_truncated_one(
    workspace: Any, source: Any
) -> None:
    # given: the cutoff is 7 days before NOW; received times straddle it
    cutoff = NOW - timedelta(days=7)
    (policy,) = only_policies(workspace, {"kind": "event_ip", "period": 7})
    ingest(
        source,
        message(user_id="u1", at=cutoff, received=cutoff - TICK, name="old", ip="203.0.113.9"),
        message(
            user_id="u1",
            at=cutoff,
            received=cutoff - TICK,
            name="old-with-pii",
            ip="203.0.113.10",
            properties={"email": "ip.person@example.com", "sku": "A1"},
        ),
        message(user_id="u1", at=cutoff, received=cutoff, name="edge", ip="198.51.100.7"),
    )
    # when
    result = retention.retention_apply(workspace=workspace, now=NOW)
    # then
    events = {e.name: e for e in Event.objects.all()}
    assert events["old"].sealed is None
    assert events["old"].context["ip_truncated"] == "203.0.113.0"
    assert events["old-with-pii"].sealed == {"properties": {"email": "ip.person@example.com"}}
    assert events["old-with-pii"].properties == {"sku": "A1"}
    assert events["edge"].sealed == {"context": {"ip": "198.51.100.7"}}
    assert result.runs[0].counts == {"events_opened": 2, "ips_cleared": 2, "unreadable": 0}
    policy.refresh_from_db()
    assert policy.ip_cleared_until == cutoff


def test_the_next_ip_run_opens_only_events_received_since_the_last_one(
    workspace: Any, source: Any
) -> None:
    # given: a first run, then an event received after its cutoff
    only_policies(workspace, {"kind": "event_ip", "period": 7})
    first_cutoff = NOW - timedelta(days=7)
    ingest(source, message(user_id="u1", at=NOW, received=first_cutoff - TICK, ip="203.0.113.9"))
    retention.retention_apply(workspace=workspace, now=NOW)
    ingest(source, message(user_id="u1", at=NOW, received=first_cutoff, ip="198.51.100.7"))
    # when: a day later
    result = retention.retention_apply(workspace=workspace, now=NOW + timedelta(days=1))
    # then: the already-cleared event was not opened again
    assert result.runs[0].counts == {"events_opened": 1, "ips_cleared": 1, "unreadable": 0}
    assert Event.objects.filter(sealed__isnull=False).count() == 0


# --- traits ----------------------------------------------------------------------------------


def test_a_traits_policy_deletes_values_last_set_before_the_cutoff(
    workspace: Any, source: Any
) -> None:
    # given: "plan" (an attribute) and "first_name" (personal data), last set at the edges
    cutoff = NOW - timedelta(days=60)
    only_policies(workspace, {"kind": "traits", "period": 60, "trait_keys": ["first_name", "plan"]})
    (stale,) = ingest(
        source,
        message(
            user_id="stale",
            type="identify",
            at=cutoff - TICK,
            traits={"plan": "gold", "first_name": "Olda", "country": "FR"},
        ),
    )
    (fresh,) = ingest(
        source,
        message(user_id="fresh", type="identify", at=cutoff, traits={"plan": "silver"}),
    )
    before = dict(Profile.objects.values_list("pk", "updated_at"))
    # when
    result = retention.retention_apply(workspace=workspace, now=NOW)
    # then
    assert sorted(Trait.objects.filter(profile_id=stale).values_list("key", flat=True)) == [
        "country"
    ]
    assert Profile.objects.get(pk=stale).attributes == {"country": "FR"}
    assert Profile.objects.get(pk=fresh).attributes == {"plan": "silver"}
    assert result.runs[0].counts == {"traits": 2}
    # and the profile that lost values counts as changed (incremental matching looks again)
    after = dict(Profile.objects.values_list("pk", "updated_at"))
    assert after[stale] > before[stale]
    assert after[fresh] == before[fresh]


# --- inactive profiles -----------------------------------------------------------------------


def test_inactive_profiles_are_erased_through_the_registry_without_suppression(
    workspace: Any, source: Any
) -> None:
    # given: three years before NOW; one profile seen just before, one exactly at the cutoff
    cutoff = datetime(2024, 3, 31, 3, 0, tzinfo=UTC)
    only_policies(workspace, {"kind": "inactive_profiles", "period": 3, "unit": "years"})
    (gone,) = ingest(
        source,
        message(
            user_id="gone", type="identify", at=cutoff - TICK, traits={"email": "g@example.com"}
        ),
    )
    (edge,) = ingest(source, message(user_id="edge", type="identify", at=cutoff))
    consent_services.purposes_ensure_defaults(workspace=workspace)
    consent_services.consent_record(
        workspace=workspace,
        subject=Subject("user_id", "gone", gone),
        decisions={"analytics": Decision.GRANTED},
        evidence=Evidence(method=Method.BANNER),
    )
    keys = list(DataKey.objects.filter(profile_id=gone).values_list("pk", flat=True))
    # when
    result = retention.retention_apply(workspace=workspace, now=NOW)
    # then
    assert list(Profile.objects.values_list("pk", flat=True)) == [edge]
    assert not Identity.objects.filter(profile_id=gone).exists()
    assert not ConsentRecord.objects.filter(profile_id=gone).exists()
    assert DataKey.objects.filter(pk__in=keys, destroyed_at__isnull=False).count() == len(keys)
    assert Suppression.objects.count() == 0
    counts = result.runs[0].counts
    assert (counts["profiles_erased"], counts["profiles_failed"]) == (1, 0)
    assert counts["records"] == 1 and counts["identities"] == 2  # user id and email
    # and the person may come back: not suppressed
    (back,) = ingest(source, message(user_id="gone", type="identify", at=NOW))
    assert back is not None and back != gone


def test_inactive_profiles_with_open_or_held_requests_or_a_restriction_are_kept(
    workspace: Any, source: Any
) -> None:
    # given: four inactive profiles; three are protected
    only_policies(workspace, {"kind": "inactive_profiles", "period": 3, "unit": "years"})
    old = NOW - timedelta(days=4 * 365)
    emails = ["open@example.com", "held@example.com", "restricted@example.com"]
    for i, email in enumerate(emails):
        ingest(
            source,
            message(user_id=f"p{i}", type="identify", at=old, traits={"email": email}),
        )
    (plain,) = ingest(source, message(user_id="plain", type="identify", at=old))
    in_progress(workspace, contact="open@example.com")
    held = in_progress(workspace, contact="held@example.com", request_type="access")
    services.request_hold(request=held, actor=None, reason="Litigation.")
    services.request_deny(request=held, actor=None, reason="Manifestly unfounded.")
    restricted = in_progress(
        workspace, contact="restricted@example.com", request_type="restriction"
    )
    services.request_fulfil(request=restricted, actor=None)
    # when
    result = retention.retention_apply(workspace=workspace, now=NOW)
    # then
    assert Profile.objects.count() == 3
    assert not Profile.objects.filter(pk=plain).exists()
    assert result.runs[0].counts["profiles_erased"] == 1


def test_a_failing_handler_keeps_the_whole_profile_and_is_counted(
    workspace: Any, source: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a handler that fails, registered after the profile handler would run
    handlers = dict(registry._handlers)
    monkeypatch.setattr(registry, "_handlers", handlers)
    handlers["tests.failing"] = PersonalDataHandler(
        name="tests.failing",
        models=(),
        export=lambda profile: {},
        erase=lambda profile: ErasureReport("tests.failing", ErasureStatus.FAILED),
        erase_order=150,
    )
    only_policies(workspace, {"kind": "inactive_profiles", "period": 1, "unit": "years"})
    (kept,) = ingest(source, message(user_id="u", at=NOW - timedelta(days=800)))
    # when
    result = retention.retention_apply(workspace=workspace, now=NOW)
    # then: nothing of it went (the events handler ran first, inside the rolled-back unit)
    assert Event.objects.filter(profile_id=kept).count() == 1
    assert DataKey.objects.filter(profile_id=kept, destroyed_at__isnull=True).exists()
    assert result.runs[0].counts == {"profiles_erased": 0, "profiles_failed": 1}


# --- purposes --------------------------------------------------------------------------------


def test_a_purpose_policy_deletes_purpose_only_data_of_profiles_refusing_since_the_cutoff(
    workspace: Any, source: Any
) -> None:
    # given: personalisation withdrawn 31 days ago (before the 30-day cutoff), withdrawn 29
    # days ago, granted, and never decided (default opt-out: allowed)
    consent_services.purposes_ensure_defaults(workspace=workspace)
    only_policies(
        workspace,
        {
            "kind": "purpose",
            "period": 30,
            "purpose_key": "personalization",
            "event_names": ["Product Viewed"],
            "trait_keys": ["favourite_colour"],
        },
    )
    people = {}
    for who in ("early", "late", "granted", "silent"):
        people[who], *_ = ingest(
            source,
            message(user_id=who, at=NOW - timedelta(days=90), name="Product Viewed"),
            message(user_id=who, at=NOW - timedelta(days=90), name="Order Completed"),
            message(
                user_id=who,
                type="identify",
                at=NOW - timedelta(days=90),
                traits={"favourite_colour": "teal"},
            ),
        )
    decisions = {
        "early": (NOW - timedelta(days=31), Decision.WITHDRAWN),
        "late": (NOW - timedelta(days=29), Decision.WITHDRAWN),
        "granted": (NOW - timedelta(days=40), Decision.GRANTED),
    }
    for who, (at, decision) in decisions.items():
        with frozen(at - timedelta(days=5)):
            consent_services.consent_record(
                workspace=workspace,
                subject=Subject("user_id", who, people[who]),
                decisions={"personalization": Decision.GRANTED},
                evidence=Evidence(method=Method.BANNER),
            )
        with frozen(at):
            consent_services.consent_record(
                workspace=workspace,
                subject=Subject("user_id", who, people[who]),
                decisions={"personalization": decision},
                evidence=Evidence(method=Method.BANNER),
            )
    # when
    result = retention.retention_apply(workspace=workspace, now=NOW)
    # then
    names = {
        who: sorted(Event.objects.filter(profile_id=pid).values_list("name", flat=True))
        for who, pid in people.items()
    }
    assert names["early"] == ["", "Order Completed"]  # the identify call and the order stay
    for who in ("late", "granted", "silent"):
        assert "Product Viewed" in names[who]
    assert not Trait.objects.filter(profile_id=people["early"], key="favourite_colour").exists()
    assert Trait.objects.filter(key="favourite_colour").count() == 3
    assert result.runs[0].counts == {"profiles": 1, "events": 1, "traits": 1}
    # and the consent records, the proof of the decisions, are kept
    assert ConsentRecord.objects.filter(profile_id=people["early"]).count() == 2


# --- the sweep: defaults, dry run, audit, exports -------------------------------------------


def test_defaults_are_seeded_once_and_a_deleted_default_stays_deleted(workspace: Any) -> None:
    # when
    first = retention.retention_defaults_ensure(workspace=workspace)
    RetentionPolicy.objects.filter(workspace=workspace, name="Inactive profiles").delete()
    second = retention.retention_defaults_ensure(workspace=workspace)
    # then
    assert [(p.name, p.kind, p.period, p.unit) for p in first] == [
        ("Raw events", RetentionKind.EVENTS, 13, RetentionUnit.MONTHS),
        ("Full IP addresses", RetentionKind.EVENT_IP, 7, RetentionUnit.DAYS),
        ("Inactive profiles", RetentionKind.INACTIVE_PROFILES, 3, RetentionUnit.YEARS),
    ]
    assert second == []
    assert sorted(RetentionPolicy.objects.values_list("name", flat=True)) == [
        "Full IP addresses",
        "Raw events",
    ]


def _snapshot() -> tuple[int, ...]:
    return (
        Event.objects.count(),
        Event.objects.filter(sealed__isnull=False).count(),
        Trait.objects.count(),
        Profile.objects.count(),
        DataKey.objects.filter(destroyed_at__isnull=False).count(),
        RetentionPolicy.objects.count(),
        GovernanceSettings.objects.count(),
        ExportArchive.objects.count(),
        LogEntry.objects.count(),
    )


def test_a_dry_run_counts_what_would_go_and_changes_nothing(workspace: Any, source: Any) -> None:
    # given: an unseeded workspace with an old profile, old events with IPs
    old = NOW - timedelta(days=4 * 365)
    ingest(
        source,
        message(user_id="u1", type="identify", at=old, ip="203.0.113.9"),
        message(user_id="u1", at=old, ip="203.0.113.9"),
    )
    before = _snapshot()
    # when
    result = retention.retention_apply(workspace=workspace, now=NOW, dry_run=True)
    # then
    assert _snapshot() == before
    assert [(run.name, run.counts) for run in result.runs] == [
        ("Full IP addresses", {"events_to_open": 2}),
        ("Raw events", {"events": 2}),
        ("Inactive profiles", {"profiles": 1}),
    ]
    assert result.dry_run and result.seeded == []


def test_each_real_run_writes_an_audit_entry_with_its_counts(workspace: Any, source: Any) -> None:
    # given
    (policy,) = only_policies(workspace, {"kind": "events", "period": 30})
    ingest(source, message(user_id="u1", at=NOW - timedelta(days=31)))
    # when
    retention.retention_apply(workspace=workspace, now=NOW)
    retention.retention_apply(workspace=workspace, now=NOW + timedelta(days=1))
    # then
    entries = run_entries(policy)
    assert [e.additional_data["retention_run"]["counts"] for e in entries] == [
        {"events": 1},
        {"events": 0},
    ]
    assert (
        entries[0].additional_data["retention_run"]["cutoff"]
        == (NOW - timedelta(days=30)).isoformat()
    )
    policy.refresh_from_db()
    assert policy.last_run_at == NOW + timedelta(days=1)
    assert chain.verify(LogEntry).ok


def test_a_failing_policy_is_audited_and_the_others_still_run(workspace: Any, source: Any) -> None:
    # given: a purpose policy whose purpose was removed since, and an events policy
    consent_services.purposes_ensure_defaults(workspace=workspace)
    purpose_policy, _events_policy = only_policies(
        workspace,
        {"kind": "purpose", "period": 1, "purpose_key": "profiling", "event_names": ["x"]},
        {"kind": "events", "period": 1},
    )
    RetentionPolicy.objects.filter(pk=purpose_policy.pk).update(purpose_key="gone")
    ingest(source, message(user_id="u1", at=NOW - timedelta(days=2)))
    # when
    result = retention.retention_apply(workspace=workspace, now=NOW)
    # then
    assert [(run.name, run.error) for run in result.failed] == [("policy 0", "unknown_purpose")]
    assert run_entries(purpose_policy)[0].additional_data["retention_run"]["error"] == (
        "unknown_purpose"
    )
    assert Event.objects.count() == 0


def test_expired_exports_are_deleted_and_their_keys_destroyed(workspace: Any, source: Any) -> None:
    # given: an access request fulfilled with an export, and a later one
    ingest(
        source,
        message(user_id="u1", type="identify", at=NOW, traits={"email": "ex@example.com"}),
    )
    dsr = in_progress(workspace, contact="ex@example.com")
    services.request_fulfil(request=dsr, actor=None)
    archive = ExportArchive.objects.get()
    only_policies(workspace)
    # when: the day before expiry, then the moment it expires
    kept = retention.retention_apply(workspace=workspace, now=archive.expires_at - TICK)
    gone = retention.retention_apply(workspace=workspace, now=archive.expires_at)
    # then
    assert (kept.exports, gone.exports) == (0, 1)
    assert not ExportArchive.objects.exists()
    assert DataKey.objects.get(pk=archive.data_key_id).destroyed_at is not None


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ({"kind": "nope", "period": 1}, "unknown_kind"),
        ({"kind": "events", "period": 0}, "invalid_period"),
        ({"kind": "events", "period": 1, "unit": "weeks"}, "unknown_unit"),
        ({"kind": "traits", "period": 1}, "keys_required"),
        ({"kind": "traits", "period": 1, "trait_keys": [""]}, "invalid_names"),
        ({"kind": "event_ip", "period": 1, "event_names": ["x"]}, "unexpected_scope"),
        ({"kind": "events", "period": 1, "trait_keys": ["x"]}, "unexpected_scope"),
        ({"kind": "purpose", "period": 1, "event_names": ["x"]}, "purpose_required"),
        ({"kind": "purpose", "period": 1, "purpose_key": "nope"}, "unknown_purpose"),
        ({"kind": "purpose", "period": 1, "purpose_key": "analytics"}, "scope_required"),
    ],
)
def test_a_policy_is_refused_with_a_code_naming_the_problem(
    workspace: Any, spec: dict[str, Any], code: str
) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    # when
    with pytest.raises(InvalidInput) as refused:
        retention.retention_policy_create(workspace=workspace, name="p", **spec)
    # then
    assert refused.value.code == code
    assert not RetentionPolicy.objects.exists()


# --- command, task, admin --------------------------------------------------------------------


def test_apply_retention_prints_counts_and_dry_run_changes_nothing(
    workspace: Any, other_workspace: Any, source: Any
) -> None:
    # given
    ingest(source, message(user_id="u1", at=datetime(2020, 1, 1, tzinfo=UTC)))
    before = _snapshot()
    out = StringIO()
    # when
    call_command("apply_retention", "--workspace", "acme", "--dry-run", stdout=out)
    # then
    assert _snapshot() == before
    text = out.getvalue()
    assert "acme (dry run)" in text
    assert "Raw events [events, before" in text and "events=1" in text
    assert "globex" not in text
    # when: for real, every workspace
    out = StringIO()
    call_command("apply_retention", stdout=out)
    # then
    assert "default policies created: Raw events, Full IP addresses, Inactive profiles" in (
        out.getvalue()
    )
    assert "globex" in out.getvalue()
    assert Event.objects.count() == 0


def test_apply_retention_refuses_an_unknown_workspace(db: Any) -> None:
    with pytest.raises(CommandError):
        call_command("apply_retention", "--workspace", "nope", stdout=StringIO())


def test_the_sweep_is_scheduled_daily_and_its_task_runs(workspace: Any, source: Any) -> None:
    # given
    schedule = settings.CELERY_BEAT_SCHEDULE["retention-apply"]
    ingest(source, message(user_id="u1", at=datetime(2020, 1, 1, tzinfo=UTC)))
    # when
    outcome = tasks.retention_apply.delay().get()
    # then
    assert schedule == {
        "task": "governance.tasks.retention_apply",
        "schedule": timedelta(hours=24),
    }
    assert outcome["workspaces"] == 1 and outcome["failed"] == []
    assert Event.objects.count() == 0


CHANGELIST = reverse("admin:governance_retentionpolicy_changelist")
ADD = reverse("admin:governance_retentionpolicy_add")


def test_stewards_see_and_edit_only_their_workspaces_policies(
    client: Client, workspace: Any, other_workspace: Any, owner: Any, outsider: Any
) -> None:
    # given
    retention.retention_defaults_ensure(workspace=workspace)
    mine = RetentionPolicy.objects.get(workspace=workspace, name="Raw events")
    client.force_login(outsider)
    # when
    listed = client.get(CHANGELIST)
    change = client.post(
        reverse("admin:governance_retentionpolicy_change", args=[mine.pk]),
        {"name": "Raw events", "kind": "events", "period": 1, "unit": "days", "enabled": "on"},
    )
    # then
    assert listed.status_code == 200
    assert list(listed.context["cl"].result_list) == []
    assert change.status_code == 302  # the admin's "does not exist" redirect
    mine.refresh_from_db()
    assert (mine.period, mine.unit) == (13, "months")


def test_a_steward_adds_a_policy_in_the_admin_checked_and_audited(
    client: Client, workspace: Any, owner: Any
) -> None:
    # given
    client.force_login(owner)
    data = {
        "workspace": workspace.pk,
        "name": "Loyalty",
        "kind": "traits",
        "period": 2,
        "unit": "years",
        "event_names": "[]",
        "trait_keys": "[]",
        "purpose_key": "",
        "description": "",
        "enabled": "on",
    }
    # when: without keys, then with them
    refused = client.post(ADD, data)
    accepted = client.post(ADD, {**data, "trait_keys": '["loyalty_tier"]'})
    # then
    assert refused.status_code == 200
    assert "A traits policy names the trait keys." in refused.content.decode()
    assert accepted.status_code == 302
    policy = RetentionPolicy.objects.get(name="Loyalty")
    assert policy.trait_keys == ["loyalty_tier"]
    created = LogEntry.objects.get_for_object(policy).get(action=LogEntry.Action.CREATE)
    assert created.actor == owner


def test_the_admin_dry_run_action_reports_counts_and_changes_nothing(
    client: Client, workspace: Any, owner: Any, source: Any
) -> None:
    # given
    (policy,) = only_policies(workspace, {"kind": "events", "period": 1})
    ingest(source, message(user_id="u1", at=datetime(2020, 1, 1, tzinfo=UTC)))
    before = _snapshot()
    client.force_login(owner)
    # when
    response = client.post(
        CHANGELIST,
        {"action": "preview", "_selected_action": [str(policy.pk)]},
        follow=True,
    )
    # then
    assert "policy 0" in response.content.decode() and "events: 1" in response.content.decode()
    assert _snapshot() == before
