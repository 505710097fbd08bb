"""An erasure drains the intake buffer first: what was received before it began is stored (or,
the person being suppressed, dropped) before the other stores are erased. Batches another
worker is storing at that moment are waited for; batches that arrive later do not fail the
erasure. Batches set aside after repeated failures are opened and the person's messages taken
out of them; one that cannot be checked fails the erasure."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from cdp.core import registry
from cdp.core.crypto.fields import Sealed
from cdp.core.registry import ErasureStatus
from collect import intake
from collect.handlers import erase_intake
from collect.models import IntakeBatch
from profiles import services
from profiles.models import Event, Profile
from tests.profiles.ingest_helpers import msg
from tests.sessions import held_by_another_drain


@pytest.fixture
def source(workspace: Any, monkeypatch: Any) -> Any:
    from collect import tasks

    monkeypatch.setattr(tasks.intake_drain, "delay", lambda: None)  # the test drains
    return services.source_create(workspace=workspace, name="Web")


@pytest.fixture
def profile(workspace: Any, source: Any) -> Any:
    outcome = services.ingest_messages(source=source, messages=[msg(user_id="u-1")])
    return Profile.objects.get(pk=outcome.profile_ids[0])


def test_what_was_received_is_drained_and_the_erasure_reports_it(source: Any, profile: Any) -> None:
    # given
    intake.intake_store(source=source, messages=[msg(anonymous_id="a-2", message_id="m-2")])
    # when
    report = erase_intake(profile)
    # then
    assert (report.status, report.counts) == (
        ErasureStatus.ERASED,
        {"messages_drained": 1, "set_aside_messages_removed": 0, "batches_left": 0},
    )
    assert Event.objects.filter(message_id="m-2").exists()


def _set_aside(batch: IntakeBatch, **changes: Any) -> None:
    IntakeBatch.objects.filter(pk=batch.pk).update(
        dead=True, attempts=intake.MAX_ATTEMPTS, last_error="IntegrityError", **changes
    )


def _sealed_text(batch: IntakeBatch) -> bytes:
    return bytes(IntakeBatch.objects.values_list("payload", flat=True).get(pk=batch.pk))


@override_settings(COLLECT_INTAKE_SHARDS=1)  # one batch
def test_the_persons_messages_are_taken_out_of_a_batch_set_aside_and_the_rest_kept(
    source: Any, profile: Any
) -> None:
    # given: a set-aside batch with the person's identify (a sentinel email) and another's track
    sentinel = "sentinel.erased.7731@example.com"
    [batch] = intake.intake_store(
        source=source,
        messages=[
            msg("identify", user_id="u-1", message_id="m-p", traits={"email": sentinel}),
            msg(anonymous_id="someone-else", message_id="m-o"),
        ],
    )
    _set_aside(batch)
    services.suppression_add(
        workspace=source.workspace, identifiers=[("user_id", "u-1")], reason="erasure"
    )
    # when
    report = erase_intake(profile)
    # then: the person's message is gone from the buffer, the other waits for a retry
    assert (report.status, report.counts) == (
        ErasureStatus.ERASED,
        {"messages_drained": 0, "set_aside_messages_removed": 1, "batches_left": 0},
    )
    left = IntakeBatch.objects.get(pk=batch.pk)
    assert (left.dead, left.message_count) == (True, 1)
    assert [m["message_id"] for m in left.payload] == ["m-o"]
    assert sentinel.encode() not in _sealed_text(batch)
    # and a retry stores the other person's message
    intake.intake_retry(batch_ids=[batch.pk], workspace_ids=[source.workspace_id])
    intake.intake_drain()
    assert Event.objects.filter(message_id="m-o").exists()
    assert not Event.objects.filter(message_id="m-p").exists()


@override_settings(COLLECT_INTAKE_SHARDS=1)  # one batch
def test_a_batch_set_aside_with_only_the_persons_messages_is_deleted(
    source: Any, profile: Any
) -> None:
    # given: a set-aside batch with the person's messages only, reached through an alias
    [batch] = intake.intake_store(
        source=source,
        messages=[msg(anonymous_id="dev-9", message_id="m-1"), msg(user_id="u-1")],
    )
    _set_aside(batch)
    services.suppression_add(
        workspace=source.workspace,
        identifiers=[("user_id", "u-1"), ("anonymous_id", "dev-9")],
        reason="erasure",
    )
    # when
    report = erase_intake(profile)
    # then
    assert (report.status, report.counts["set_aside_messages_removed"]) == (
        ErasureStatus.ERASED,
        2,
    )
    assert not IntakeBatch.objects.filter(pk=batch.pk).exists()


def test_a_batch_set_aside_holding_nobody_erased_is_left_as_it_was(
    source: Any, profile: Any
) -> None:
    # given
    [batch] = intake.intake_store(source=source, messages=[msg(anonymous_id="a-3")])
    _set_aside(batch)
    sealed = _sealed_text(batch)
    # when
    report = erase_intake(profile)
    # then: checked and left alone (a steward still sees it, sealed as it was)
    assert (report.status, report.counts["set_aside_messages_removed"]) == (
        ErasureStatus.ERASED,
        0,
    )
    assert _sealed_text(batch) == sealed


def test_a_batch_set_aside_that_cannot_be_checked_fails_the_erasure_and_says_so(
    source: Any, profile: Any
) -> None:
    # given: a set-aside batch whose sealed payload is damaged
    [batch] = intake.intake_store(source=source, messages=[msg(user_id="u-1")])
    damaged = bytearray(_sealed_text(batch))
    damaged[-1] ^= 0xFF
    _set_aside(batch, payload=Sealed(damaged))
    # when
    report = erase_intake(profile)
    # then
    assert (report.status, report.counts["batches_left"]) == (ErasureStatus.FAILED, 1)
    assert report.detail == "batches set aside after repeated failures could not be checked (1)"


def test_a_batch_set_aside_whose_messages_cannot_be_read_is_counted_and_the_rest_purged(
    source: Any, profile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: two batches set aside, the person's in each; the first cannot be read back
    [bad] = intake.intake_store(source=source, messages=[msg(user_id="u-1")])
    [good] = intake.intake_store(source=source, messages=[msg(user_id="u-1")])
    _set_aside(bad)
    _set_aside(good)
    services.suppression_add(
        workspace=source.workspace, identifiers=[("user_id", "u-1")], reason="erasure"
    )
    real = intake._deserialize
    first = {"id": None}

    def deserialize(data: dict[str, Any]) -> Any:
        if first["id"] is None:
            first["id"] = data["message_id"]
        if data["message_id"] == first["id"]:
            raise TypeError("unexpected field")
        return real(data)

    monkeypatch.setattr(intake, "_deserialize", deserialize)
    # when
    report = erase_intake(profile)
    # then: the unreadable one is left as it was and named; the other is purged
    assert (report.status, report.counts["set_aside_messages_removed"]) == (
        ErasureStatus.FAILED,
        1,
    )
    assert report.detail == "batches set aside after repeated failures could not be checked (1)"
    assert IntakeBatch.objects.filter(pk=bad.pk).exists()
    assert not IntakeBatch.objects.filter(pk=good.pk).exists()


def test_settled_the_handler_waits_for_nothing_and_reports_what_is_in_flight(
    source: Any, profile: Any
) -> None:
    # given: the erasure settled the buffer a moment ago; a batch from before is still live
    began = timezone.now()
    [batch] = intake.intake_store(source=source, messages=[msg(user_id="u-1")])
    IntakeBatch.objects.filter(pk=batch.pk).update(received_at=began - timedelta(seconds=1))
    # when
    with registry.erasure_settled_at(began):
        report = erase_intake(profile)
    # then: not drained here (that is the settle's job, outside the erasure's locks)
    assert (report.status, report.counts) == (
        ErasureStatus.FAILED,
        {"messages_drained": 0, "set_aside_messages_removed": 0, "batches_left": 1},
    )
    assert report.detail == "batches another worker held were not stored in time (1)"
    assert IntakeBatch.objects.filter(pk=batch.pk).exists()


def test_a_batch_set_aside_after_the_erasure_began_is_left_to_its_retry(
    source: Any, profile: Any
) -> None:
    # given: set aside after the erasure began (its messages drop the person when retried)
    [late] = intake.intake_store(source=source, messages=[msg(user_id="u-1")])
    _set_aside(late, received_at=timezone.now() + timedelta(minutes=1))
    services.suppression_add(
        workspace=source.workspace, identifiers=[("user_id", "u-1")], reason="erasure"
    )
    # when
    report = erase_intake(profile)
    # then
    assert report.status == ErasureStatus.ERASED
    assert IntakeBatch.objects.get(pk=late.pk).message_count == 1


def _held_by_another_drain(batch: IntakeBatch, release_after: float | None) -> threading.Thread:
    """Another drain holds `batch`; after `release_after` seconds it deletes the row (it stored
    the batch) and commits; with None it gives up after 1.5 s."""

    def finish(other: psycopg.Connection[Any]) -> None:
        if release_after is None:
            time.sleep(1.5)
            other.rollback()
            return
        time.sleep(release_after)
        other.execute("DELETE FROM collect_intakebatch WHERE id = %s", [batch.pk])
        other.commit()

    return held_by_another_drain(batch, finish)


pg_only = pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="row and advisory locks"
)


@pg_only
@pytest.mark.django_db(transaction=True)
@override_settings(COLLECT_INTAKE_SHARDS=1)
def test_a_batch_another_worker_is_storing_is_waited_for(source: Any, profile: Any) -> None:
    # given: another drain holds the person's batch and commits half a second later
    [batch] = intake.intake_store(source=source, messages=[msg(user_id="u-1", message_id="m-5")])
    thread = _held_by_another_drain(batch, release_after=0.5)
    try:
        # when
        report = erase_intake(profile)
    finally:
        thread.join()
    # then: not FAILED for a batch that was merely in flight
    assert (report.status, report.counts["batches_left"]) == (ErasureStatus.ERASED, 0)


@pg_only
@pytest.mark.django_db(transaction=True)
@override_settings(COLLECT_INTAKE_SHARDS=1)
def test_a_batch_held_past_the_wait_fails_the_erasure_and_says_so(
    source: Any, profile: Any
) -> None:
    # given: another drain holds a batch longer than the erasure waits
    [batch] = intake.intake_store(source=source, messages=[msg(user_id="u-1", message_id="m-6")])
    thread = _held_by_another_drain(batch, release_after=None)
    try:
        # when
        drained = intake.intake_drain_before(
            workspace_id=source.workspace_id, received_before=timezone.now(), wait_seconds=0.3
        )
    finally:
        thread.join()
    # then
    assert (drained.stored, drained.set_aside, drained.held) == (0, 0, 1)
