"""The asynchronous intake: a collection request stores its validated messages sealed in the
intake buffer and answers at once; workers drain the buffer into the identity pipeline, several
requests per transaction, with SELECT .. FOR UPDATE SKIP LOCKED so that workers never wait on
each other's rows. A batch that keeps failing is set aside (dead) after MAX_ATTEMPTS."""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

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


def intake_store(*, source: Any, messages: list[InboundMessage]) -> IntakeBatch:
    """Seal a request's valid messages into the buffer; the drain is queued after commit."""
    from collect import tasks

    batch = IntakeBatch(
        workspace_id=source.workspace_id,
        source=source,
        received_at=timezone.now(),
        message_count=len(messages),
        data_key_id=profile_services.intake_key_current(workspace_id=source.workspace_id),
    )
    batch.payload = [_serialize(m) for m in messages]
    batch.save(force_insert=True)
    transaction.on_commit(tasks.intake_drain.delay)
    return batch


def intake_drain(*, max_batches: int = 20, max_rounds: int = 50) -> int:
    """Process pending batches until none is left (or `max_rounds`); returns messages stored."""
    stored = 0
    for _ in range(max_rounds):
        done = _drain_once(max_batches)
        if done is None:
            break
        stored += done
    return stored


def _drain_once(max_batches: int) -> int | None:
    claimed: list[Any] = []
    try:
        with transaction.atomic():
            pending = IntakeBatch.objects.filter(dead=False).order_by("received_at")
            if connection.features.has_select_for_update_skip_locked:
                pending = pending.select_for_update(skip_locked=True)
            claimed = list(pending[:max_batches])
            if not claimed:
                return None
            by_source: dict[int, list[InboundMessage]] = defaultdict(list)
            for batch in claimed:
                by_source[batch.source_id].extend(_deserialize(m) for m in batch.payload)
            for source_id, messages in by_source.items():
                source = profile_selectors.source_get(source_id=source_id)
                outcome = profile_services.ingest_messages(source=source, messages=messages)
                consent_signals_apply(
                    source=source, messages=messages, profile_ids=outcome.profile_ids
                )
            IntakeBatch.objects.filter(pk__in=[b.pk for b in claimed]).delete()
            return sum(b.message_count for b in claimed)
    except Exception as exc:
        if not claimed:
            raise
        _record_failure([b.pk for b in claimed], exc)
        return 0


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


def intake_keys_in_use() -> set[Any]:
    return set(IntakeBatch.objects.values_list("data_key_id", flat=True).distinct())
