"""consent_grants_expire: a grant older than its purpose's validity is recorded as expired, on
the granting identity's chain, with the states, receipts, audit entries and removals any
refusal leaves; the daily beat task runs it for every workspace."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.conf import settings as django_settings
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.utils import timezone

from activation import services as activation_services
from activation.enums import RemovalReason, RemovalStatus
from activation.models import Removal
from cdp.core.crypto import blind_index
from consent import selectors, services, tasks
from consent.enums import Decision, LegalBasis, Method
from consent.models import ConsentRecord, ConsentState, Purpose, Receipt
from consent.services import ConsentChange, Evidence, Subject
from profiles import services as profile_services
from tests.activation.sync_helpers import (
    Person,
    audience,
    enter,
    file_destination,
    person,
    run_sync,
    source_for,
)
from tests.profiles.ingest_helpers import msg
from tests.test_no_plaintext_pii import SENTINELS, scan_all_tables

pytestmark = pytest.mark.django_db

LogEntry = get_logentry_model()
NOW = timezone.now().replace(microsecond=0)
VALIDITY = services.CONSENT_VALIDITY_DAYS  # 395, the seeded consent purposes'


def grant_at(workspace: Any, who: Person, days_ago: int, *purposes: str) -> None:
    """Record `who` granting `purposes` (as their banner would) `days_ago` days before NOW."""
    services.consent_record_many(
        workspace=workspace,
        changes=[
            ConsentChange(
                Subject("user_id", who.user_id, who.profile_id),
                dict.fromkeys(purposes, Decision.GRANTED),
                Evidence(method=Method.BANNER, jurisdiction="DE", ip="198.51.100.7"),
            )
        ],
        now=NOW - timedelta(days=days_ago),
    )


def state_of(who: Person, key: str) -> ConsentState:
    return ConsentState.objects.select_related("record").get(
        profile_id=who.profile_id, purpose__key=key
    )


def ledger_size(workspace: Any) -> tuple[int, int, int, int]:
    """Records, receipts, states and audit entries of states of the workspace."""
    states = ConsentState.objects.filter(workspace=workspace)
    kind = ContentType.objects.get_for_model(ConsentState)
    return (
        ConsentRecord.objects.filter(workspace=workspace).count(),
        Receipt.objects.filter(workspace=workspace).count(),
        states.count(),
        LogEntry.objects.filter(content_type=kind).count(),
    )


def test_a_grant_older_than_its_validity_expires_on_the_granting_chain(workspace: Any) -> None:
    # given: ada granted analytics and advertising 400 days ago
    ada = person(workspace)
    grant_at(workspace, ada, 400, "analytics", "advertising")
    grants = {key: state_of(ada, key).record for key in ("analytics", "advertising")}
    kind = ContentType.objects.get_for_model(ConsentState)
    audit_before = LogEntry.objects.filter(content_type=kind).count()

    # when
    expired = services.consent_grants_expire(workspace=workspace, now=NOW)

    # then: both are expired by one system record each, after her grants on her user id's chain
    assert expired == 2
    records = list(
        ConsentRecord.objects.filter(workspace=workspace, method=Method.EXPIRY)
        .select_related("purpose")
        .order_by("purpose__key")
    )
    assert [(r.purpose.key, r.decision) for r in records] == [
        ("advertising", Decision.EXPIRED),
        ("analytics", Decision.EXPIRED),
    ]
    index = blind_index(workspace.pk, "user_id", ada.user_id)
    for record in records:
        assert (record.subject_type, bytes(record.subject_index)) == ("user_id", index)
        assert record.profile_id == ada.profile_id
        assert (record.proof, record.jurisdiction, record.source_id) == ({}, "", None)
        assert (record.notice_version_id, record.client_time) == (None, None)
        assert record.server_time == NOW
        assert record.signals == {
            "expiry": {
                key: {"grant": str(grants[key].pk), "validity_days": VALIDITY}
                for key in ("advertising", "analytics")
            }
        }
    assert records[0].prev_hash == grants["analytics"].record_hash  # grants chain by key order
    for key, record in zip(("advertising", "analytics"), records, strict=True):
        state = state_of(ada, key)
        assert (state.decision, state.record_id, state.updated_at) == (
            Decision.EXPIRED,
            record.pk,
            NOW,
        )
        assert state.needs_reconsent is False
    [receipt] = [
        r
        for r in Receipt.objects.filter(workspace=workspace)
        if r.records == [str(x.pk) for x in records]
    ]
    assert receipt.body["collectionMethod"] == "expiry"
    assert [p["consentStatus"] for p in receipt.body["services"][0]["purposes"]] == [
        "expired",
        "expired",
    ]
    assert LogEntry.objects.filter(content_type=kind).count() == audit_before + 2


@pytest.mark.parametrize(
    ("days_ago", "decision", "expired"),
    [
        (VALIDITY - 1, Decision.GRANTED, 0),
        (VALIDITY, Decision.EXPIRED, 1),  # a choice as old as the validity, as the banner has it
    ],
    ids=["a-day-before", "on-the-day"],
)
def test_a_grant_expires_once_it_is_as_old_as_the_validity(
    workspace: Any, days_ago: int, decision: str, expired: int
) -> None:
    # given
    ada = person(workspace)
    grant_at(workspace, ada, days_ago, "analytics")

    # when
    count = services.consent_grants_expire(workspace=workspace, now=NOW)

    # then
    assert count == expired
    assert state_of(ada, "analytics").decision == decision


def test_a_grant_given_again_counts_from_the_new_grant(workspace: Any) -> None:
    # given: granted 800 days ago, asked again by the banner and granted 10 days ago
    ada = person(workspace)
    grant_at(workspace, ada, 800, "analytics")
    grant_at(workspace, ada, 10, "analytics")
    before = ledger_size(workspace)

    # when
    expired = services.consent_grants_expire(workspace=workspace, now=NOW)

    # then
    assert expired == 0
    assert state_of(ada, "analytics").decision == Decision.GRANTED
    assert ledger_size(workspace) == before


def test_a_purpose_without_validity_or_on_another_legal_basis_does_not_expire(
    workspace: Any,
) -> None:
    # given: analytics without validity; necessary (contract) and profiling (legitimate
    # interests) with one; ada's grants of the three are years old
    ada = person(workspace)
    Purpose.objects.filter(workspace=workspace, key="analytics").update(consent_validity_days=None)
    Purpose.objects.filter(workspace=workspace, key="necessary").update(consent_validity_days=30)
    Purpose.objects.filter(workspace=workspace, key="profiling").update(
        legal_basis=LegalBasis.LEGITIMATE_INTERESTS
    )
    grant_at(workspace, ada, 1000, "analytics", "necessary", "profiling")
    before = ledger_size(workspace)

    # when
    expired = services.consent_grants_expire(workspace=workspace, now=NOW)

    # then
    assert expired == 0
    assert [state_of(ada, key).decision for key in ("analytics", "necessary", "profiling")] == [
        Decision.GRANTED
    ] * 3
    assert ledger_size(workspace) == before


def test_only_grants_expire(workspace: Any) -> None:
    # given: old denials and withdrawals
    ada, bob = person(workspace), person(workspace, first_name="Bob")
    grant_at(workspace, ada, 900, "analytics")
    services.consent_record_many(
        workspace=workspace,
        changes=[
            ConsentChange(
                Subject("user_id", ada.user_id, ada.profile_id),
                {"analytics": Decision.WITHDRAWN},
                Evidence(method=Method.PREFERENCE_CENTRE),
            ),
            ConsentChange(
                Subject("user_id", bob.user_id, bob.profile_id),
                {"analytics": Decision.DENIED},
                Evidence(method=Method.BANNER),
            ),
        ],
        now=NOW - timedelta(days=800),
    )
    before = ledger_size(workspace)

    # when
    expired = services.consent_grants_expire(workspace=workspace, now=NOW)

    # then
    assert expired == 0
    assert (state_of(ada, "analytics").decision, state_of(bob, "analytics").decision) == (
        Decision.WITHDRAWN,
        Decision.DENIED,
    )
    assert ledger_size(workspace) == before


def test_a_grant_moved_by_a_merge_expires_on_the_surviving_profile(workspace: Any) -> None:
    # given: a visitor granted analytics on an anonymous id 400 days ago, then was merged
    # into ada (ada survives)
    ada = person(workspace)
    [visitor] = profile_services.ingest_messages(
        source=source_for(workspace), messages=[msg(anonymous_id="anon-0001")]
    ).profile_ids
    services.consent_record_many(
        workspace=workspace,
        changes=[
            ConsentChange(
                Subject("anonymous_id", "anon-0001", visitor),
                {"analytics": Decision.GRANTED},
                Evidence(method=Method.BANNER),
            )
        ],
        now=NOW - timedelta(days=400),
    )
    merge = profile_services.profiles_merge(
        workspace=workspace,
        profile_ids=(ada.profile_id, visitor),
        rule="steward",
        actor=None,
        evidence={"note": "same person"},
    )
    assert merge.survivor_id == ada.profile_id
    assert state_of(ada, "analytics").decision == Decision.GRANTED

    # when
    expired = services.consent_grants_expire(workspace=workspace, now=NOW)

    # then: recorded on the anonymous id's chain, for the profile that holds the state now
    assert expired == 1
    record = ConsentRecord.objects.get(method=Method.EXPIRY)
    assert (record.subject_type, bytes(record.subject_index), record.profile_id) == (
        "anonymous_id",
        blind_index(workspace.pk, "anonymous_id", "anon-0001"),
        ada.profile_id,
    )
    assert state_of(ada, "analytics").decision == Decision.EXPIRED


def test_the_ledger_chain_still_verifies(workspace: Any) -> None:
    # given: ada's chain with a grant, a denial, and old grants
    ada = person(workspace)
    grant_at(workspace, ada, 900, "analytics", "advertising")
    grant_at(workspace, ada, 500, "profiling")
    services.consent_record_many(
        workspace=workspace,
        changes=[
            ConsentChange(
                Subject("user_id", ada.user_id, ada.profile_id),
                {"advertising": Decision.DENIED},
                Evidence(method=Method.GPC),
            )
        ],
        now=NOW - timedelta(days=450),
    )

    # when
    expired = services.consent_grants_expire(workspace=workspace, now=NOW)

    # then: analytics and profiling expired; the chain of 6 records holds
    assert expired == 2
    check = selectors.consent_chain_verify(
        workspace=workspace, subject_index=blind_index(workspace.pk, "user_id", ada.user_id)
    )
    assert (check.checked, check.broken_record) == (6, None)
    [profile_check] = selectors.consent_chain_verify_profiles(
        workspace=workspace, profile_ids=[ada.profile_id]
    )
    assert profile_check.broken_record is None


def test_the_consent_gate_refuses_after_expiry(workspace: Any) -> None:
    # given: ada's old grant still lets the gate through
    ada = person(workspace)
    grant_at(workspace, ada, 400, "advertising")
    advertising = Purpose.objects.get(workspace=workspace, key="advertising")
    assert selectors.consent_allows(
        workspace=workspace, profile_id=ada.profile_id, purpose=advertising
    )

    # when
    services.consent_grants_expire(workspace=workspace, now=NOW)

    # then: refused, in every jurisdiction, and no basis for a send
    assert not selectors.consent_allows(
        workspace=workspace, profile_id=ada.profile_id, purpose=advertising
    )
    for jurisdiction in ("DE", "US-CA", ""):
        assert not selectors.consent_gate_profiles(
            workspace=workspace, purpose=advertising, jurisdiction=jurisdiction
        ).filter(pk=ada.profile_id)
    assert (
        selectors.consent_gate_basis(
            workspace=workspace, purpose=advertising, profile_ids=[ada.profile_id]
        )
        == {}
    )


def test_a_removal_is_queued_for_a_destination_that_held_the_person(
    workspace: Any, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada, granted advertising 400 days ago, was sent to a CSV destination
    settings.CDP_EXPORT_DIR = tmp_path / "exports"
    ada = person(workspace)
    grant_at(workspace, ada, 400, "advertising")
    sync = activation_services.sync_create(
        audience=audience(workspace),
        destination=file_destination(workspace, "csv", data={"identifiers": ["user_id"]}),
        mode="full",
        interval_minutes=0,
    )
    enter(sync.audience, ada)
    run = run_sync(sync, django_capture_on_commit_callbacks)
    assert run.sent == 1

    # when
    services.consent_grants_expire(workspace=workspace, now=NOW)

    # then: the destination is owed her removal, in the same transaction, as an expiry (she
    # withdrew nothing)
    removal = Removal.objects.get()
    assert (removal.profile_id, removal.reason, removal.status, removal.audience_id) == (
        ada.profile_id,
        RemovalReason.CONSENT_EXPIRED,
        RemovalStatus.QUEUED,
        sync.audience_id,
    )


def test_running_the_sweep_twice_changes_nothing_the_second_time(workspace: Any) -> None:
    # given: a first run expired ada's grant
    ada = person(workspace)
    grant_at(workspace, ada, 400, "analytics")
    assert services.consent_grants_expire(workspace=workspace, now=NOW) == 1
    before = ledger_size(workspace)
    state = state_of(ada, "analytics")

    # when: the next day
    expired = services.consent_grants_expire(workspace=workspace, now=NOW + timedelta(days=1))

    # then
    assert expired == 0
    assert ledger_size(workspace) == before
    assert state_of(ada, "analytics").record_id == state.record_id


def test_the_sweep_goes_through_every_batch(workspace: Any, monkeypatch: Any) -> None:
    # given: five old grants, two per batch
    monkeypatch.setattr(services, "EXPIRY_BATCH_SIZE", 2)
    people = [person(workspace) for _ in range(5)]
    for who in people:
        grant_at(workspace, who, 400, "analytics")

    # when
    expired = services.consent_grants_expire(workspace=workspace, now=NOW)

    # then
    assert expired == 5
    assert {state_of(who, "analytics").decision for who in people} == {Decision.EXPIRED}


def test_other_workspaces_are_untouched(workspace: Any, other_workspace: Any) -> None:
    # given: old grants in both workspaces
    ada, gus = person(workspace), person(other_workspace, first_name="Gus")
    grant_at(workspace, ada, 400, "analytics")
    grant_at(other_workspace, gus, 400, "analytics")
    before = ledger_size(other_workspace)

    # when
    expired = services.consent_grants_expire(workspace=workspace, now=NOW)

    # then
    assert expired == 1
    assert state_of(gus, "analytics").decision == Decision.GRANTED
    assert ledger_size(other_workspace)[:3] == before[:3]


def test_the_daily_task_expires_grants_in_every_workspace(
    workspace: Any, other_workspace: Any
) -> None:
    # given
    ada, gus = person(workspace), person(other_workspace, first_name="Gus")
    grant_at(workspace, ada, 400, "analytics")
    grant_at(other_workspace, gus, 500, "analytics", "advertising")
    entry = django_settings.CELERY_BEAT_SCHEDULE["consent-grants-expire"]

    # when
    result = tasks.consent_grants_expire()

    # then
    assert entry == {
        "task": "consent.tasks.consent_grants_expire",
        "schedule": timedelta(hours=24),
    }
    assert result == {"workspaces": 2, "expired": 3, "failed": []}
    assert state_of(ada, "analytics").decision == Decision.EXPIRED
    assert state_of(gus, "advertising").decision == Decision.EXPIRED


def test_the_command_counts_with_dry_run_then_expires(workspace: Any) -> None:
    # given
    ada = person(workspace)
    grant_at(workspace, ada, 400, "analytics")
    before = ledger_size(workspace)
    dry, out = StringIO(), StringIO()

    # when
    call_command("expire_consent", "--workspace", "acme", "--dry-run", stdout=dry)
    unchanged = ledger_size(workspace)
    call_command("expire_consent", "--workspace", "acme", stdout=out)

    # then
    assert dry.getvalue() == "acme (dry run): would expire 1\n"
    assert unchanged == before
    assert out.getvalue() == "acme: expired 1\n"
    assert state_of(ada, "analytics").decision == Decision.EXPIRED


def test_the_command_and_the_task_report_a_workspace_that_failed(
    workspace: Any, other_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the sweep breaks in acme only
    real = services.consent_grants_expire

    def breaks_in_acme(*, workspace: Any, now: Any = None) -> int:
        if workspace.slug == "acme":
            raise RuntimeError("broken")
        return real(workspace=workspace, now=now)

    monkeypatch.setattr(services, "consent_grants_expire", breaks_in_acme)
    out = StringIO()
    # when / then: the command goes on with the others and exits in error, naming acme
    with pytest.raises(CommandError, match="consent expiry failed in: acme"):
        call_command("expire_consent", stdout=out)
    assert "acme: FAILED (RuntimeError)" in out.getvalue()
    assert f"{other_workspace.slug}: expired 0" in out.getvalue()
    assert tasks.consent_grants_expire()["failed"] == ["acme"]


def test_the_consent_report_counts_expired_states(workspace: Any) -> None:
    # given: one expired grant, one recent grant
    ada, bob = person(workspace), person(workspace, first_name="Bob")
    grant_at(workspace, ada, 400, "analytics")
    grant_at(workspace, bob, 3, "analytics")
    services.consent_grants_expire(workspace=workspace, now=NOW)

    # when
    report = selectors.consent_report(workspace=workspace, now=NOW)

    # then
    [analytics] = [p for p in report.purposes if p.key == "analytics"]
    assert (
        analytics.states,
        analytics.granted,
        analytics.denied,
        analytics.withdrawn,
        analytics.expired,
        analytics.granted_percent,
        analytics.withdrawals_recent,
    ) == (2, 1, 0, 0, 1, 50.0, 0)


def test_the_seeded_consent_purposes_hold_a_grant_13_months(workspace: Any) -> None:
    # given / when
    purposes = services.purposes_ensure_defaults(workspace=workspace)

    # then
    assert {p.key: p.consent_validity_days for p in purposes} == {
        "necessary": None,
        "analytics": 395,
        "personalization": 395,
        "marketing_email": 395,
        "advertising": 395,
        "profiling": 395,
    }


def test_an_expiry_writes_no_plaintext_identifier(workspace: Any) -> None:
    # given: a person known by sentinel identifiers, whose grant is old
    who = person(workspace, user_id=SENTINELS["user_id"], email=SENTINELS["email"])
    grant_at(workspace, who, 400, "analytics", "advertising")

    # when
    expired = services.consent_grants_expire(workspace=workspace, now=NOW)

    # then: the expiry names her by blind index only
    assert expired == 2
    assert scan_all_tables() == []
