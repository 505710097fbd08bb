"""A webhook receiver that asks a run's additions to wait longer than a worker may hold
(Retry-After past CDP_WEBHOOK_MAX_WAIT_SECONDS): the wait is kept on the sync, the scheduler
holds the sync back until then and says so once, and the deferrals in a row are capped by
CDP_SYNC_MAX_DEFERRALS, past which the run fails where the steward sees it."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from activation import services, sync
from activation.enums import DeliveryStatus, SyncRunStatus
from activation.models import Delivery, Sync, SyncRun
from tests.activation.sync_helpers import (
    Receiver,
    audience,
    enter,
    grant,
    person,
    run_sync,
    webhook,
)

pytestmark = pytest.mark.django_db


def _utc(at: Any) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _hourly(workspace: Any, receiver: Receiver) -> Sync:
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    created = services.sync_create(
        audience=audience(workspace),
        destination=webhook(workspace, receiver.url),
        mode="incremental",
        interval_minutes=60,
    )
    enter(created.audience, ada)
    return created


def test_the_wait_is_kept_and_scheduled_runs_hold_back_until_then(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: an hourly sync whose receiver asks its first batch to wait two hours
    hourly = _hourly(workspace, receiver)
    receiver.statuses = [503]
    receiver.retry_after = "7200"
    before = timezone.now()

    # when
    first = run_sync(hourly, django_capture_on_commit_callbacks)

    # then: the wait is on the sync, and the run record says when runs go on
    hourly.refresh_from_db()
    assert hourly.deferrals == 1
    assert hourly.deferred_until is not None
    assert timedelta(hours=2) <= hourly.deferred_until - before < timedelta(hours=2, minutes=1)
    assert (first.status, first.excluded) == (SyncRunStatus.FAILED, {"deferred": 1})
    assert first.error == (
        "The destination asked to wait 7200 s (http_status:503); the next run sends the rest. "
        f"Scheduled runs wait until {_utc(hourly.deferred_until)} "
        "(deferral 1 of at most 5 in a row)."
    )

    # when: the hour has passed, twice over a minute (the beat ticks every minute)
    hour_later = before + timedelta(minutes=61)
    started = sync.syncs_start_due(now=hour_later)
    started += sync.syncs_start_due(now=hour_later + timedelta(minutes=1))

    # then: no run, no call to the receiver, and one record saying why
    assert started == []
    assert len(receiver.hits) == 1
    skipped = SyncRun.objects.filter(sync=hourly).exclude(pk=first.pk).get()
    assert (skipped.status, skipped.error) == (
        SyncRunStatus.REFUSED,
        "Not run: the destination asked not to be sent to before "
        f"{_utc(hourly.deferred_until)}; scheduled runs wait until then.",
    )

    # when: the time the receiver asked for has passed
    started = sync.syncs_start_due(now=hourly.deferred_until + timedelta(minutes=1))

    # then: the scheduler starts the sync again
    assert [run.sync_id for run in started] == [hourly.pk]


def test_a_receiver_that_always_asks_to_wait_fails_the_run_at_the_limit(
    workspace: Any,
    receiver: Receiver,
    owner: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: at most three deferrals in a row, and a receiver asking every run to wait
    settings.CDP_SYNC_MAX_DEFERRALS = 3
    hourly = _hourly(workspace, receiver)
    receiver.statuses = [503, 503, 503]
    receiver.retry_after = "600"

    # when: three runs (started by hand: the scheduler would wait)
    runs = [run_sync(hourly, django_capture_on_commit_callbacks) for _ in range(3)]

    # then: the first two are deferred, their rows left to be sent again
    assert [(r.status, r.excluded) for r in runs[:2]] == [
        (SyncRunStatus.FAILED, {"deferred": 1}),
        (SyncRunStatus.FAILED, {"deferred": 1}),
    ]
    assert [
        Delivery.objects.filter(sync_run=r).values_list("status", flat=True).get() for r in runs
    ] == [DeliveryStatus.FAILED, DeliveryStatus.FAILED, DeliveryStatus.DEAD]
    # and: the third fails for good, its batch dead-lettered, with an error that says why
    hourly.refresh_from_db()
    assert hourly.deferrals == 3
    assert hourly.deferred_until is not None
    third = runs[2]
    assert (third.status, third.sent, third.excluded) == (
        SyncRunStatus.FAILED,
        0,
        {"dead_letter": 1},
    )
    assert third.error == (
        "The destination asked to wait 600 s (http_status:503), 3 runs in a row "
        "(CDP_SYNC_MAX_DEFERRALS: 3): the batch was dead-lettered and the run failed. "
        f"Check the destination; scheduled runs wait until {_utc(hourly.deferred_until)}."
    )
    # and: the steward sees it on the run and on the sync
    client = Client()
    client.force_login(owner)
    page = client.get(reverse("admin:activation_syncrun_change", args=[third.pk])).content
    assert b"the batch was dead-lettered and the run failed" in page
    listing = client.get(reverse("admin:activation_sync_changelist")).content.decode()
    assert "(3 in a row)" in listing

    # when: it asks again, past the limit
    receiver.statuses = [503]
    past = run_sync(hourly, django_capture_on_commit_callbacks)

    # then: that run fails the same way, and the count stays at the limit
    hourly.refresh_from_db()
    assert (past.status, past.excluded, hourly.deferrals) == (
        SyncRunStatus.FAILED,
        {"dead_letter": 1},
        3,
    )

    # when: the receiver takes records again
    fourth = run_sync(hourly, django_capture_on_commit_callbacks)

    # then: the add arrives and the deferrals in a row end
    hourly.refresh_from_db()
    assert (fourth.status, fourth.sent) == (SyncRunStatus.SUCCEEDED, 1)
    assert (hourly.deferrals, hourly.deferred_until) == (0, None)


def test_a_deferred_resend_keeps_the_wait_without_counting_a_deferral(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada's add was dead-lettered by a first run (the cursor moved past her entry)
    hourly = _hourly(workspace, receiver)
    receiver.statuses = [503, 503, 503]
    assert run_sync(hourly, django_capture_on_commit_callbacks).excluded == {"dead_letter": 1}

    # when: the next run sends her again, and the receiver asks to wait ten minutes
    receiver.statuses = [429]
    receiver.retry_after = "600"
    before = timezone.now()
    second = run_sync(hourly, django_capture_on_commit_callbacks)

    # then: the wait is kept; a re-send is not the run's own work, so no deferral is counted
    hourly.refresh_from_db()
    assert second.excluded == {"deferred": 1}
    assert hourly.deferrals == 0
    assert hourly.deferred_until is not None
    assert timedelta(seconds=600) <= hourly.deferred_until - before < timedelta(seconds=660)


def test_a_wait_of_our_own_budget_is_not_reported_as_the_receivers(
    workspace: Any, receiver: Receiver, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A receiver failing without a Retry-After, past the retry budget of one send: the run
    is put off as for a deferral, and the error says why, not that the receiver asked."""
    settings.CDP_WEBHOOK_MAX_WAIT_SECONDS = 0
    settings.CDP_WEBHOOK_RETRY_BASE_MS = 1000  # a backoff past that budget (never slept)
    hourly = _hourly(workspace, receiver)
    receiver.statuses = [503]

    run = run_sync(hourly, django_capture_on_commit_callbacks)

    assert (run.status, run.excluded) == (SyncRunStatus.FAILED, {"deferred": 1})
    assert run.error.startswith(
        "The destination kept failing (http_status:503) past the retry budget of a send "
        "(CDP_WEBHOOK_MAX_WAIT_SECONDS); the next try is in "
    )
    assert "asked to wait" not in run.error
