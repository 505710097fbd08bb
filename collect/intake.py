"""The asynchronous intake: a collection request stores its validated messages sealed in the
intake buffer and answers at once; workers drain the buffer into the identity pipeline, several
requests per transaction. A batch that keeps failing is set aside (dead) after MAX_ATTEMPTS.

The buffer is sharded by a hash of each message's userId (else anonymousId), and a drain takes
one shard at a time (a transaction-scoped advisory lock, then SELECT .. FOR UPDATE SKIP LOCKED):
two drains then rarely touch the same person, so they seldom wait on each other's identifier
locks (with one unsharded queue, every drain waited for the other's whole transaction: two
workers stored no more than one; docs/benchmarks.md). Within a shard, messages are stored in
the order they arrived."""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from cdp.core import audit, bulk, dbstats
from cdp.core.exceptions import InvalidInput
from collect.consent_signals import consent_signals_apply
from collect.models import IntakeBatch
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.contracts import InboundMessage

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
_DATETIME_FIELDS = ("received_at", "timestamp", "original_timestamp", "sent_at")


_FIELDS = tuple(f.name for f in dataclasses.fields(InboundMessage))


def _serialize(message: InboundMessage) -> dict[str, Any]:
    # A shallow dict: the sealed JSON encoder (orjson) writes datetimes as ISO 8601 itself, and
    # dataclasses.asdict deep-copied every property and context (half the request's CPU).
    return {name: getattr(message, name) for name in _FIELDS}


def _deserialize(data: dict[str, Any]) -> InboundMessage:
    for name in _DATETIME_FIELDS:
        if isinstance(data.get(name), str):  # as stored; still a datetime before a round trip
            data[name] = datetime.fromisoformat(data[name])
    return InboundMessage(**data)


def _shard_of(message: InboundMessage, shards: int) -> int:
    """The intake shard of a message: a stable hash of its userId, else its anonymousId. A
    person's identified traffic lands in one shard, a device's anonymous traffic in one."""
    key = message.user_id or message.anonymous_id or message.message_id
    return zlib.crc32(str(key).encode()) % shards


def intake_store(*, source: Any, messages: list[InboundMessage]) -> list[IntakeBatch]:
    """Seal a request's valid messages into the buffer, one row per shard they fall in (see
    `_shard_of`); the drain is queued after commit."""
    from collect import tasks

    shards = max(1, int(getattr(settings, "COLLECT_INTAKE_SHARDS", 4)))
    by_shard: dict[int, list[InboundMessage]] = defaultdict(list)
    for message in messages:
        by_shard[_shard_of(message, shards)].append(message)
    key_id = profile_services.intake_key_current(workspace_id=source.workspace_id)
    received_at = timezone.now()
    batches = []
    for shard, part in sorted(by_shard.items()):
        batch = IntakeBatch(
            workspace_id=source.workspace_id,
            source=source,
            received_at=received_at,
            message_count=len(part),
            data_key_id=key_id,
            shard=shard,
        )
        batch.payload = [_serialize(m) for m in part]
        batches.append(batch)
    _insert(batches)
    transaction.on_commit(tasks.intake_drain.delay)
    return batches


_COLUMNS = ["id", "workspace", "source", "received_at", "message_count", "payload", "data_key",
            "attempts", "last_error", "dead", "shard", "contended"]  # fmt: skip


def _insert(batches: list[IntakeBatch]) -> None:
    """Write new batches by COPY (binary on PostgreSQL): the sealed payloads, some 70 KB a
    request, go out as bytes instead of an escaped literal psycopg builds and the server parses
    back (bulk_create's statement cost the request an eighth of its CPU)."""
    payload = IntakeBatch._meta.get_field("payload")
    bulk.insert(
        IntakeBatch,
        _COLUMNS,
        [
            (
                b.id,
                b.workspace_id,
                b.source_id,
                b.received_at,
                b.message_count,
                payload.pre_save(b, True),
                b.data_key_id,
                b.attempts,
                b.last_error,
                b.dead,
                b.shard,
                b.contended,
            )
            for b in batches
        ],
    )


def intake_drain(*, max_messages: int | None = None, max_rounds: int = 50) -> int:
    """Process pending batches until none is left (or `max_rounds`); returns messages stored.
    Each round is one transaction over the oldest batches of one shard that no other drain
    holds, up to `max_messages` (COLLECT_DRAIN_MESSAGES) messages. Between rounds, the tables
    ingestion grows are analyzed when they have grown enough (cdp.core.dbstats: autovacuum's
    job, done here too for servers without it)."""
    budget = max_messages or int(getattr(settings, "COLLECT_DRAIN_MESSAGES", 2000))
    stored = 0
    for _ in range(max_rounds):
        done = _drain_once(budget)
        if done is None:
            break
        stored += done
        dbstats.refresh_statistics()
    return stored


@dataclasses.dataclass(frozen=True)
class DrainedBefore:
    stored: int
    set_aside: int  # batches received by then that failed MAX_ATTEMPTS times
    held: int  # batches received by then that another drain still held at the deadline


def intake_drain_before(
    *, workspace_id: int, received_before: datetime, wait_seconds: float = 30.0
) -> DrainedBefore:
    """Drain until no live batch of the workspace received before `received_before` is left
    (an erasure: the person's pending messages must not arrive after it). Batches another
    drain holds at that moment are waited for, polling, up to `wait_seconds`: that drain
    stores them when it commits. Later arrivals are not waited for (a busy workspace always
    has some)."""
    stored = intake_drain()
    deadline = time.monotonic() + wait_seconds
    while (
        intake_live_before(workspace_id=workspace_id, received_before=received_before)
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
        stored += intake_drain()
    return DrainedBefore(
        stored=stored,
        set_aside=IntakeBatch.objects.filter(
            workspace_id=workspace_id, received_at__lte=received_before, dead=True
        ).count(),
        held=intake_live_before(workspace_id=workspace_id, received_before=received_before),
    )


def intake_live_before(*, workspace_id: int, received_before: datetime) -> int:
    """Batches of the workspace received before `received_before` and not stored yet (held by
    a drain, or waiting for one); set-aside ones are not counted."""
    return IntakeBatch.objects.filter(
        workspace_id=workspace_id, dead=False, received_at__lte=received_before
    ).count()


@dataclasses.dataclass(frozen=True)
class Purged:
    removed: int  # messages carrying a suppressed identifier taken out of set-aside batches
    unreadable: int  # set-aside batches that could not be opened or read to check them


def intake_purge_suppressed(*, workspace: Any, received_before: datetime) -> Purged:
    """Take the messages that carry a suppressed identifier (an erased person's) out of the
    workspace's batches set aside after repeated failures, received before `received_before`:
    the others stay for a steward's retry, re-sealed under the current intake key; a batch
    left empty is deleted. Without this, a failing batch kept an erased person's messages
    (readable with the workspace's intake key) until someone retried it."""
    removed = unreadable = 0
    dead = IntakeBatch.objects.filter(
        workspace_id=workspace.pk, dead=True, received_at__lte=received_before
    )
    for pk in list(dead.order_by("received_at", "id").values_list("pk", flat=True)):
        try:
            with transaction.atomic():  # a savepoint: a batch that fails is left as it was
                removed += _purge_batch(workspace, pk)
        except Exception as exc:
            # It could not be opened or read (why it was set aside, perhaps); its class only.
            logger.warning("intake: a set-aside batch could not be checked: %s",
                           type(exc).__name__)  # fmt: skip
            unreadable += 1
    if removed:
        logger.info("intake: %d suppressed messages taken out of set-aside batches", removed)
    return Purged(removed=removed, unreadable=unreadable)


def _purge_batch(workspace: Any, pk: Any) -> int:
    batch = IntakeBatch.objects.select_for_update().filter(pk=pk, dead=True).first()
    if batch is None:  # retried or deleted meanwhile
        return 0
    messages = [_deserialize(dict(m)) for m in batch.payload]
    flags = profile_services.messages_suppressed(workspace=workspace, messages=messages)
    if not any(flags):
        return 0
    kept = [m for m, suppressed in zip(messages, flags, strict=True) if not suppressed]
    if not kept:
        batch.delete()
        return len(messages)
    batch.data_key_id = profile_services.intake_key_current(workspace_id=workspace.pk)
    batch.payload = [_serialize(m) for m in kept]
    batch.message_count = len(kept)
    batch.save(update_fields=["payload", "message_count", "data_key"])
    return len(messages) - len(kept)


_SHARD_LOCK = 0x43445049  # "CDPI", with the shard number as the second key
_MAX_ROWS = 500


def _lock_shard(shard: int) -> bool:
    """Whether this transaction got the shard (PostgreSQL; SQLite has one writer anyway)."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [_SHARD_LOCK, shard])
        row = cursor.fetchone()
    return bool(row and row[0])


def _claim(max_messages: int) -> list[IntakeBatch]:
    """The oldest pending batches of the shard whose oldest batch waits longest among those
    no other drain holds (held until commit), up to `max_messages` messages (at least one),
    all handed back (contended) or none."""
    pending = IntakeBatch.objects.filter(dead=False)
    shards = (
        pending.values("shard")
        .annotate(oldest=Min("received_at"))
        .order_by("oldest")
        .values_list("shard", flat=True)
    )
    for shard in list(shards):
        if not _lock_shard(shard):
            continue
        rows = pending.filter(shard=shard).order_by("received_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        chosen: list[Any] = []
        total = 0
        contended: bool | None = None
        for pk, count, handed_back in rows.values_list("pk", "message_count", "contended")[
            :_MAX_ROWS
        ]:
            # Handed-back messages (at the head of the shard) are drained on their own: that
            # drain waits for identifiers, the next ones need not.
            if contended is None:
                contended = handed_back
            if handed_back != contended or (chosen and total + count > max_messages):
                break
            chosen.append(pk)
            total += count
        if chosen:
            return list(IntakeBatch.objects.filter(pk__in=chosen).order_by("received_at", "id"))
    return []


def _drain_once(max_messages: int) -> int | None:
    claimed: list[Any] = []
    try:
        # Audit entries (consent state changes) are appended at the end of the transaction:
        # the trail's lock is then held only from there to the commit, not through the drain.
        with transaction.atomic(), audit.deferred_entries():
            claimed = _claim(max_messages)
            if not claimed:
                return None
            # Messages another drain is resolving (same people in another shard) are handed
            # back rather than waited for, once: a batch of handed-back messages waits.
            postpone = not any(b.contended for b in claimed)
            by_source: dict[int, list[InboundMessage]] = defaultdict(list)
            for batch in claimed:
                by_source[batch.source_id].extend(_deserialize(m) for m in batch.payload)
            postponed = 0
            for source_id, messages in by_source.items():
                source = profile_selectors.source_get(source_id=source_id)
                outcome = profile_services.ingest_messages(
                    source=source, messages=messages, postpone_contended=postpone
                )
                consent_signals_apply(
                    source=source, messages=messages, profile_ids=outcome.profile_ids
                )
                if outcome.postponed:
                    _hand_back(source, claimed, outcome.postponed)
                    postponed += len(outcome.postponed)
            IntakeBatch.objects.filter(pk__in=[b.pk for b in claimed]).delete()
            return sum(b.message_count for b in claimed) - postponed
    except Exception as exc:
        if not claimed:
            raise
        _record_failure([b.pk for b in claimed], exc)
        return 0


def _hand_back(source: Any, claimed: list[IntakeBatch], messages: list[InboundMessage]) -> None:
    """Put postponed messages back at the head of their shard, in one batch marked contended."""
    first = claimed[0]
    batch = IntakeBatch(
        workspace_id=source.workspace_id,
        source=source,
        received_at=min(b.received_at for b in claimed),
        message_count=len(messages),
        data_key_id=profile_services.intake_key_current(workspace_id=source.workspace_id),
        shard=first.shard,
        contended=True,
    )
    batch.payload = [_serialize(m) for m in messages]
    _insert([batch])


def _record_failure(batch_ids: list[Any], exc: Exception) -> None:
    """Count the attempt outside the failed transaction; never log the exception's text."""
    code = getattr(exc, "code", None) or type(exc).__name__
    logger.error("intake drain failed for %d batches: %s", len(batch_ids), code)
    with transaction.atomic():
        for batch in IntakeBatch.objects.select_for_update().filter(pk__in=batch_ids):
            batch.attempts += 1
            batch.last_error = str(code)[:200]
            batch.dead = batch.attempts >= MAX_ATTEMPTS
            batch.save(update_fields=["attempts", "last_error", "dead"])


def intake_retry(*, batch_ids: list[Any], workspace_ids: Iterable[int]) -> int:
    """Put batches set aside after repeated failures (dead) back in the queue, attempts reset
    (a steward's retry once the cause is fixed); a drain is queued after commit. Only batches
    of `workspace_ids` (the steward's) are touched. Returns the batches put back."""
    from collect import tasks

    with transaction.atomic():
        retried = IntakeBatch.objects.filter(
            pk__in=batch_ids, workspace_id__in=list(workspace_ids), dead=True
        ).update(dead=False, attempts=0, last_error="")
        if retried:
            transaction.on_commit(tasks.intake_drain.delay)
    if retried:
        logger.info("intake: %d batches set aside put back in the queue", retried)
    return retried


def intake_discard(
    *,
    batch_ids: list[Any],
    workspace_ids: Iterable[int],
    actor: Any,
    reason: str,
    via: str = "admin",
) -> int:
    """Delete batches set aside after repeated failures, their messages unstored (a steward's
    last resort for a batch no retry can store, e.g. one whose payload cannot be opened):
    one audit entry per batch with the reason, its counts and its error code. Live batches,
    and batches outside `workspace_ids` (the steward's), are left alone. Returns the batches
    discarded."""
    if not reason.strip():
        raise InvalidInput("A reason is required to discard data.", code="reason_required")
    discarded = 0
    with transaction.atomic():
        chosen = (
            IntakeBatch.objects.select_for_update()
            .filter(pk__in=batch_ids, workspace_id__in=list(workspace_ids), dead=True)
            .defer("payload")
        )
        for batch in chosen:
            audit.record_discard(
                batch,
                actor=actor,
                reason=reason,
                via=via,
                details={
                    "workspace": batch.workspace_id,
                    "source": batch.source_id,
                    "received_at": batch.received_at.isoformat(),
                    "messages": batch.message_count,
                    "attempts": batch.attempts,
                    "last_error": batch.last_error,
                },
            )
            batch.delete()
            discarded += 1
    if discarded:
        logger.info("intake: %d batches set aside discarded by a steward", discarded)
    return discarded


def intake_keys_in_use() -> set[Any]:
    return set(IntakeBatch.objects.values_list("data_key_id", flat=True).distinct())
