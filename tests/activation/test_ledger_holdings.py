"""`ledger.holdings_split`: what a destination may hold and what it surely holds, from one read
of the ledger; an incremental run plans each chunk of its changes with that one read."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from activation import ledger, services, sync
from activation.enums import DeliveryAction, DeliveryStatus, RemovalReason
from activation.models import Delivery, SyncRun
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


def _row(destination: Any, aud: Any, who: Any, action: str, status: str) -> None:
    Delivery.objects.create(
        workspace_id=destination.workspace_id,
        destination=destination,
        audience=aud,
        profile_id=who.profile_id,
        action=action,
        basis={},
        payload_sha256="0" * 64,
        status=status,
        delivered_at=timezone.now(),
    )


def test_the_split_gives_both_sets_of_holdings_in_one_query(
    workspace: Any, receiver: Receiver, django_assert_num_queries: Any
) -> None:
    # given: four people whose last ledger rows differ, and one never sent
    destination = webhook(workspace, receiver.url)
    aud = audience(workspace)
    added, dead, removed, removal_failed, never = (person(workspace) for _ in range(5))
    _row(destination, aud, added, DeliveryAction.ADD, DeliveryStatus.DELIVERED)
    _row(destination, aud, dead, DeliveryAction.ADD, DeliveryStatus.DELIVERED)
    _row(destination, aud, dead, DeliveryAction.ADD, DeliveryStatus.DEAD)
    _row(destination, aud, removed, DeliveryAction.ADD, DeliveryStatus.DELIVERED)
    _row(destination, aud, removed, DeliveryAction.REMOVE, DeliveryStatus.DELIVERED)
    _row(destination, aud, removal_failed, DeliveryAction.ADD, DeliveryStatus.DELIVERED)
    _row(destination, aud, removal_failed, DeliveryAction.REMOVE, DeliveryStatus.FAILED)
    people = [added, dead, removed, removal_failed, never]
    scope = {
        "workspace_id": workspace.pk,
        "profile_ids": [p.profile_id for p in people],
        "destination_ids": [destination.pk],
        "audience_id": aud.pk,
    }

    # when
    with django_assert_num_queries(1):
        may, surely = ledger.holdings_split(**scope)

    # then: the same sets as the two reads of `holdings`
    assert may == {
        (destination.pk, aud.pk, added.profile_id),
        (destination.pk, aud.pk, dead.profile_id),
        (destination.pk, aud.pk, removal_failed.profile_id),
    }
    assert surely == {(destination.pk, aud.pk, added.profile_id)}
    assert may == ledger.holdings(**scope)
    assert surely == ledger.holdings(**scope, delivered_only=True)


def test_an_incremental_plan_reads_the_ledger_once_per_chunk_of_changes(
    workspace: Any,
    receiver: Receiver,
    monkeypatch: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: ada and bob were sent; then both left and cy, dee and eve entered (five changed
    # profiles, read in chunks of two: three chunks)
    ada, bob, cy, dee, eve = (person(workspace) for _ in range(5))
    for who in (ada, bob, cy, dee, eve):
        grant(workspace, who, "advertising")
    synced = services.sync_create(
        audience=audience(workspace),
        destination=webhook(workspace, receiver.url),
        mode="incremental",
        interval_minutes=0,
    )
    enter(synced.audience, ada, bob)
    assert run_sync(synced, django_capture_on_commit_callbacks).sent == 2
    leave(synced.audience, ada, bob)
    enter(synced.audience, cy, dee, eve)
    synced.refresh_from_db()
    monkeypatch.setattr(sync, "REVEAL_BATCH_MAX", 2)
    run = SyncRun.objects.create(workspace=workspace, sync=synced, mode="incremental")

    # when
    with CaptureQueriesContext(connection) as queries:
        plan = sync._Runner(run).plan()

    # then: one read of the delivery ledger per chunk, and one for the adds that did not
    # arrive (none here); the plan is the same as before
    ledger_reads = [q["sql"] for q in queries if "activation_delivery" in q["sql"]]
    assert len(ledger_reads) == 3 + 1
    assert plan.adds == [cy.profile_id, dee.profile_id, eve.profile_id]
    assert plan.removes == sorted(
        [(ada.profile_id, RemovalReason.EXITED), (bob.profile_id, RemovalReason.EXITED)],
        key=lambda pair: str(pair[0]),
    )
    assert plan.resends == []


def test_adds_given_up_are_read_in_chunks(
    workspace: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an outage a destination's undelivered adds number tens of thousands: more than
    one SQLite statement may list. They are read a chunk at a time, with the same answer."""
    destination = webhook(workspace, receiver.url)
    aud = audience(workspace)
    people = [person(workspace) for _ in range(5)]
    for who in people[:3]:  # given up: two dead-lettered adds each
        _row(destination, aud, who, DeliveryAction.ADD, DeliveryStatus.DEAD)
        _row(destination, aud, who, DeliveryAction.ADD, DeliveryStatus.DEAD)
    _row(destination, aud, people[3], DeliveryAction.ADD, DeliveryStatus.DEAD)
    monkeypatch.setattr(ledger, "GIVEN_UP_CHUNK", 2)

    with CaptureQueriesContext(connection) as queries:
        given_up = ledger.adds_given_up(
            workspace_id=workspace.pk,
            destination_id=destination.pk,
            audience_id=aud.pk,
            profile_ids=[p.profile_id for p in people],
            max_dead=2,
        )

    assert given_up == {p.profile_id for p in people[:3]}
    assert len(queries.captured_queries) == 3
