"""One import row -> one `InboundMessage` (identify for profiles, track for events), or the
reasons it cannot be one. The message is what the collection API would have built from the
same data, so ingestion resolves identities and seals personal data exactly as it does there.

Identifiers go where an SDK would put them: `user_id` and `anonymous_id` in the message's own
fields; on a profile row, an email or phone also becomes the `email` / `phone` trait (as an
identify call's traits do); every other identifier, and emails and phones of events, travel as
`context.externalIds` entries of their type, which ingestion treats as identifiers of that type
(profiles.ingest) and never stores in the event's context.

Each message's `messageId` is derived from the source and the row's mapped content with a
keyed hash (HMAC under a key derived from CDP_INDEX_KEY, see cdp.core.crypto.keyed_hash), so
importing the same row again gives the same id and is recognised, and the id reveals nothing
about the row (a plain hash of an email could be looked up in a dictionary of emails). With
`--message-id-column` (an order or transaction number) the id is derived from that column."""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson

from cdp.core.crypto import keyed_hash
from cdp.core.logging import redact
from cdp.core.spreadsheet import spreadsheet_safe
from collect.enums import ImportKind
from collect.imports.mapping import (
    IDENTIFIER,
    PROPERTY,
    TRAIT,
    TRAIT_IDENTIFIERS,
    ColumnMap,
    ImportMapping,
)
from collect.validation import max_event_bytes
from profiles.contracts import InboundMessage
from profiles.enums import EventType, IdentifierType

MESSAGE_ID_NAMESPACE = "import-message"
MESSAGE_ID_PREFIX = "imp-"
MASK = "[masked]"
LIBRARY = {"name": "cdp-import", "version": "1"}
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
# Integers a message can carry: orjson (the pipeline's JSON) refuses anything past 64 bits.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_EXPECTED = {
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "date": "a date (YYYY-MM-DD)",
    "datetime": "an ISO 8601 date-time",
}


@dataclass(frozen=True)
class RowError:
    column: str
    code: str
    message: str


class _Bad(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 (a date alone is midnight UTC; naive means UTC), else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # an offset that pushes year 1 or 9999 out of range
        return None


def convert(value: Any, value_type: str | None, column: str) -> Any:
    """A cell's value as its mapped type (raises _Bad naming the column, never the value)."""
    if isinstance(value, str):
        value = value.strip()
    if value_type is None:
        return value
    bad = _Bad("invalid_type", f"Column {column!r} must be {_EXPECTED[value_type]}.")
    if value_type == "string":
        if isinstance(value, dict | list):
            raise bad
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    if value_type == "integer":
        if isinstance(value, bool):
            raise bad
        integer = _integer(value)
        if integer is None:
            raise bad
        return integer
    if value_type == "number":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int) and _INT_MIN <= value <= _INT_MAX:
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        if isinstance(value, str) and value.isascii():
            whole = _integer(value)
            if whole is not None:
                return whole
            try:
                number = float(value)
            except ValueError:
                raise bad from None
            if math.isfinite(number) and any(ch.isdigit() for ch in value):
                return number
        raise bad
    if value_type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise bad
    if value_type == "date":
        if isinstance(value, str):
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                pass
            parsed = parse_datetime(value)
            if parsed is not None:
                return parsed.date().isoformat()
        raise bad
    # datetime
    parsed = parse_datetime(value)
    if parsed is None:
        raise bad
    return parsed.isoformat().replace("+00:00", "Z")


def _integer(value: Any) -> int | None:
    """`value` as a 64-bit integer (an int, a whole float, or digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        digits = value[1:] if value[:1] in "+-" else value
        # Past 19 digits it cannot fit; the length test also spares int() its digit limit.
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 19):
            return None
        value = int(value)
    if isinstance(value, int) and _INT_MIN <= value <= _INT_MAX:
        return value
    return None


def _cell(values: dict[str, Any], column: str) -> Any:
    """A column's value; a JSON Lines row may also name a nested key as a.b.c."""
    if column in values:
        return values[column]
    if "." in column:
        node: Any = values
        for part in column.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node
    return None


class RowBuilder:
    """Builds the messages of one import (mapping, workspace rules and classifications are
    read once)."""

    def __init__(
        self,
        *,
        mapping: ImportMapping,
        workspace_id: int,
        source_id: int,
        job_id: Any,
        received_at: datetime,
        checker: Any,
        attribute_traits: frozenset[str],
        sealed_properties: Container[str],
    ) -> None:
        self.mapping = mapping
        self.workspace_id = workspace_id
        self.scope = f"source:{source_id}"
        self.job_id = str(job_id)
        self.received_at = received_at
        self.check = checker
        self.max_bytes = max_event_bytes()
        self.is_profiles = mapping.kind == ImportKind.PROFILES
        self.identifiers = mapping.identifier_columns()
        self.values_mapped = [c for c in mapping.columns if c.target != IDENTIFIER]
        self.plain_columns = self._plain_columns(attribute_traits, sealed_properties)

    def _plain_columns(
        self, attribute_traits: frozenset[str], sealed_properties: Container[str]
    ) -> frozenset[str]:
        """Columns whose values the error file may show: the event name and timestamp,
        traits classified as plain attributes and properties ingestion would not seal.
        Identifiers, personal-data traits and columns the mapping does not use are masked."""
        plain = {c for c in (self.mapping.event_column, self.mapping.timestamp_column) if c}
        for column in self.mapping.columns:
            attribute = column.target == TRAIT and column.name in attribute_traits
            unsealed = column.target == PROPERTY and column.name not in sealed_properties
            if attribute or unsealed:
                plain.add(column.column)
        return frozenset(plain - {c.column for c in self.identifiers})

    # -- building ---------------------------------------------------------------------------

    def build(self, values: dict[str, Any], number: int) -> InboundMessage | list[RowError]:
        errors: list[RowError] = []
        user_id = anonymous_id = None
        traits: dict[str, Any] = {}
        external: list[dict[str, str]] = []
        for column in self.identifiers:
            found = self._identifier(values, column, errors)
            if found is None:
                continue
            kind, value = found
            if kind == IdentifierType.USER_ID:
                user_id = value
            elif kind == IdentifierType.ANONYMOUS_ID:
                anonymous_id = value
            elif self.is_profiles and kind in TRAIT_IDENTIFIERS:
                traits[kind] = value
            else:
                external.append({"id": value, "type": kind})
        properties: dict[str, Any] = {}
        for column in self.values_mapped:
            raw = _cell(values, column.column)
            if _empty(raw):
                continue
            try:
                value = convert(raw, column.type, column.column)
            except _Bad as exc:
                errors.append(RowError(column.column, exc.code, exc.message))
                continue
            if column.target == TRAIT and column.name in TRAIT_IDENTIFIERS:
                checked = self._check_identifier(column.name, value, column.column, errors)
                if checked is None:
                    continue
                value = checked
            (traits if column.target == TRAIT else properties)[column.name] = value
        name = self._event_name(values, errors)
        timestamp = self._timestamp(values, errors)
        if (
            not errors
            and user_id is None
            and anonymous_id is None
            and not external
            and not (traits.keys() & set(TRAIT_IDENTIFIERS))
        ):
            errors.append(
                RowError(
                    self.mapping.id_column or "",
                    "missing_id",
                    "The row has no identifier: every mapped identifier column is empty.",
                )
            )
        if errors:
            return errors
        content: dict[str, Any] = {
            "kind": self.mapping.kind,
            "user_id": user_id,
            "anonymous_id": anonymous_id,
            "external": sorted((e["type"], e["id"]) for e in external),
            "traits": traits,
            "name": name,
            "properties": properties,
            "timestamp": timestamp.isoformat() if timestamp else None,
        }
        canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=str)
        if len(canonical) > self.max_bytes:
            return [
                RowError(
                    "", "row_too_large", f"The row's mapped values exceed {self.max_bytes} bytes."
                )
            ]
        message_id = self._message_id(values, canonical, errors)
        if message_id is None:
            return errors
        context: dict[str, Any] = {"library": LIBRARY, "import": {"job": self.job_id}}
        if external:
            context["externalIds"] = external
        return InboundMessage(
            type=EventType.IDENTIFY if self.is_profiles else EventType.TRACK,
            message_id=message_id,
            received_at=self.received_at,
            timestamp=timestamp or self.received_at,
            original_timestamp=timestamp,
            user_id=user_id,
            anonymous_id=anonymous_id,
            name=name,
            properties=properties,
            traits=traits,
            context=context,
            index=number,
        )

    def _identifier(
        self, values: dict[str, Any], column: ColumnMap, errors: list[RowError]
    ) -> tuple[str, str] | None:
        raw = _cell(values, column.column)
        if _empty(raw):
            if column.column == self.mapping.id_column:
                errors.append(
                    RowError(
                        column.column,
                        "missing_id",
                        f"The id column {column.column!r} is empty.",
                    )
                )
            return None
        if isinstance(raw, str):
            raw = raw.strip()
        if isinstance(raw, bool | dict | list) or (isinstance(raw, float) and not raw.is_integer()):
            errors.append(
                RowError(
                    column.column,
                    "invalid_type",
                    f"Column {column.column!r} must be text or a whole number (an identifier).",
                )
            )
            return None
        if isinstance(raw, float):
            raw = int(raw)
        value = self._check_identifier(column.name, raw, column.column, errors)
        return None if value is None else (column.name, value)

    def _check_identifier(
        self, kind: str, raw: Any, column: str, errors: list[RowError]
    ) -> str | None:
        normalized = self.check(kind, raw, self.mapping.phone_region)
        if normalized is not None:
            if kind == IdentifierType.EMAIL and isinstance(raw, str):
                return raw  # kept as written (the trait); ingestion indexes it normalized
            return str(normalized)
        if kind == IdentifierType.EMAIL:
            errors.append(
                RowError(column, "invalid_email", f"Column {column!r} is not an email address.")
            )
        elif kind == IdentifierType.PHONE:
            hint = "" if self.mapping.phone_region else " (+ and country code, or --phone-region)"
            errors.append(
                RowError(column, "invalid_phone", f"Column {column!r} is not a phone number{hint}.")
            )
        else:
            errors.append(
                RowError(
                    column,
                    "invalid_identifier",
                    f"Column {column!r} is not a usable {kind}: a placeholder the workspace's "
                    "identity rules block (such as n/a, 0 or unknown), or too long.",
                )
            )
        return None

    def _event_name(self, values: dict[str, Any], errors: list[RowError]) -> str:
        if self.is_profiles:
            return ""
        if self.mapping.event_name:
            return self.mapping.event_name
        column = self.mapping.event_column or ""
        raw = _cell(values, column)
        if _empty(raw):
            errors.append(
                RowError(column, "missing_event", f"The event column {column!r} is empty.")
            )
            return ""
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            errors.append(RowError(column, "invalid_type", f"Column {column!r} must be text."))
            return ""
        return str(raw).strip()[:200]

    def _timestamp(self, values: dict[str, Any], errors: list[RowError]) -> datetime | None:
        column = self.mapping.timestamp_column
        if not column:
            return None
        raw = _cell(values, column)
        if _empty(raw):
            if not self.is_profiles:
                errors.append(
                    RowError(
                        column, "missing_timestamp", f"The timestamp column {column!r} is empty."
                    )
                )
            return None
        parsed = parse_datetime(raw)
        if parsed is None:
            errors.append(
                RowError(
                    column,
                    "invalid_timestamp",
                    f"Column {column!r} must be an ISO 8601 date or date-time "
                    "(2024-05-01T13:45:00Z).",
                )
            )
        return parsed

    def _message_id(
        self, values: dict[str, Any], canonical: bytes, errors: list[RowError]
    ) -> str | None:
        column = self.mapping.message_id_column
        if column:
            raw = _cell(values, column)
            if _empty(raw) or isinstance(raw, dict | list | bool):
                errors.append(
                    RowError(
                        column,
                        "missing_message_id",
                        f"The message-id column {column!r} is empty or not a single value.",
                    )
                )
                return None
            basis = f"{self.mapping.kind}|id|{str(raw).strip()}"
        else:
            basis = f"{self.mapping.kind}|row|{canonical.decode()}"
        digest = keyed_hash(MESSAGE_ID_NAMESPACE, self.workspace_id, self.scope, basis)
        return MESSAGE_ID_PREFIX + digest[:20].hex()

    # -- the error file ---------------------------------------------------------------------

    def masked(self, values: dict[str, Any] | None) -> dict[str, str]:
        """The row as the error file shows it: values of plain columns (emails and phone
        numbers in them redacted all the same), every other non-empty value as [masked]."""
        shown: dict[str, str] = {}
        for column, value in (values or {}).items():
            if _empty(value):
                shown[column] = ""
            elif column in self.plain_columns:
                text = value if isinstance(value, str) else orjson.dumps(value).decode()
                shown[column] = spreadsheet_safe(redact(text.strip()))
            else:
                shown[column] = MASK
        return shown
