"""An add that did not arrive (dead-lettered, or written ahead by a run that never confirmed
it) is sent again by the next incremental run; for removals the ledger stays conservative:
such an add may have arrived, so a person who leaves is still taken back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from activation import outbound, services
from activation.enums import DeliveryAction, DeliveryStatus, RemovalReason
from activation.models import Delivery, Sync
from tests.activation.sync_helpers import (
    Receiver,
    audience,
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


def _incremental(workspace: Any, receiver: Receiver) -> Sync:
    return services.sync_create(
        audience=audience(workspace),
        destination=webhook(workspace, receiver.url),
        mode="incremental",
        interval_minutes=0,
    )


def _ledger(who: Any) -> list[tuple[str, str]]:
    return list(
        Delivery.objects.filter(profile_id=who.profile_id)
        .order_by("id")
        .values_list("action", "status")
    )


def test_a_dead_lettered_add_is_sent_by_the_next_incremental_run(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada's add was dead-lettered, and the run moved the cursor past her entry
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = _incremental(workspace, receiver)
    enter(sync.audience, ada)
    receiver.statuses = [503, 503, 503]
    first = run_sync(sync, django_capture_on_commit_callbacks)
    assert (first.status, first.sent, first.excluded) == ("partial", 0, {"dead_letter": 1})

    # when: the receiver is back and nothing changed in the audience
    second = run_sync(sync, django_capture_on_commit_callbacks)

    # then: ada is sent, and the ledger says so
    assert (second.status, second.total, second.sent) == ("succeeded", 1, 1)
    add = _body(receiver.hits[-1])
    assert (add["type"], [r["userId"] for r in add["records"]]) == ("add", [ada.user_id])
    assert _ledger(ada) == [
        (DeliveryAction.ADD, DeliveryStatus.DEAD),
        (DeliveryAction.ADD, DeliveryStatus.DELIVERED),
    ]

    # when: another run
    third = run_sync(sync, django_capture_on_commit_callbacks)

    # then: she is not sent twice
    assert (third.status, third.total, third.sent) == ("succeeded", 0, 0)
    assert len(receiver.hits) == 4


def test_an_add_never_confirmed_is_sent_when_the_run_is_tried_again(
    workspace: Any,
    receiver: Receiver,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: the worker died while sending ada: her ledger row was written ahead (failed),
    # and the cursor did not move
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = _incremental(workspace, receiver)
    enter(sync.audience, ada)

    def crash(**kwargs: Any) -> outbound.SendResult:
        raise ConnectionResetError

    with monkeypatch.context() as patched:
        patched.setattr(outbound, "webhook_send", crash)
        with pytest.raises(ConnectionResetError):
            run_sync(sync, django_capture_on_commit_callbacks)
    sync.refresh_from_db()
    assert sync.cursor == 0
    assert _ledger(ada) == [(DeliveryAction.ADD, DeliveryStatus.FAILED)]

    # when: the next run plans the same changes
    second = run_sync(sync, django_capture_on_commit_callbacks)

    # then: ada is sent, not taken as held
    assert (second.status, second.sent) == ("succeeded", 1)
    assert [r["userId"] for r in _body(receiver.hits[-1])["records"]] == [ada.user_id]


def test_a_member_whose_dead_lettered_add_left_is_still_taken_back(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada's add was dead-lettered (it may have arrived all the same), bob's delivered
    ada, bob = person(workspace), person(workspace)
    for who in (ada, bob):
        grant(workspace, who, "advertising")
    sync = _incremental(workspace, receiver)
    enter(sync.audience, ada)
    receiver.statuses = [503, 503, 503]
    run_sync(sync, django_capture_on_commit_callbacks)

    # when: ada leaves and bob enters
    leave(sync.audience, ada)
    enter(sync.audience, bob)
    second = run_sync(sync, django_capture_on_commit_callbacks)

    # then: ada is removed, not added again; bob is added
    assert (second.status, second.sent, second.removed) == ("succeeded", 1, 1)
    remove, add = (_body(h) for h in receiver.hits[3:])
    assert (remove["type"], remove["reason"]) == ("remove", RemovalReason.EXITED)
    assert [r["userId"] for r in remove["records"]] == [ada.user_id]
    assert [r["userId"] for r in add["records"]] == [bob.user_id]


def test_resends_go_one_by_one_and_a_refused_record_does_not_take_others_down(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada's and bo's adds were dead-lettered together
    ada, bo = person(workspace), person(workspace)
    grant(workspace, ada, "advertising")
    grant(workspace, bo, "advertising")
    sync = _incremental(workspace, receiver)
    enter(sync.audience, ada, bo)
    receiver.statuses = [503, 503, 503]
    first = run_sync(sync, django_capture_on_commit_callbacks)
    assert first.excluded == {"dead_letter": 2}
    cursor = Sync.objects.get(pk=sync.pk).cursor

    # when: the receiver refuses the next request for good (a 400) and takes the one after
    receiver.statuses = [400]
    second = run_sync(sync, django_capture_on_commit_callbacks)

    # then: each was sent on its own, one arrived; the run is partial, its cursor kept moving
    sent = [[r["userId"] for r in _body(hit)["records"]] for hit in receiver.hits[-2:]]
    assert sorted(sent) == sorted([[ada.user_id], [bo.user_id]])
    assert (second.status, second.total, second.sent) == ("partial", 2, 1)
    assert Sync.objects.get(pk=sync.pk).cursor == cursor


def test_an_add_refused_again_and_again_is_left_to_a_full_run(
    workspace: Any,
    receiver: Receiver,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    # given: ada's add dead-lettered as many times as the setting allows
    settings.CDP_SYNC_MAX_RESENDS = 2
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = _incremental(workspace, receiver)
    enter(sync.audience, ada)
    receiver.statuses = [400, 400]
    run_sync(sync, django_capture_on_commit_callbacks)
    run_sync(sync, django_capture_on_commit_callbacks)
    assert _ledger(ada) == [(DeliveryAction.ADD, DeliveryStatus.DEAD)] * 2

    # when: another incremental run, then a full one
    third = run_sync(sync, django_capture_on_commit_callbacks)
    full = run_sync(sync, django_capture_on_commit_callbacks, mode="full")

    # then: the incremental run leaves her alone, the full run sends her
    assert (third.status, third.total) == ("succeeded", 0)
    assert (full.status, full.sent) == ("succeeded", 1)


def test_a_receiver_outage_does_not_use_up_the_resends(
    workspace: Any,
    receiver: Receiver,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    # given: ada's and bo's adds dead-lettered, then the receiver down for three more runs
    settings.CDP_SYNC_MAX_RESENDS = 2
    ada, bo = person(workspace), person(workspace)
    grant(workspace, ada, "advertising")
    grant(workspace, bo, "advertising")
    sync = _incremental(workspace, receiver)
    enter(sync.audience, ada, bo)
    receiver.statuses = [503] * 3
    run_sync(sync, django_capture_on_commit_callbacks)
    down = []
    for _ in range(3):
        receiver.statuses = [503] * 100
        hits = len(receiver.hits)
        down.append(run_sync(sync, django_capture_on_commit_callbacks))
        # then: one re-send tried (its attempts), the other waits with it
        assert len(receiver.hits) - hits == settings.CDP_WEBHOOK_MAX_ATTEMPTS
    assert {run.status for run in down} == {"partial"}
    # when: the receiver is back
    receiver.statuses = []
    back = run_sync(sync, django_capture_on_commit_callbacks)
    # then: both are sent; the outage was not counted as their refusal
    assert (back.status, back.sent) == ("succeeded", 2)
