"""The hash chain over audit entries.

entry_hash = SHA-256(prev_hash || SHA-256(canonical content)), where the canonical content is a
sorted-key JSON of every stored field except the chain fields and the actor foreign key (which
the database may null when a user is deleted; `actor_ref` keeps who it was). Appends take a
lock (a transaction-scoped advisory lock on PostgreSQL; SQLite serializes writers) so that two
writers never chain to the same predecessor."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.utils import timezone

from cdp.core.exceptions import ApplicationError

GENESIS = "0" * 64
_LOCK_KEY = 0x43445041  # "CDPA"


class AuditTrailAppendOnly(ApplicationError):
    code = "audit_append_only"
    status = 409
    default_message = "Audit entries are never changed or deleted."


def canonical_content(entry: Any) -> bytes:
    content_type = entry.content_type
    data = {
        "content_type": f"{content_type.app_label}.{content_type.model}",
        # stored as text and bigint whatever type the caller passed
        "object_pk": str(entry.object_pk),
        "object_id": None if entry.object_id is None else int(entry.object_id),
        "object_repr": entry.object_repr,
        "serialized_data": entry.serialized_data,
        "action": entry.action,
        "changes_text": entry.changes_text,
        "changes": entry.changes,
        "actor_ref": entry.actor_ref,
        "cid": entry.cid,
        "remote_addr": entry.remote_addr,
        "remote_port": entry.remote_port,
        "timestamp": entry.timestamp.isoformat(timespec="microseconds"),
        "additional_data": entry.additional_data,
        "actor_email": entry.actor_email,
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def link_hash(prev_hash: str, content: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + hashlib.sha256(content).digest()).hexdigest()


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])


def seal_new_entry(entry: Any) -> None:
    """Fill the chain fields of an entry about to be inserted (inside a transaction)."""
    _lock()
    model = type(entry)
    # Timestamps are set here, not by auto_now_add, so the hashed value is the stored one;
    # microseconds are kept by both databases.
    entry.timestamp = timezone.now()
    entry.actor_ref = f"user:{entry.actor_id}" if entry.actor_id else ""
    last = model.objects.order_by("-pk").values_list("entry_hash", flat=True).first()
    entry.prev_hash = last or GENESIS
    entry.entry_hash = link_hash(entry.prev_hash, canonical_content(entry))


def seal_new_entries(entries: list[Any]) -> None:
    """seal_new_entry for entries about to be inserted together, in this order: one lock, one
    read of the last hash, the links computed in memory."""
    if not entries:
        return
    _lock()
    model = type(entries[0])
    prev = model.objects.order_by("-pk").values_list("entry_hash", flat=True).first() or GENESIS
    for entry in entries:
        entry.timestamp = timezone.now()
        entry.actor_ref = f"user:{entry.actor_id}" if entry.actor_id else ""
        entry.prev_hash = prev
        entry.entry_hash = prev = link_hash(prev, canonical_content(entry))


@dataclass(frozen=True)
class ChainBreak:
    entry_id: int
    reason: str


@dataclass(frozen=True)
class ChainVerification:
    checked: int
    first_break: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def _entries(model: Any, batch: int = 2000) -> Iterator[Any]:
    last_pk = 0
    while True:
        rows = list(
            model.objects.select_related("content_type")
            .filter(pk__gt=last_pk)
            .order_by("pk")[:batch]
        )
        if not rows:
            return
        yield from rows
        last_pk = rows[-1].pk


def verify(model: Any) -> ChainVerification:
    """Walk the whole chain in order; stop at the first entry that does not hold."""
    prev = GENESIS
    checked = 0
    for entry in _entries(model):
        checked += 1
        if entry.prev_hash != prev:
            return ChainVerification(
                checked, ChainBreak(entry.pk, "does not link to the entry before it")
            )
        if link_hash(prev, canonical_content(entry)) != entry.entry_hash:
            return ChainVerification(
                checked, ChainBreak(entry.pk, "content does not match its hash")
            )
        prev = entry.entry_hash
    return ChainVerification(checked, None)
