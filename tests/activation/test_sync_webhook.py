"""Webhook syncs end to end against a receiver on 127.0.0.1: signed batches, the consent gate
at send time, the delivery ledger, retries and the dead letter, incremental adds and removes,
restricted profiles, and a withdrawal that takes a person back."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from activation import services, webhooks
from activation.enums import DeliveryAction, DeliveryStatus, RemovalReason, RemovalStatus
from activation.models import Delivery, Removal, Sync
from consent.models import ConsentState
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.models import DataKey
from tests.activation.sync_helpers import (
    SECRET,
    Receiver,
    audience,
    decide,
    enter,
    grant,
    leave,
    person,
    run_sync,
    webhook,
)

pytestmark = pytest.mark.django_db


def _body(hit: Any) -> dict[str, Any]:
    return json.loads(hit.body)


def _sync(workspace: Any, receiver: Receiver, mode: str = "full") -> Sync:
    aud = audience(workspace)
    return services.sync_create(
        audience=aud,
        destination=webhook(workspace, receiver.url),
        mode=mode,
        interval_minutes=0,
    )


def test_a_full_sync_posts_one_signed_batch_of_consented_members_and_records_each(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: three members, two of whom granted advertising
    ada, bob, cy = person(workspace), person(workspace), person(workspace)
    grant(workspace, ada, "advertising")
    grant(workspace, bob, "advertising")
    sync = _sync(workspace, receiver)
    enter(sync.audience, ada, bob, cy)

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: the run's counts
    assert (run.status, run.total, run.processed, run.sent, run.removed) == (
        "succeeded",
        3,
        3,
        2,
        0,
    )
    assert run.excluded == {"no_consent:advertising": 1}
    # ...one POST, signed with the destination's secret
    assert len(receiver.hits) == 1
    hit = receiver.hits[0]
    webhooks.verify_signature(body=hit.body, header=hit.headers["X-CDP-Signature"], secrets=SECRET)
    body = _body(hit)
    assert (body["type"], body["syncRun"], body["audience"]["key"]) == (
        "add",
        str(run.pk),
        "buyers",
    )
    records = sorted(body["records"], key=lambda r: r["userId"])
    assert records == [
        {
            "profileId": str(ada.profile_id),
            "userId": ada.user_id,
            "email": ada.email.lower(),
            "traits": {"country": "GB"},
        },
        {
            "profileId": str(bob.profile_id),
            "userId": bob.user_id,
            "email": bob.email.lower(),
            "traits": {"country": "GB"},
        },
    ]
    # ...and one ledger row per record: the grant behind it and the hash of its exact bytes
    rows = {d.profile_id: d for d in Delivery.objects.filter(sync_run=run)}
    assert set(rows) == {ada.profile_id, bob.profile_id}
    for who, record in ((ada, records[0]), (bob, records[1])):
        row = rows[who.profile_id]
        state = ConsentState.objects.get(profile_id=who.profile_id, purpose__key="advertising")
        exact = webhooks.encode_body(record)
        assert exact in hit.body
        assert (row.action, row.status, row.basis, row.payload_sha256) == (
            DeliveryAction.ADD,
            DeliveryStatus.DELIVERED,
            {"advertising": str(state.record_id)},
            hashlib.sha256(exact).hexdigest(),
        )


def test_a_failing_receiver_is_retried_then_the_batch_is_dead_lettered(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: the receiver fails three times (the configured attempts)
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = _sync(workspace, receiver)
    enter(sync.audience, ada)
    receiver.statuses = [503, 500, 502]

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: three attempts of the same request, then the dead letter
    assert len(receiver.hits) == 3
    assert len({h.headers["Idempotency-Key"] for h in receiver.hits}) == 1
    assert len({h.body for h in receiver.hits}) == 1
    assert (run.status, run.sent, run.excluded) == ("partial", 0, {"dead_letter": 1})
    assert "http_status:502" in run.error
    row = Delivery.objects.get(sync_run=run)
    assert (row.action, row.status) == (DeliveryAction.ADD, DeliveryStatus.DEAD)


def test_a_receiver_that_recovers_within_the_attempts_gets_the_batch(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = _sync(workspace, receiver)
    enter(sync.audience, ada)
    receiver.statuses = [500, 429]

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then
    assert len(receiver.hits) == 3
    assert (run.status, run.sent) == ("succeeded", 1)
    assert Delivery.objects.get(sync_run=run).status == DeliveryStatus.DELIVERED


def test_incremental_syncs_send_entries_and_exits_since_the_cursor(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a first run sent ada and bob
    ada, bob, cy = person(workspace), person(workspace), person(workspace)
    for who in (ada, bob, cy):
        grant(workspace, who, "advertising")
    sync = _sync(workspace, receiver, mode="incremental")
    enter(sync.audience, ada, bob)
    first = run_sync(sync, django_capture_on_commit_callbacks)
    assert (first.sent, first.removed) == (2, 0)

    # when: bob leaves, cy enters
    leave(sync.audience, bob)
    enter(sync.audience, cy)
    second = run_sync(sync, django_capture_on_commit_callbacks)

    # then: bob is removed, cy added, ada untouched
    assert (second.status, second.total, second.sent, second.removed) == ("succeeded", 2, 1, 1)
    remove, add = (_body(h) for h in receiver.hits[1:])
    assert (remove["type"], remove["reason"]) == ("remove", RemovalReason.EXITED)
    assert remove["records"] == [
        {"profileId": str(bob.profile_id), "userId": bob.user_id, "email": bob.email.lower()}
    ]
    assert [r["userId"] for r in add["records"]] == [cy.user_id]
    removal = Removal.objects.get(profile_id=bob.profile_id)
    assert (removal.status, removal.reason, removal.payload) == (
        RemovalStatus.SENT,
        RemovalReason.EXITED,
        None,
    )
    assert DataKey.objects.get(pk=str(removal.data_key_id)).destroyed_at is not None
    assert Delivery.objects.filter(
        profile_id=bob.profile_id, action=DeliveryAction.REMOVE, status="delivered"
    ).exists()

    # when: nothing changed since
    third = run_sync(sync, django_capture_on_commit_callbacks)

    # then
    assert (third.status, third.total, third.sent, third.removed) == ("succeeded", 0, 0, 0)
    assert len(receiver.hits) == 3
    sync.refresh_from_db()
    assert sync.cursor > 0


def test_a_restricted_profile_is_excluded_and_taken_back(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada and bob were sent
    ada, bob = person(workspace), person(workspace)
    grant(workspace, ada, "advertising")
    grant(workspace, bob, "advertising")
    sync = _sync(workspace, receiver)
    enter(sync.audience, ada, bob)
    run_sync(sync, django_capture_on_commit_callbacks)

    # when: ada's processing is restricted
    profile = profile_selectors.profile_get(workspace=workspace, profile_id=ada.profile_id)
    profile_services.profile_restrict(profile=profile, restricted=True)

    # then: a removal is queued at once
    removal = Removal.objects.get(profile_id=ada.profile_id)
    assert (removal.reason, removal.status) == (RemovalReason.RESTRICTED, RemovalStatus.QUEUED)

    # when: the next full run, with a stale membership still listing her (the membership
    # refresh ends hers at once; the sync does not rely on it)
    enter(sync.audience, ada)
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: the removal went first, ada is excluded as restricted, bob sent again
    assert run.excluded == {"restricted": 1}
    assert (run.sent, run.removed) == (1, 1)
    bodies = [_body(h) for h in receiver.hits[1:]]
    assert [(b["type"], [r["userId"] for r in b["records"]]) for b in bodies] == [
        ("remove", [ada.user_id]),
        ("add", [bob.user_id]),
    ]


def test_a_withdrawal_queues_a_removal_and_the_next_sync_excludes_the_person(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada was sent
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = _sync(workspace, receiver)
    enter(sync.audience, ada)
    run_sync(sync, django_capture_on_commit_callbacks)
    assert len(receiver.hits) == 1

    # when: she withdraws
    decide(workspace, ada, advertising="withdrawn")

    # then: a removal to that destination is queued, its payload sealed under its own key
    removal = Removal.objects.get(profile_id=ada.profile_id)
    assert (removal.reason, removal.status, removal.destination_id) == (
        RemovalReason.CONSENT_WITHDRAWN,
        RemovalStatus.QUEUED,
        sync.destination_id,
    )
    key = DataKey.objects.get(pk=str(removal.data_key_id))
    assert (key.purpose, key.profile_id, key.destroyed_at) == ("removal", None, None)
    assert removal.payload == {
        "record": {
            "profileId": str(ada.profile_id),
            "userId": ada.user_id,
            "email": ada.email.lower(),
        }
    }

    # when: the next sync
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: the removal went out, signed, and she was not sent again
    assert (run.sent, run.removed, run.excluded) == (0, 1, {"no_consent:advertising": 1})
    assert len(receiver.hits) == 2
    hit = receiver.hits[1]
    webhooks.verify_signature(body=hit.body, header=hit.headers["X-CDP-Signature"], secrets=SECRET)
    assert (_body(hit)["type"], _body(hit)["reason"]) == ("remove", "consent_withdrawn")
    removal.refresh_from_db()
    assert (removal.status, removal.payload) == (RemovalStatus.SENT, None)
    assert DataKey.objects.get(pk=key.pk).destroyed_at is not None


def test_a_withdrawal_for_a_purpose_the_destination_does_not_serve_queues_nothing(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    ada = person(workspace)
    grant(workspace, ada, "advertising", "analytics")
    sync = _sync(workspace, receiver)
    enter(sync.audience, ada)
    run_sync(sync, django_capture_on_commit_callbacks)

    # when
    decide(workspace, ada, analytics="withdrawn")

    # then
    assert not Removal.objects.exists()


def test_a_second_run_is_refused_while_one_is_queued(workspace: Any, receiver: Receiver) -> None:
    # given: a run queued (its task waits for the commit)
    sync = _sync(workspace, receiver)
    services.sync_run_start(sync=sync)

    # when / then
    with pytest.raises(Exception) as refused:
        services.sync_run_start(sync=sync)
    assert getattr(refused.value, "code", None) == "sync_running"
