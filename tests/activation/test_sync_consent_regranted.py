"""A member taken back from a destination because they refused its purpose, who grants consent
again, is sent again by the next incremental run (activation.regrants): the grant only marks
them (set-wise, in the consent transaction), the run checks membership, the ledger, the gate,
erasure, the re-send limit, disabled syncs and the receiver's deferral."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from activation import regrants, services
from activation.enums import DeliveryAction, DeliveryStatus, RemovalReason, RemovalStatus
from activation.models import AudienceMembership, Delivery, Removal, Sync, SyncRecheck
from activation.sync import syncs_start_due
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.models import ConsentState
from consent.services import ConsentChange, Evidence, Subject
from governance import erasure
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from tests.activation.sync_helpers import (
    Person,
    Receiver,
    audience,
    decide,
    enter,
    grant,
    leave,
    person,
    run_sync,
    source_for,
    webhook,
)
from tests.governance.request_helpers import SUBJECT_EMAIL, in_progress
from tests.profiles.ingest_helpers import msg

pytestmark = pytest.mark.django_db


def _bodies(receiver: Receiver, start: int = 0) -> list[tuple[str, list[str]]]:
    """(type, userIds) of each request the receiver got from `start` on."""
    found = []
    for hit in receiver.hits[start:]:
        body = json.loads(hit.body)
        found.append((body["type"], [r["userId"] for r in body["records"]]))
    return found


def _incremental_sync(workspace: Any, receiver: Receiver) -> Sync:
    """An incremental webhook sync of advertising, run by hand."""
    return services.sync_create(
        audience=audience(workspace),
        destination=webhook(workspace, receiver.url),
        mode="incremental",
        interval_minutes=0,
    )


def _visitor(workspace: Any, anonymous_id: str) -> Any:
    """The profile of a browser that never signed in; its id."""
    return profile_services.ingest_messages(
        source=source_for(workspace), messages=[msg(anonymous_id=anonymous_id)]
    ).profile_ids[0]


def _taken_back(workspace: Any, receiver: Receiver, capture: Any, *people: Person) -> Sync:
    """An incremental webhook sync (advertising) that sent `people`, each of whom then
    withdrew advertising and was taken back (their removal sent when the withdrawal
    committed)."""
    for who in people:
        grant(workspace, who, "advertising")
    sync = _incremental_sync(workspace, receiver)
    enter(sync.audience, *people)
    first = run_sync(sync, capture)
    assert (first.status, first.sent) == ("succeeded", len(people))
    for who in people:
        with capture(execute=True):
            decide(workspace, who, advertising=Decision.WITHDRAWN)
    assert sorted(Removal.objects.values_list("reason", "status")) == [
        (RemovalReason.CONSENT_WITHDRAWN, RemovalStatus.SENT)
    ] * len(people)
    sync.refresh_from_db()
    return sync


def _last_row(sync: Sync, who: Person) -> tuple[str, str]:
    row = (
        Delivery.objects.filter(destination=sync.destination, profile_id=who.profile_id)
        .order_by("-id")
        .values_list("action", "status")
        .first()
    )
    assert row is not None
    return row


def test_a_member_who_grants_again_is_added_by_the_next_incremental_run(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada was sent, withdrew and was taken back
    ada = person(workspace)
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, ada)
    assert _last_row(sync, ada) == (DeliveryAction.REMOVE, DeliveryStatus.DELIVERED)
    hits = len(receiver.hits)

    # when: she grants advertising again (no membership change), and the next run goes
    grant(workspace, ada, "advertising")
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: she is added again, with the new grant as the basis in the ledger
    assert (run.status, run.total, run.sent, run.removed) == ("succeeded", 1, 1, 0)
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]
    granted = ConsentState.objects.get(profile_id=ada.profile_id, purpose__key="advertising")
    row = Delivery.objects.filter(destination=sync.destination).order_by("-id").first()
    assert row is not None
    assert (row.action, row.status, row.profile_id, row.basis) == (
        DeliveryAction.ADD,
        DeliveryStatus.DELIVERED,
        ada.profile_id,
        {"advertising": str(granted.record_id)},
    )
    # ...the run took its mark, so the run after it sends nothing
    assert not SyncRecheck.objects.exists()
    again = run_sync(sync, django_capture_on_commit_callbacks)
    assert (again.status, again.total, again.sent) == ("succeeded", 0, 0)
    assert len(receiver.hits) == hits + 1


def test_grants_of_a_drain_are_marked_set_wise_and_added_in_one_batch(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: four members taken back
    people = [person(workspace) for _ in range(4)]
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, *people)
    hits = len(receiver.hits)

    # when: the hook marks one profile, then three at once
    with CaptureQueriesContext(connection) as one:
        regrants.on_consent_granted(workspace.pk, [people[0].profile_id], ["advertising"])
    with CaptureQueriesContext(connection) as three:
        regrants.on_consent_granted(
            workspace.pk, [p.profile_id for p in people[1:]], ["advertising"]
        )

    # then: as many statements for three as for one
    assert len(three.captured_queries) == len(one.captured_queries) == 3
    SyncRecheck.objects.all().delete()

    # when: a drain records the four grants (consent_record_many), and the next run goes
    consent_services.consent_record_many(
        workspace=workspace,
        changes=[
            ConsentChange(
                subject=Subject("user_id", who.user_id, who.profile_id),
                decisions={"advertising": Decision.GRANTED},
                evidence=Evidence(method=Method.BANNER, jurisdiction="DE"),
            )
            for who in people
        ],
    )
    assert SyncRecheck.objects.filter(sync=sync).count() == 4
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: one add request with all four
    assert (run.status, run.sent) == ("succeeded", 4)
    ((kind, user_ids),) = _bodies(receiver, hits)
    assert (kind, sorted(user_ids)) == ("add", sorted(p.user_id for p in people))


def test_a_grant_of_a_purpose_the_destination_does_not_serve_does_not_add(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada and bob taken back from an advertising destination
    ada, bob = person(workspace), person(workspace)
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, ada, bob)
    hits = len(receiver.hits)

    # when: ada grants advertising again, bob only analytics
    grant(workspace, ada, "advertising")
    grant(workspace, bob, "analytics")
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: ada alone is added; bob was not even marked
    assert (run.status, run.total, run.sent, run.excluded) == ("succeeded", 1, 1, {})
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]
    assert _last_row(sync, bob) == (DeliveryAction.REMOVE, DeliveryStatus.DELIVERED)


def test_a_person_erased_after_granting_again_is_not_added(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada and the erasure request's subject taken back, both granting again
    ada = person(workspace)
    subject = person(workspace, user_id="subject-1", email=SUBJECT_EMAIL)
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, ada, subject)
    grant(workspace, ada, "advertising")
    grant(workspace, subject, "advertising")
    assert SyncRecheck.objects.count() == 2

    # when: the subject is erased (suppressed, then their rows deleted), and the next run goes
    dsr = in_progress(workspace, request_type="erasure")
    with django_capture_on_commit_callbacks(execute=True):
        certificate = erasure.erasure_run(request=dsr)
    hits = len(receiver.hits)
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: ada alone is added; nothing names the subject any more
    store = next(s for s in certificate.body["stores"] if s["store"] == "activation")
    assert store["counts"]["sync_rechecks"] == 1
    assert (run.status, run.sent) == ("succeeded", 1)
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]
    assert not Delivery.objects.filter(profile_id=subject.profile_id).exists()
    assert not SyncRecheck.objects.exists()


def test_a_restricted_person_who_granted_again_is_not_added(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada and bob taken back, both granting again, and bob's processing then restricted
    # (which ends his membership; a stale membership row still lists him)
    ada, bob = person(workspace), person(workspace)
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, ada, bob)
    grant(workspace, ada, "advertising")
    grant(workspace, bob, "advertising")
    profile_services.profile_restrict(
        profile=profile_selectors.profile_get(workspace=workspace, profile_id=bob.profile_id),
        restricted=True,
    )
    AudienceMembership.objects.create(
        audience=sync.audience, profile_id=bob.profile_id, entered_at=timezone.now()
    )
    hits = len(receiver.hits)

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: ada alone is added
    assert (run.status, run.sent, run.removed) == ("succeeded", 1, 0)
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]


def test_a_grant_refused_again_before_the_run_does_not_add(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada and bob taken back, both granting again; bob withdraws once more before the
    # run (nothing to take back: the destination does not hold him), his mark left behind
    ada, bob = person(workspace), person(workspace)
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, ada, bob)
    grant(workspace, ada, "advertising")
    grant(workspace, bob, "advertising")
    decide(workspace, bob, advertising=Decision.WITHDRAWN)
    assert SyncRecheck.objects.count() == 2
    hits = len(receiver.hits)

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: the gate at send time refuses bob; ada is added
    assert (run.status, run.sent, run.excluded) == (
        "succeeded",
        1,
        {"no_consent:advertising": 1},
    )
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]
    assert not SyncRecheck.objects.exists()


def test_a_person_who_left_the_audience_is_not_added(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada and bob taken back; both grant again, then bob leaves the audience
    ada, bob = person(workspace), person(workspace)
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, ada, bob)
    grant(workspace, ada, "advertising")
    grant(workspace, bob, "advertising")
    leave(sync.audience, bob)
    hits = len(receiver.hits)

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: ada alone is added, and bob (no longer held) is not removed again
    assert (run.status, run.sent, run.removed) == ("succeeded", 1, 0)
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]
    assert not SyncRecheck.objects.exists()


def test_a_grant_while_the_sync_is_disabled_is_sent_once_it_is_enabled(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada taken back; the sync disabled before she grants again
    ada = person(workspace)
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, ada)
    Sync.objects.filter(pk=sync.pk).update(enabled=False)
    grant(workspace, ada, "advertising")
    hits = len(receiver.hits)

    # when: the scheduler ticks while it is disabled, then once it is enabled again
    with django_capture_on_commit_callbacks(execute=True):
        assert syncs_start_due() == []
    assert len(receiver.hits) == hits
    Sync.objects.filter(pk=sync.pk).update(enabled=True)
    sync.refresh_from_db()
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then
    assert (run.status, run.sent) == ("succeeded", 1)
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]


def test_the_scheduler_waits_out_a_deferral_before_adding_again(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada taken back and granting again; the receiver asked not to be sent to for an hour
    ada = person(workspace)
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, ada)
    Sync.objects.filter(pk=sync.pk).update(interval_minutes=1, last_run_at=None)
    until = timezone.now() + timedelta(hours=1)
    Sync.objects.filter(pk=sync.pk).update(deferred_until=until)
    grant(workspace, ada, "advertising")
    hits = len(receiver.hits)

    # when: the scheduler ticks before the time asked for
    with django_capture_on_commit_callbacks(execute=True):
        assert syncs_start_due() == []

    # then: nothing sent, the mark kept
    assert len(receiver.hits) == hits
    assert SyncRecheck.objects.count() == 1

    # when: it ticks after it
    with django_capture_on_commit_callbacks(execute=True):
        (run,) = syncs_start_due(now=until + timedelta(minutes=1))

    # then
    run.refresh_from_db()
    assert (run.status, run.sent) == ("succeeded", 1)
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]


def test_a_member_whose_adds_were_refused_too_often_is_not_added_again(
    workspace: Any, receiver: Receiver, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: the receiver refused ada's add once (the limit), bob's arrived; both were then
    # taken back and grant again
    settings.CDP_SYNC_MAX_RESENDS = 1
    ada, bob = person(workspace), person(workspace)
    grant(workspace, ada, "advertising")
    grant(workspace, bob, "advertising")
    sync = _incremental_sync(workspace, receiver)
    enter(sync.audience, ada)
    receiver.statuses = [400]
    assert run_sync(sync, django_capture_on_commit_callbacks).status == "partial"
    enter(sync.audience, bob)
    assert run_sync(sync, django_capture_on_commit_callbacks).sent == 1
    for who in (ada, bob):
        with django_capture_on_commit_callbacks(execute=True):
            decide(workspace, who, advertising=Decision.WITHDRAWN)
    assert _last_row(sync, ada) == (DeliveryAction.REMOVE, DeliveryStatus.DELIVERED)
    grant(workspace, ada, "advertising")
    grant(workspace, bob, "advertising")
    hits = len(receiver.hits)

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: bob alone is added again
    assert (run.status, run.sent) == ("succeeded", 1)
    assert _bodies(receiver, hits) == [("add", [bob.user_id])]


def test_a_grant_repeated_while_held_leaves_no_further_mark(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    """Banners post the same choice again and again: only a grant of what the profile did not
    hold granted marks anyone, through either recording path."""
    ada, bob = person(workspace), person(workspace)
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, ada, bob)
    grant(workspace, ada, "advertising")
    consent_services.consent_record_many(
        workspace=workspace,
        changes=[
            ConsentChange(
                subject=Subject("user_id", bob.user_id, bob.profile_id),
                decisions={"advertising": Decision.GRANTED},
                evidence=Evidence(method=Method.BANNER, jurisdiction="DE"),
            )
        ],
    )
    assert SyncRecheck.objects.filter(sync=sync).count() == 2

    # when: both grant it again, several times, while they hold it
    for _ in range(3):
        grant(workspace, ada, "advertising")
        consent_services.consent_record_many(
            workspace=workspace,
            changes=[
                ConsentChange(
                    subject=Subject("user_id", bob.user_id, bob.profile_id),
                    decisions={"advertising": Decision.GRANTED},
                    evidence=Evidence(method=Method.BANNER, jurisdiction="DE"),
                )
            ],
        )

    # then: still one mark each
    assert SyncRecheck.objects.filter(sync=sync).count() == 2


def test_a_mark_on_a_profile_merged_away_since_adds_its_survivor(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    """The mark names the profile that granted; a merge before the run must not lose the
    person: the survivor is sent, under the identifiers it took over."""
    # given: an older, anonymous profile of the same person (a first visit), in the audience,
    # never sent (no consent then), and a newer one, taken back after withdrawing, who grants
    # again
    older = _visitor(workspace, "anon-ada-first-visit")
    ada = person(workspace)
    sync = _taken_back(workspace, receiver, django_capture_on_commit_callbacks, ada)
    enter(sync.audience, Person(older, "", "", ""))
    grant(workspace, ada, "advertising")
    assert list(SyncRecheck.objects.values_list("profile_id", flat=True)) == [ada.profile_id]
    hits = len(receiver.hits)

    # when: the two are merged (the older survives, with ada's consent) before the run
    merge = profile_services.profiles_merge(
        workspace=workspace,
        profile_ids=(older, ada.profile_id),
        rule="steward",
        actor=None,
        evidence={"note": "same person"},
    )
    assert merge.survivor_id == older
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: the survivor (holding ada's userId now) is sent, once, and the mark is taken
    assert (run.status, run.sent) == ("succeeded", 1)
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]
    row = Delivery.objects.filter(destination=sync.destination).order_by("-id").first()
    assert row is not None and row.profile_id == older
    assert not SyncRecheck.objects.exists()


def test_an_unmerge_that_gives_back_a_grant_adds_the_person_at_the_next_run(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    """A merge with a profile that refused advertising made the combined state a refusal (the
    stricter decision wins) and took the person back; undoing it gives each side its own
    ledger's state again. Where that is a grant again, the person is sent by the next
    incremental run, not only by a full one."""
    # given: ada granted advertising and was sent
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = _incremental_sync(workspace, receiver)
    enter(sync.audience, ada)
    assert run_sync(sync, django_capture_on_commit_callbacks).sent == 1
    # ...then a steward merged into her a visitor's profile that had refused it: she was
    # taken back
    visitor = _visitor(workspace, "anon-visitor")
    consent_services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", "anon-visitor", visitor),
        decisions={"advertising": Decision.DENIED},
        evidence=Evidence(method=Method.BANNER, jurisdiction="DE"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        merge = profile_services.profiles_merge(
            workspace=workspace,
            profile_ids=(ada.profile_id, visitor),
            rule="steward",
            actor=None,
            evidence={},
        )
    assert merge.survivor_id == ada.profile_id
    assert list(Removal.objects.values_list("reason", flat=True)) == [
        RemovalReason.CONSENT_WITHDRAWN
    ]
    hits = len(receiver.hits)

    # when: the merge is undone (a mistake), and the next incremental run goes
    with django_capture_on_commit_callbacks(execute=True):
        profile_services.profile_unmerge(
            workspace=workspace, merge=merge, actor=None, reason="Two people."
        )
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: her own grant holds again, and she is sent again
    state = ConsentState.objects.get(profile_id=ada.profile_id, purpose__key="advertising")
    assert state.decision == Decision.GRANTED
    assert (run.status, run.sent) == ("succeeded", 1)
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]


def test_an_unmerge_that_takes_back_a_grant_removes_the_person(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    """The other way round: the grant that got the person sent came, after the merge, from
    the merged profile's own browser; undone, the survivor's own ledger refuses again, and
    the destination that holds her is told to take her back."""
    # given: ada refused advertising; a visitor's profile merged into her, whose browser then
    # granted it, and the combined person was sent
    ada = person(workspace)
    decide(workspace, ada, advertising=Decision.DENIED)
    visitor = _visitor(workspace, "anon-visitor")
    merge = profile_services.profiles_merge(
        workspace=workspace,
        profile_ids=(ada.profile_id, visitor),
        rule="steward",
        actor=None,
        evidence={},
    )
    consent_services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", "anon-visitor", ada.profile_id),
        decisions={"advertising": Decision.GRANTED},
        evidence=Evidence(method=Method.BANNER, jurisdiction="DE"),
    )
    sync = _incremental_sync(workspace, receiver)
    enter(sync.audience, ada)
    assert run_sync(sync, django_capture_on_commit_callbacks).sent == 1
    assert not Removal.objects.exists()

    # when: the merge is undone
    with django_capture_on_commit_callbacks(execute=True):
        profile_services.profile_unmerge(
            workspace=workspace, merge=merge, actor=None, reason="Two people."
        )

    # then: ada's own refusal holds again, and the destination is told to take her back
    state = ConsentState.objects.get(profile_id=ada.profile_id, purpose__key="advertising")
    assert state.decision == Decision.DENIED
    assert list(Removal.objects.values_list("profile_id", "reason")) == [
        (ada.profile_id, RemovalReason.CONSENT_WITHDRAWN)
    ]


def test_a_merge_that_brings_a_grant_adds_the_survivor_at_the_next_run(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    """A visitor in the audience who never decided (never sent) is merged with the person's
    signed-in profile, which granted advertising: the survivor holds the grant now, and the
    next incremental run sends it (no membership changed to carry it)."""
    # given: the visitor's profile in the audience, sent nothing for lack of consent
    visitor = _visitor(workspace, "anon-first-visit")
    sync = _incremental_sync(workspace, receiver)
    enter(sync.audience, Person(visitor, "", "", ""))
    assert run_sync(sync, django_capture_on_commit_callbacks).sent == 0
    # ...and the person's signed-in profile, outside the audience, granted advertising
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    hits = len(receiver.hits)

    # when: the two are merged (the visitor's, older, survives) and the next run goes
    with django_capture_on_commit_callbacks(execute=True):
        merge = profile_services.profiles_merge(
            workspace=workspace,
            profile_ids=(visitor, ada.profile_id),
            rule="steward",
            actor=None,
            evidence={},
        )
    assert merge.survivor_id == visitor
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: the survivor, holding the grant and ada's userId, is sent
    assert (run.status, run.sent) == ("succeeded", 1)
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]
