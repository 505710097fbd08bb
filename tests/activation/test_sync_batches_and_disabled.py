"""Sync batches: a webhook's `batch_size` setting (additions and removals), bounded by the sync
batch size; and runs whose sync or destination was disabled after they were queued."""

from __future__ import annotations

import json
from typing import Any

import pytest

from activation import outbound, removals, services
from activation.enums import DeliveryStatus, SyncRunStatus
from activation.models import Delivery, Destination, Sync, SyncRun
from activation.sync import sync_run_execute
from consent import services as consent_services
from tests.activation.sync_helpers import (
    SECRET,
    Person,
    Receiver,
    audience,
    decide,
    enter,
    grant,
    person,
    run_sync,
)

pytestmark = pytest.mark.django_db


def _people(workspace: Any, count: int) -> list[Person]:
    people = [person(workspace) for _ in range(count)]
    for who in people:
        grant(workspace, who, "advertising")
    return people


def _sync(workspace: Any, url: str, *, mode: str = "full", **config: Any) -> Sync:
    consent_services.purposes_ensure_defaults(workspace=workspace)
    destination = services.destination_create(
        workspace=workspace,
        name="Hook",
        kind="webhook",
        purposes=["advertising"],
        data={"identifiers": ["user_id"]},
        config={"url": url, **config},
        secret=SECRET,
    )
    return services.sync_create(
        audience=audience(workspace), destination=destination, mode=mode, interval_minutes=0
    )


def _sizes(receiver: Receiver) -> list[tuple[str, int]]:
    return [(body["type"], len(body["records"])) for body in map(_body, receiver.hits)]


def _body(hit: Any) -> dict[str, Any]:
    return json.loads(hit.body)


# --- batch sizes -----------------------------------------------------------------------------


def test_a_webhook_gets_batches_of_its_configured_batch_size(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: five consented members and a webhook taking two records a request
    people = _people(workspace, 5)
    sync = _sync(workspace, receiver.url, batch_size=2)
    enter(sync.audience, *people)

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: three requests, of 2, 2 and 1 records, in member order
    assert _sizes(receiver) == [("add", 2), ("add", 2), ("add", 1)]
    sent = [r["profileId"] for body in map(_body, receiver.hits) for r in body["records"]]
    assert sent == sorted(str(who.profile_id) for who in people)
    assert (run.status, run.sent, run.processed) == (SyncRunStatus.SUCCEEDED, 5, 5)


def test_a_webhook_batch_is_never_larger_than_the_sync_batch_size(
    workspace: Any, receiver: Receiver, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: the webhook would take 100 a request, the sync batch is 2
    settings.CDP_SYNC_BATCH_SIZE = 2
    people = _people(workspace, 3)
    sync = _sync(workspace, receiver.url, batch_size=100)
    enter(sync.audience, *people)

    # when
    run_sync(sync, django_capture_on_commit_callbacks)

    # then
    assert _sizes(receiver) == [("add", 2), ("add", 1)]


def test_batch_size_per_destination(settings: Any) -> None:
    # given
    settings.CDP_SYNC_BATCH_SIZE = 500

    # when / then: a webhook's own setting, else WEBHOOK_BATCH_SIZE; files take the sync's
    assert outbound.batch_size(Destination(kind="webhook", config={"batch_size": 7})) == 7
    assert outbound.batch_size(Destination(kind="webhook", config={})) == 100
    assert outbound.batch_size(Destination(kind="csv", config={})) == 500


def test_removals_to_a_webhook_go_in_batches_of_its_batch_size(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: three people sent, who then all withdraw (three removals queued)
    people = _people(workspace, 3)
    sync = _sync(workspace, receiver.url, batch_size=2)
    enter(sync.audience, *people)
    run_sync(sync, django_capture_on_commit_callbacks)
    for who in people:
        decide(workspace, who, advertising="withdrawn")
    receiver.hits.clear()

    # when
    done = removals.removals_send_due()

    # then: two remove requests, of 2 and 1 records
    assert done.sent == 3
    assert _sizes(receiver) == [("remove", 2), ("remove", 1)]


# --- disabled after the run was queued -------------------------------------------------------


def _queued(sync: Sync, capture: Any) -> SyncRun:
    """A run queued, its task not run yet."""
    with capture(execute=False):
        return services.sync_run_start(sync=sync)


def test_a_run_queued_before_its_sync_was_disabled_is_refused(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a run queued, then the sync switched off
    people = _people(workspace, 2)
    sync = _sync(workspace, receiver.url)
    enter(sync.audience, *people)
    run = _queued(sync, django_capture_on_commit_callbacks)
    Sync.objects.filter(pk=sync.pk).update(enabled=False)

    # when: its task runs
    sync_run_execute(run_id=run.pk)

    # then: refused, nothing sent, nothing in the ledger, the cursor kept
    run.refresh_from_db()
    assert (run.status, run.sent, run.processed) == (SyncRunStatus.REFUSED, 0, 0)
    assert run.error == "The sync was disabled after this run was queued: nothing was sent."
    assert run.finished_at is not None
    assert receiver.hits == []
    assert not Delivery.objects.exists()
    assert Sync.objects.get(pk=sync.pk).cursor == 0


def test_a_run_queued_before_its_destination_was_disabled_is_refused(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a run queued, then the destination switched off
    people = _people(workspace, 2)
    sync = _sync(workspace, receiver.url)
    enter(sync.audience, *people)
    run = _queued(sync, django_capture_on_commit_callbacks)
    services.destination_update(destination=sync.destination, enabled=False)

    # when
    sync_run_execute(run_id=run.pk)

    # then
    run.refresh_from_db()
    assert (run.status, run.sent) == (SyncRunStatus.REFUSED, 0)
    assert run.error == (
        "The destination was disabled after this run was queued: nothing was sent."
    )
    assert receiver.hits == []
    assert not Delivery.objects.exists()


def test_a_run_stops_between_batches_once_its_destination_is_disabled(
    workspace: Any,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: three members in batches of one; the destination is switched off while the
    # first batch is on its way
    people = _people(workspace, 3)
    sync = _sync(workspace, receiver.url, mode="incremental", batch_size=1)
    enter(sync.audience, *people)
    real_send = outbound.webhook_send

    def send_then_disable(**kwargs: Any) -> outbound.SendResult:
        result = real_send(**kwargs)
        Destination.objects.filter(pk=sync.destination.pk).update(enabled=False)
        return result

    monkeypatch.setattr(outbound, "webhook_send", send_then_disable)

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: the first batch only; the run says why, and the cursor stays for the rest
    assert _sizes(receiver) == [("add", 1)]
    assert (run.status, run.sent, run.processed) == (SyncRunStatus.PARTIAL, 1, 1)
    assert run.error == "The destination was disabled during the run: the rest was not sent."
    assert list(Delivery.objects.values_list("status", flat=True)) == [DeliveryStatus.DELIVERED]
    assert Sync.objects.get(pk=sync.pk).cursor == 0
