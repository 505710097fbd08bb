"""What leaves the platform for a destination, and how it travels.

A sync or a removal loads the people of one batch (identifier values and traits decrypted in
the worker's memory, never logged or stored), turns each into a record in the destination's
format, and sends the batch: a signed webhook request, or rows of a file under the workspace's
export directory. Each record's exact bytes, as they appear in the request body or the file,
are what the delivery ledger hashes (`Outgoing.row`).

Formats:

- webhook: JSON `{"type": "add" | "remove", "records": [...], ...}`; a record is
  `{"profileId": ..., "userId": ..., "email": ..., "traits": {...}}` with only the declared
  identifiers (the most recently seen value of each) and traits. A remove carries the same
  identifiers, no traits, and the request a `reason` (activation.enums.RemovalReason:
  `exited`, `consent_withdrawn`, `consent_expired`, `restricted`, `erasure`).
- google_customer_match / meta_custom_audiences: the platform's upload CSV, hashed as the
  platform documents (activation.platforms); a removal file has the same columns.
- csv / jsonl: `profile_id`, the declared identifiers, then the declared traits; a removal
  file has `profile_id` and the identifiers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from activation import webhooks
from activation.destinations import WEBHOOK_BATCH_SIZE, export_dir
from activation.enums import AD_PLATFORMS, DeliveryAction, DestinationKind
from activation.models import Audience, Destination
from activation.platforms import Contact, files
from cdp.core.ids import uuid7
from profiles import selectors as profile_selectors
from profiles.enums import IdentifierType
from profiles.exceptions import ProfileNotFound

# Webhook record keys for identifier types (Segment's spelling where it has one).
WEBHOOK_KEYS = {
    IdentifierType.USER_ID: "userId",
    IdentifierType.ANONYMOUS_ID: "anonymousId",
    IdentifierType.EMAIL: "email",
    IdentifierType.PHONE: "phone",
    IdentifierType.DEVICE_ID: "deviceId",
    IdentifierType.ADVERTISING_ID: "advertisingId",
}
FILE_EXTENSIONS: dict[str, str] = {DestinationKind.JSONL: "jsonl"}


@dataclass(frozen=True)
class Person:
    """One profile's declared identifiers and traits, decrypted; lives for one batch."""

    profile_id: Any
    identifiers: dict[str, list[str]] = field(default_factory=dict, repr=False)
    traits: dict[str, Any] = field(default_factory=dict, repr=False)

    def first(self, kind: str) -> str | None:
        values = self.identifiers.get(kind)
        return values[0] if values else None


@dataclass(frozen=True)
class Outgoing:
    """One record to send: `record` is JSON-able (what a queued removal keeps, sealed), `row`
    the exact bytes it takes in the request body or the file."""

    profile_id: Any
    record: Any = field(repr=False)
    row: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.row).hexdigest()


@dataclass(frozen=True)
class SendResult:
    delivered: bool
    error: str = ""  # a code (http_status, timeout, ...), never a value
    retryable: bool = False
    artifact: str = ""  # the file written, relative to CDP_EXPORT_DIR
    # Set when the destination asked for (or the retry budget left) a wait longer than a
    # worker may hold: try again that many seconds later, do not dead-letter.
    retry_after: float | None = None
    asked: bool = False  # whether the destination asked for `retry_after` (Retry-After)


def survivors(*, workspace: Any, profile_ids: Sequence[Any]) -> dict[Any, Any]:
    """For those of `profile_ids` merged into another profile: their survivor's id (an absorbed
    profile's identities moved to it)."""
    ids = list(dict.fromkeys(profile_ids))
    active = set(
        profile_selectors.profile_list(workspace=workspace)
        .filter(pk__in=ids)
        .order_by()
        .values_list("pk", flat=True)
    )
    found = {}
    for pk in ids:
        if pk in active:
            continue
        try:
            survivor = profile_selectors.profile_get(workspace=workspace, profile_id=pk)
        except ProfileNotFound:
            continue
        if survivor.pk != pk:
            found[pk] = survivor.pk
    return found


def people_load(*, destination: Destination, profile_ids: Sequence[Any]) -> dict[Any, Person]:
    """The people of one batch (at most profiles.selectors.REVEAL_BATCH_MAX), with what the
    destination declared it receives. An ad platform matches on hashed identifiers, which
    belong to the person, not to a profile id: a profile merged into another is loaded with
    its survivor's (its own moved there), so that a removal for it can still be expressed."""
    data = destination.data or {}
    workspace = destination.workspace
    ids = list(dict.fromkeys(profile_ids))
    via: dict[Any, Any] = {}
    if destination.kind in AD_PLATFORMS:
        via = survivors(workspace=workspace, profile_ids=ids)
    sources = list(dict.fromkeys(via.get(pk, pk) for pk in ids))
    identifiers = profile_selectors.profiles_identifiers_revealed(
        workspace=workspace, profile_ids=sources, types=data.get("identifiers", [])
    )
    traits = profile_selectors.profiles_traits_revealed(
        workspace=workspace, profile_ids=sources, keys=data.get("traits", [])
    )
    return {
        pk: Person(pk, identifiers.get(via.get(pk, pk), {}), traits.get(via.get(pk, pk), {}))
        for pk in ids
    }


# --- formats ---------------------------------------------------------------------------------


def _csv_line(cells: Sequence[str]) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerow(list(cells))
    return buffer.getvalue().encode()


def _split_header(text: str) -> tuple[str, str]:
    header, _, rest = text.partition("\r\n")
    return header + "\r\n", rest


def _contact(destination: Destination, person: Person) -> Contact:
    return Contact.from_mapping(
        {
            **person.traits,
            "emails": person.identifiers.get(IdentifierType.EMAIL, []),
            "phones": person.identifiers.get(IdentifierType.PHONE, []),
            "email": None,
            "phone": None,
        }
    )


def _ad_platform_file(destination: Destination, contacts: list[Contact]) -> str:
    """The upload CSV of `contacts` (no minimum: the sync enforces it over the whole run)."""
    buffer = io.StringIO(newline="")
    config = destination.config or {}
    if destination.kind == DestinationKind.GOOGLE_CUSTOMER_MATCH:
        files.write_google_customer_match_csv(
            contacts,
            buffer,
            min_audience_size=0,
            default_region=config.get("default_region"),
            canonicalize_gmail=config.get("canonicalize_gmail", True),
        )
    else:
        files.write_meta_customer_list_csv(
            contacts, buffer, min_audience_size=0, default_region=config.get("default_region")
        )
    return buffer.getvalue()


def _plain_fields(destination: Destination, action: str) -> list[str]:
    data = destination.data or {}
    fields = ["profile_id", *data.get("identifiers", [])]
    if action == DeliveryAction.ADD:
        fields += [t for t in data.get("traits", []) if t not in fields]
    return fields


def _plain_row(destination: Destination, action: str, record: dict[str, Any]) -> bytes:
    buffer = io.StringIO(newline="")
    fields = _plain_fields(destination, action)
    if destination.kind == DestinationKind.JSONL:
        files.write_jsonl_export([record], buffer, fields=fields)
        return buffer.getvalue().encode()
    files.write_csv_export([record], buffer, fields=fields)
    return _split_header(buffer.getvalue())[1].encode()


def file_header(destination: Destination, action: str) -> bytes:
    """The first line of the destination's files ("" for JSON Lines)."""
    if destination.kind in (
        DestinationKind.GOOGLE_CUSTOMER_MATCH,
        DestinationKind.META_CUSTOM_AUDIENCES,
    ):
        return _ad_platform_file(destination, []).encode()
    if destination.kind == DestinationKind.CSV:
        buffer = io.StringIO(newline="")
        files.write_csv_export([], buffer, fields=_plain_fields(destination, action))
        return buffer.getvalue().encode()
    return b""


def outgoing(destination: Destination, action: str, person: Person) -> Outgoing | None:
    """The record of `person` for `action` (add or remove) in the destination's format, or
    None when an ad platform could match nothing of it (no usable match key: an email or a
    phone, or the name and address combinations each platform documents)."""
    kind = destination.kind
    if kind in (DestinationKind.GOOGLE_CUSTOMER_MATCH, DestinationKind.META_CUSTOM_AUDIENCES):
        text = _ad_platform_file(destination, [_contact(destination, person)])
        _header, row = _split_header(text)
        if not row:
            return None
        cells = next(csv.reader(io.StringIO(row)))
        return Outgoing(person.profile_id, cells, _csv_line(cells))
    if kind == DestinationKind.WEBHOOK:
        record: dict[str, Any] = {"profileId": str(person.profile_id)}
        for identifier in (destination.data or {}).get("identifiers", []):
            value = person.first(identifier)
            if value is not None:
                record[WEBHOOK_KEYS.get(identifier, identifier)] = value
        if action == DeliveryAction.ADD:
            record["traits"] = {
                key: person.traits[key]
                for key in (destination.data or {}).get("traits", [])
                if key in person.traits
            }
        return Outgoing(person.profile_id, record, webhooks.encode_body(record))
    plain: dict[str, Any] = {"profile_id": str(person.profile_id)}
    for name in _plain_fields(destination, action)[1:]:
        value = person.first(name) if name in IdentifierType.values else None
        if value is None:
            value = person.traits.get(name)
        plain[name] = value
    return Outgoing(person.profile_id, plain, _plain_row(destination, action, plain))


def outgoing_from_record(
    destination: Destination, action: str, profile_id: Any, record: Any
) -> Outgoing:
    """A kept record (a queued removal's, unsealed) as it is sent again."""
    if destination.kind in (
        DestinationKind.GOOGLE_CUSTOMER_MATCH,
        DestinationKind.META_CUSTOM_AUDIENCES,
    ):
        return Outgoing(profile_id, record, _csv_line([str(c) for c in record]))
    if destination.kind == DestinationKind.WEBHOOK:
        return Outgoing(profile_id, record, webhooks.encode_body(record))
    return Outgoing(profile_id, record, _plain_row(destination, action, record))


# --- transport -------------------------------------------------------------------------------


def webhook_policy() -> webhooks.RetryPolicy:
    return webhooks.RetryPolicy(
        max_attempts=max(1, settings.CDP_WEBHOOK_MAX_ATTEMPTS),
        base_delay=settings.CDP_WEBHOOK_RETRY_BASE_MS / 1000,
        max_delay=60.0,
        max_total_wait=max(0, settings.CDP_WEBHOOK_MAX_WAIT_SECONDS),
    )


def batch_size(destination: Destination) -> int:
    """Records per batch (one request, for a webhook): CDP_SYNC_BATCH_SIZE, and for a webhook
    no more than its `batch_size` setting (WEBHOOK_BATCH_SIZE when unset)."""
    size = max(1, min(settings.CDP_SYNC_BATCH_SIZE, profile_selectors.REVEAL_BATCH_MAX))
    if destination.kind == DestinationKind.WEBHOOK:
        configured = (destination.config or {}).get("batch_size") or WEBHOOK_BATCH_SIZE
        size = min(size, max(1, int(configured)))
    return size


def webhook_send(
    *,
    destination: Destination,
    action: str,
    records: Sequence[Outgoing],
    audience: Audience | None,
    sync_run_id: Any = None,
    reason: str = "",
    policy: webhooks.RetryPolicy | None = None,
) -> SendResult:
    """POST one signed batch (retried with backoff by activation.webhooks)."""
    payload: dict[str, Any] = {
        "type": action,
        "destination": str(destination.pk),
        "audience": (
            {"id": audience.pk, "key": audience.key, "name": audience.name} if audience else None
        ),
        "syncRun": str(sync_run_id) if sync_run_id else None,
        "records": [r.record for r in records],
    }
    if reason:
        payload["reason"] = reason
    secret = destination.secret
    if not secret:
        return SendResult(False, "no_secret", retryable=False)
    request = webhooks.build_request(
        url=str(destination.config["url"]),
        payload=payload,
        secrets=secret,
        delivery_id=str(uuid7()),
    )
    result = webhooks.send(
        request,
        policy=policy or webhook_policy(),
        timeout=float((destination.config or {}).get("timeout_seconds", 10)),
    )
    if result.delivered:
        return SendResult(True)
    error = result.error or "failed"
    if result.status_code:
        error = f"{error}:{result.status_code}"
    return SendResult(
        False,
        error,
        retryable=result.retryable,
        retry_after=result.retry_after,
        asked=result.asked,
    )


class FileSink:
    """One file of a destination, written as `<name>.partial` and moved into place when
    complete, so that a reader never picks up half a file (or a refused one)."""

    def __init__(
        self,
        *,
        destination: Destination,
        audience: Audience | None,
        action: str,
        at: datetime,
    ) -> None:
        self.destination = destination
        self.action = action
        directory = export_dir(destination.workspace)
        prefix = (destination.config or {}).get("prefix") or f"destination-{destination.pk.hex[:8]}"
        audience_key = audience.key if audience else "all"
        extension = FILE_EXTENSIONS.get(destination.kind, "csv")
        name = (
            f"{prefix}-{audience_key}-{at.strftime('%Y%m%dT%H%M%S')}-{action}-"
            f"{uuid7().hex[-8:]}.{extension}"
        )
        self.path = directory / name
        self.partial = directory / f".{name}.partial"
        self.rows = 0
        self._handle: Any = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._handle = os.fdopen(fd, "wb")
        self._handle.write(file_header(self.destination, self.action))

    def write(self, records: Iterable[Outgoing]) -> None:
        if self._handle is None:
            self._open()
        for record in records:
            self._handle.write(record.row)
            self.rows += 1

    def commit(self) -> str:
        """Close and move the file into place; returns its path relative to CDP_EXPORT_DIR."""
        if self._handle is None:
            self._open()
        self._handle.close()
        self._handle = None
        os.replace(self.partial, self.path)
        return str(self.path.relative_to(Path(settings.CDP_EXPORT_DIR)))

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.partial.unlink(missing_ok=True)


def file_send(
    *,
    destination: Destination,
    action: str,
    records: Sequence[Outgoing],
    audience: Audience | None,
    at: datetime,
) -> SendResult:
    """Write one complete file of `records` (a removal file, say)."""
    sink = FileSink(destination=destination, audience=audience, action=action, at=at)
    try:
        sink.write(records)
        return SendResult(True, artifact=sink.commit())
    except OSError as exc:
        sink.discard()
        return SendResult(False, f"file_error:{type(exc).__name__}", retryable=True)
