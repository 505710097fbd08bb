"""Queued removals: sent by the removal task (signed webhook request or removal file), retried
with backoff, dead-lettered, retried by a steward; their keys destroyed once sent; the beat
schedule runs the task."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from activation import removals, services, webhooks
from activation.enums import DeliveryAction, DeliveryStatus, RemovalReason, RemovalStatus
from activation.models import Delivery, Removal
from profiles.models import DataKey, Identity
from tests.activation.sync_helpers import (
    SECRET,
    Receiver,
    audience,
    decide,
    enter,
    file_destination,
    grant,
    person,
    run_sync,
    webhook,
)

pytestmark = pytest.mark.django_db


def _sent_then_withdrawn(workspace: Any, destination: Any, capture: Any) -> tuple[Any, Removal]:
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = services.sync_create(
        audience=audience(workspace), destination=destination, mode="full", interval_minutes=0
    )
    enter(sync.audience, ada)
    run_sync(sync, capture)
    decide(workspace, ada, advertising="withdrawn")
    return ada, Removal.objects.get(profile_id=ada.profile_id)


def test_the_beat_schedule_sends_due_removals_every_minute() -> None:
    # given / when
    entry = django_settings.CELERY_BEAT_SCHEDULE["activation-removals-send"]

    # then
    assert entry == {
        "task": "activation.tasks.removals_send_due",
        "schedule": timedelta(minutes=1),
    }


def test_a_queued_removal_is_sent_once_the_withdrawal_commits(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada was sent
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    destination = webhook(workspace, receiver.url)
    sync = services.sync_create(
        audience=audience(workspace), destination=destination, mode="full", interval_minutes=0
    )
    enter(sync.audience, ada)
    run_sync(sync, django_capture_on_commit_callbacks)

    # when: she withdraws, and the transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        decide(workspace, ada, advertising="withdrawn")

    # then: the removal task sent a signed remove request at once
    assert len(receiver.hits) == 2
    hit = receiver.hits[1]
    webhooks.verify_signature(body=hit.body, header=hit.headers["X-CDP-Signature"], secrets=SECRET)
    body = json.loads(hit.body)
    assert (body["type"], body["reason"], body["audience"]["key"]) == (
        "remove",
        "consent_withdrawn",
        "buyers",
    )
    assert [r["profileId"] for r in body["records"]] == [str(ada.profile_id)]
    removal = Removal.objects.get()
    assert (removal.status, removal.attempts, removal.payload) == (RemovalStatus.SENT, 1, None)
    assert DataKey.objects.get(pk=str(removal.data_key_id)).wrapped is None
    row = Delivery.objects.get(action=DeliveryAction.REMOVE)
    assert (row.profile_id, row.status, row.basis) == (
        ada.profile_id,
        DeliveryStatus.DELIVERED,
        {"removal": str(removal.pk), "reason": "consent_withdrawn"},
    )


def test_a_failing_removal_is_retried_with_backoff_then_dead_lettered(
    workspace: Any,
    receiver: Receiver,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: a queued removal and a receiver that keeps failing
    settings.CDP_REMOVAL_MAX_ATTEMPTS = 3
    settings.CDP_REMOVAL_RETRY_SECONDS = 60
    settings.CDP_WEBHOOK_MAX_ATTEMPTS = 1
    _ada, removal = _sent_then_withdrawn(
        workspace, webhook(workspace, receiver.url), django_capture_on_commit_callbacks
    )
    receiver.statuses = [500] * 10
    now = timezone.now()

    # when: the first attempt
    done = removals.removals_send_due(now=now)

    # then: failed, retried a minute later
    removal.refresh_from_db()
    assert (done.failed, removal.status, removal.attempts) == (1, RemovalStatus.FAILED, 1)
    assert removal.last_error == "http_status:500"
    assert removal.next_attempt_at == pytest.approx(
        timezone.now() + timedelta(seconds=60), abs=timedelta(seconds=5)
    )
    # ...not before it is due
    assert removals.removals_send_due(now=now + timedelta(seconds=30)).failed == 0

    # when: the second attempt, due; then the third
    removals.removals_send_due(now=removal.next_attempt_at + timedelta(seconds=1))
    removal.refresh_from_db()
    assert (removal.status, removal.attempts) == (RemovalStatus.FAILED, 2)
    assert removal.next_attempt_at - timezone.now() > timedelta(seconds=100)  # doubled
    done = removals.removals_send_due(now=removal.next_attempt_at + timedelta(seconds=1))

    # then: dead; its payload is kept for a retry, and the ledger shows the failed removal
    removal.refresh_from_db()
    assert (done.dead, removal.status, removal.attempts) == (1, RemovalStatus.DEAD, 3)
    assert removal.payload is not None
    assert Delivery.objects.get(action=DeliveryAction.REMOVE).status == DeliveryStatus.DEAD
    assert len(receiver.hits) == 1 + 3

    # when: a steward retries it once the destination works again
    receiver.statuses = []
    with django_capture_on_commit_callbacks(execute=True):
        services.removal_retry(removal=removal)

    # then
    removal.refresh_from_db()
    assert (removal.status, removal.payload) == (RemovalStatus.SENT, None)


def test_a_removal_to_a_file_destination_is_a_removal_file(
    workspace: Any, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    destination = file_destination(
        workspace,
        "meta_custom_audiences",
        data={"identifiers": ["email"]},
        config={"prefix": "meta"},
    )
    ada, removal = _sent_then_withdrawn(workspace, destination, django_capture_on_commit_callbacks)

    # when
    done = removals.removals_send_due()

    # then: a removal file with her hashed email
    assert done.sent == 1
    (path,) = done.artifacts
    rows = list(csv.reader(io.StringIO((export_dir / path).read_text())))
    assert rows[1][0] == hashlib.sha256(ada.email.lower().encode()).hexdigest()
    assert "-remove-" in path
    removal.refresh_from_db()
    assert removal.status == RemovalStatus.SENT


def test_a_person_sent_twice_gets_one_removal_per_audience(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada sent through two audiences to one destination
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    destination = webhook(workspace, receiver.url)
    for key in ("buyers", "browsers"):
        sync = services.sync_create(
            audience=audience(workspace, key),
            destination=destination,
            mode="full",
            interval_minutes=0,
        )
        enter(sync.audience, ada)
        run_sync(sync, django_capture_on_commit_callbacks)

    # when: she withdraws twice
    decide(workspace, ada, advertising="withdrawn")
    decide(workspace, ada, advertising="denied")

    # then: one removal per audience, not one per withdrawal
    assert sorted(Removal.objects.values_list("audience__key", "reason")) == [
        ("browsers", RemovalReason.CONSENT_WITHDRAWN),
        ("buyers", RemovalReason.CONSENT_WITHDRAWN),
    ]


def test_an_ad_platform_removal_without_any_match_key_is_recorded_dead(
    workspace: Any, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: sent to Google on her email, which is gone since
    destination = file_destination(
        workspace, "google_customer_match", data={"identifiers": ["email"]}
    )
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    sync = services.sync_create(
        audience=audience(workspace), destination=destination, mode="full", interval_minutes=0
    )
    enter(sync.audience, ada)
    run_sync(sync, django_capture_on_commit_callbacks)
    Identity.objects.filter(profile_id=ada.profile_id, identifier_type="email").delete()

    # when
    decide(workspace, ada, advertising="withdrawn")

    # then
    removal = Removal.objects.get()
    assert (removal.status, removal.last_error, removal.data_key_id) == (
        RemovalStatus.DEAD,
        "no_match_key",
        None,
    )
