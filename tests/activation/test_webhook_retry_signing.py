"""Webhook retries: each attempt signed afresh (a late retry still passes the receiver's
tolerance), a total budget for the waits of one request, and what the sync and the removals
do with a batch the receiver asked to wait for (retried later, never dead-lettered)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from activation import outbound, removals, services
from activation.enums import DeliveryStatus, RemovalStatus, SyncRunStatus
from activation.models import Delivery, Removal, Sync
from activation.webhooks import (
    RetryPolicy,
    WebhookSignatureInvalid,
    build_request,
    send,
    verify_signature,
)
from tests.activation.sync_helpers import (
    SECRET,
    Receiver,
    audience,
    decide,
    enter,
    grant,
    person,
    run_sync,
    webhook,
)

START = 1_700_000_000.0
PAYLOAD = {"event": "audience.entered", "profile": "p_1"}


class Clock:
    """Time that only moves when `send` sleeps."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class StrictReceiver:
    """Verifies every request as the docs tell receivers to (300 s tolerance, its own clock),
    answers 401 when the check fails, else the next scripted reply (200 once used up)."""

    def __init__(self, clock: Clock, replies: list[httpx.Response]) -> None:
        self.clock = clock
        self.replies = replies
        self.seen: list[httpx.Request] = []
        self.verdicts: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        try:
            verify_signature(
                body=request.content,
                header=request.headers.get("X-CDP-Signature"),
                secrets=SECRET,
                now=self.clock(),
            )
        except WebhookSignatureInvalid as exc:
            self.verdicts.append(exc.code)
            return httpx.Response(401)
        self.verdicts.append("ok")
        return self.replies.pop(0) if self.replies else httpx.Response(200)


def _send(clock: Clock, receiver: StrictReceiver, policy: RetryPolicy) -> Any:
    request = build_request(
        url="https://hooks.example.com/cdp",
        payload=PAYLOAD,
        secrets=SECRET,
        delivery_id="dlv_late",
        timestamp=int(clock()),
    )
    client = httpx.Client(transport=httpx.MockTransport(receiver), follow_redirects=False)
    with client:
        return send(request, policy=policy, client=client, sleep=clock.sleep, clock=clock)


def _wait(seconds: int) -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": str(seconds)})


# --- signing each attempt --------------------------------------------------------------------


def test_a_retry_sent_after_the_tolerance_is_signed_afresh_and_passes_the_check() -> None:
    # given: a receiver that asks twice to wait 200 s (400 s in all, past the 300 s tolerance),
    # and a budget that allows those waits
    clock = Clock()
    receiver = StrictReceiver(clock, [_wait(200), _wait(200)])
    policy = RetryPolicy(max_attempts=5, max_total_wait=1000)

    # when
    result = _send(clock, receiver, policy)

    # then: every attempt passed the receiver's check and the third was delivered
    assert (result.delivered, result.attempts, result.status_code) == (True, 3, 200)
    assert receiver.verdicts == ["ok", "ok", "ok"]
    assert clock.sleeps == [200.0, 200.0]


def test_each_attempt_is_the_same_delivery_signed_at_the_time_it_leaves() -> None:
    # given
    clock = Clock()
    receiver = StrictReceiver(clock, [_wait(200), _wait(200)])

    # when
    _send(clock, receiver, RetryPolicy(max_total_wait=1000))

    # then: one body and one idempotency key, timestamps 200 s apart
    assert {r.content for r in receiver.seen} == {b'{"event":"audience.entered","profile":"p_1"}'}
    assert {r.headers["Idempotency-Key"] for r in receiver.seen} == {"dlv_late"}
    assert {r.headers["X-CDP-Delivery"] for r in receiver.seen} == {"dlv_late"}
    stamps = [r.headers["X-CDP-Signature"].split(",")[0] for r in receiver.seen]
    assert stamps == ["t=1700000000", "t=1700000200", "t=1700000400"]


# --- the total budget of one send ------------------------------------------------------------


def test_send_stops_when_the_next_wait_would_pass_the_total_budget() -> None:
    # given: a budget of 120 s and a receiver asking for 100 s, then 100 s again
    clock = Clock()
    receiver = StrictReceiver(clock, [_wait(100), _wait(100)])

    # when
    result = _send(clock, receiver, RetryPolicy(max_total_wait=120))

    # then: one wait of 100 s; the second is handed back to the caller, not slept
    assert clock.sleeps == [100.0]
    assert (result.delivered, result.attempts, result.status_code) == (False, 2, 503)
    assert (result.error, result.retryable, result.retry_after) == ("http_status", True, 100.0)
    assert len(receiver.seen) == 2


def test_backoff_waits_count_towards_the_budget() -> None:
    # given: plain 503s (no Retry-After), backoff 10 s then 20 s, a budget of 25 s
    clock = Clock()
    receiver = StrictReceiver(clock, [httpx.Response(503)] * 4)
    policy = RetryPolicy(base_delay=10, max_total_wait=25)
    request = build_request(
        url="https://hooks.example.com/cdp", payload=PAYLOAD, secrets=SECRET, delivery_id="d"
    )

    # when
    with httpx.Client(transport=httpx.MockTransport(receiver)) as client:
        result = send(
            request, policy=policy, client=client, sleep=clock.sleep, clock=clock, rng=lambda: 1.0
        )

    # then
    assert clock.sleeps == [10.0]
    assert (result.attempts, result.retryable, result.retry_after) == (2, True, 20.0)


def test_the_budget_defaults_to_two_minutes_and_follows_the_setting(settings: Any) -> None:
    # given
    settings.CDP_WEBHOOK_MAX_WAIT_SECONDS = 30

    # when
    policy = outbound.webhook_policy()

    # then
    assert RetryPolicy().max_total_wait == 120.0
    assert policy.max_total_wait == 30


def test_the_budget_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_total_wait=-1)


# --- what the callers do with a batch the receiver asked to wait for --------------------------


@pytest.mark.django_db
def test_a_batch_the_receiver_defers_is_not_dead_lettered_and_the_next_run_sends_it(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: an incremental webhook sync, and a receiver asking to wait 10 minutes
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = services.sync_create(
        audience=audience(workspace),
        destination=webhook(workspace, receiver.url),
        mode="incremental",
        interval_minutes=0,
    )
    enter(sync.audience, ada)
    receiver.statuses = [503]
    receiver.retry_after = "600"

    # when
    first = run_sync(sync, django_capture_on_commit_callbacks)

    # then: one attempt, nothing dead-lettered, the ledger row left failed, the cursor kept
    assert len(receiver.hits) == 1
    assert (first.status, first.sent, first.excluded) == (
        SyncRunStatus.FAILED,
        0,
        {"deferred": 1},
    )
    until = Sync.objects.get(pk=sync.pk).deferred_until
    assert until is not None
    assert first.error == (
        "The destination asked to wait 600 s (http_status:503); the next run sends the rest. "
        f"Scheduled runs wait until {until.strftime('%Y-%m-%d %H:%M:%S')} UTC "
        "(deferral 1 of at most 5 in a row)."
    )
    assert list(Delivery.objects.values_list("status", flat=True)) == [DeliveryStatus.FAILED]
    assert Sync.objects.get(pk=sync.pk).cursor == 0

    # when: the receiver is back, and the next run goes
    receiver.retry_after = ""
    second = run_sync(sync, django_capture_on_commit_callbacks)

    # then: ada is sent by that run
    assert (second.status, second.sent, second.excluded) == (SyncRunStatus.SUCCEEDED, 1, {})
    assert [r["profileId"] for r in json.loads(receiver.hits[1].body)["records"]] == [
        str(ada.profile_id)
    ]
    last = Delivery.objects.filter(sync_run=second).get()
    assert (last.profile_id, last.status) == (ada.profile_id, DeliveryStatus.DELIVERED)


@pytest.mark.django_db
def test_a_deferred_removal_is_retried_no_sooner_than_the_receiver_asked(
    workspace: Any,
    receiver: Receiver,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: ada was sent, then withdrew; the receiver asks to wait 10 minutes
    settings.CDP_REMOVAL_RETRY_SECONDS = 60
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = services.sync_create(
        audience=audience(workspace),
        destination=webhook(workspace, receiver.url),
        mode="full",
        interval_minutes=0,
    )
    enter(sync.audience, ada)
    run_sync(sync, django_capture_on_commit_callbacks)
    decide(workspace, ada, advertising="withdrawn")
    receiver.statuses = [503]
    receiver.retry_after = "600"
    before = timezone.now()

    # when
    done = removals.removals_send_due()

    # then: not dead, to be tried again in 10 minutes (not the 1 minute backoff)
    removal = Removal.objects.get()
    assert (done.sent, done.failed, done.dead) == (0, 1, 0)
    assert (removal.status, removal.attempts, removal.last_error) == (
        RemovalStatus.FAILED,
        1,
        "http_status:503",
    )
    assert removal.next_attempt_at is not None
    assert timedelta(seconds=600) <= removal.next_attempt_at - before < timedelta(seconds=660)
