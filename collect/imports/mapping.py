"""What an import maps: which column becomes which trait, identifier or event property, with
an optional type, plus the id, event-name, timestamp and message-id columns.

    --map COLUMN=trait:NAME[:TYPE]       a trait of the profile (profiles imports)
    --map COLUMN=identifier:TYPE         an identifier (email, phone, user_id, anonymous_id,
                                         device_id, advertising_id, or a type of your own such
                                         as crm_id or pos_customer_id)
    --map COLUMN=property:NAME[:TYPE]    an event property (events imports)

TYPE is one of string, integer, number, boolean, date, datetime; without one a CSV value stays
a string and a JSON Lines value keeps its JSON type. Mapping errors name columns and options,
never values, and are raised before a single row is read."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import phonenumbers

from cdp.core.exceptions import InvalidInput
from collect.enums import ImportKind
from profiles.enums import IdentifierType

TRAIT = "trait"
IDENTIFIER = "identifier"
PROPERTY = "property"
VALUE_TYPES = ("string", "integer", "number", "boolean", "date", "datetime")
MAX_NAME_LENGTH = 128
# Identifiers that travel in the message's own fields rather than in context.externalIds.
MESSAGE_FIELDS = (IdentifierType.USER_ID.value, IdentifierType.ANONYMOUS_ID.value)
# Identifiers a profile row also keeps as traits, as an identify call's traits would.
TRAIT_IDENTIFIERS = (IdentifierType.EMAIL.value, IdentifierType.PHONE.value)
_TYPE_RE = re.compile(r"[^a-z0-9_]+")


class ImportMappingError(InvalidInput):
    code = "invalid_mapping"
    default_message = "The column mapping is not valid."


@dataclass(frozen=True)
class ColumnMap:
    column: str
    target: str  # trait | identifier | property
    name: str  # trait or property name; for an identifier, its (normalized) type
    type: str | None = None

    def spec(self) -> str:
        tail = f":{self.type}" if self.type else ""
        return f"{self.column}={self.target}:{self.name}{tail}"


@dataclass(frozen=True)
class ImportMapping:
    kind: str
    columns: tuple[ColumnMap, ...] = ()
    id_column: str | None = None
    id_type: str | None = None
    event_column: str | None = None
    event_name: str | None = None
    timestamp_column: str | None = None
    message_id_column: str | None = None
    phone_region: str | None = None
    delimiter: str = ","

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["columns"] = [asdict(c) for c in self.columns]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportMapping:
        values = dict(data)
        values["columns"] = tuple(ColumnMap(**c) for c in values.get("columns", ()))
        return cls(**values)

    def identifier_columns(self) -> list[ColumnMap]:
        """Every column that carries an identifier, the id column first."""
        found = []
        if self.id_column and self.id_type:
            found.append(ColumnMap(self.id_column, IDENTIFIER, self.id_type))
        found += [c for c in self.columns if c.target == IDENTIFIER]
        return found

    def referenced_columns(self) -> list[str]:
        names = [c.column for c in self.identifier_columns()]
        names += [c.column for c in self.columns if c.target != IDENTIFIER]
        names += [
            name
            for name in (self.event_column, self.timestamp_column, self.message_id_column)
            if name
        ]
        return list(dict.fromkeys(names))

    def check_header(self, header: list[str]) -> None:
        """Every column the mapping names must be in the file's header, once. The error names
        the mapping's columns and counts the header's, and never quotes a header cell: when
        the file has no header row, its first row is a person's email, phone or name, and the
        message is kept on the job and in the audit trail."""
        referenced = self.referenced_columns()
        present = set(header)
        missing = [name for name in referenced if name not in present]
        if missing:
            width = f"{len(header)} column{'' if len(header) == 1 else 's'}"
            if len(missing) == len(referenced):
                hint = (
                    "None of the mapped columns is there: does the file start with a header row "
                    "naming its columns? A CSV import needs one."
                )
            else:
                hint = "Check their spelling and case against the file's first row."
            if len(header) == 1 and len(referenced) > 1:
                hint += f" Is the delimiter right (--delimiter, now {self.delimiter!r})?"
            raise ImportMappingError(
                f"Column(s) {', '.join(repr(m) for m in missing)} are not in the file's "
                f"header ({width}). {hint}",
                code="unknown_column",
            )
        repeated = sorted({name for name in self.referenced_columns() if header.count(name) > 1})
        if repeated:
            raise ImportMappingError(
                f"Column(s) {', '.join(repr(r) for r in repeated)} appear more than once in "
                "the header; rename them so that the mapping is unambiguous.",
                code="duplicate_column",
            )

    def summary(self) -> list[str]:
        """The mapping as the command-line flags that would give it (for pages and logs)."""
        lines = [f"--map {c.spec()}" for c in self.columns]
        for flag, value in (
            ("--id-column", self.id_column),
            ("--id-type", self.id_type),
            ("--event-column", self.event_column),
            ("--event-name", self.event_name),
            ("--timestamp-column", self.timestamp_column),
            ("--message-id-column", self.message_id_column),
            ("--phone-region", self.phone_region),
        ):
            if value:
                lines.append(f"{flag} {value}")
        if self.delimiter != ",":
            lines.append(f"--delimiter {self.delimiter!r}")
        return lines


def _identifier_type(raw: str, where: str) -> str:
    # As ingestion names context.externalIds types (profiles.identifiers).
    kind = _TYPE_RE.sub("_", raw.strip().lower()).strip("_")[:64]
    if not kind:
        raise ImportMappingError(
            f"{where}: an identifier type is a name such as email, phone, user_id or crm_id.",
            code="invalid_identifier_type",
        )
    return kind


def _name(raw: str, where: str, what: str) -> str:
    name = raw.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ImportMappingError(
            f"{where}: a {what} name of 1 to {MAX_NAME_LENGTH} characters is required.",
            code="invalid_mapping",
        )
    return name


def _value_type(raw: str | None, where: str) -> str | None:
    if raw is None or not raw.strip():
        return None
    value_type = raw.strip().lower()
    if value_type not in VALUE_TYPES:
        raise ImportMappingError(
            f"{where}: unknown type {value_type!r}; choose from {', '.join(VALUE_TYPES)}.",
            code="invalid_type_name",
        )
    return value_type


def parse_map(spec: str, *, kind: str) -> ColumnMap:
    """One `COLUMN=TARGET` (see the module docstring)."""
    column, sep, target = spec.rpartition("=")
    where = f"--map {spec!r}"
    if not sep or not column.strip() or not target.strip():
        raise ImportMappingError(
            f"{where}: write COLUMN=trait:NAME, COLUMN=identifier:TYPE or "
            "COLUMN=property:NAME (with an optional :TYPE).",
        )
    column = column.strip()
    parts = target.strip().split(":")
    what = parts[0].strip().lower()
    if what == IDENTIFIER:
        if len(parts) != 2:
            raise ImportMappingError(
                f"{where}: write COLUMN=identifier:TYPE, e.g. email=identifier:email.",
            )
        return ColumnMap(column, IDENTIFIER, _identifier_type(parts[1], where))
    if what in (TRAIT, PROPERTY):
        if len(parts) not in (2, 3):
            raise ImportMappingError(f"{where}: write COLUMN={what}:NAME[:TYPE].")
        if what == PROPERTY and kind == ImportKind.PROFILES:
            raise ImportMappingError(
                f"{where}: a profiles import maps traits; use COLUMN=trait:NAME.",
            )
        if what == TRAIT and kind == ImportKind.EVENTS:
            raise ImportMappingError(
                f"{where}: an events import maps event properties; use COLUMN=property:NAME "
                "(import profile traits with import_profiles).",
            )
        return ColumnMap(
            column,
            what,
            _name(parts[1], where, what),
            _value_type(parts[2] if len(parts) == 3 else None, where),
        )
    raise ImportMappingError(
        f"{where}: unknown target {what!r}; a column maps to trait:, identifier: or property:.",
    )


def mapping_parse(
    *,
    kind: str,
    maps: list[str],
    id_column: str | None = None,
    id_type: str | None = None,
    event_column: str | None = None,
    event_name: str | None = None,
    timestamp_column: str | None = None,
    message_id_column: str | None = None,
    phone_region: str | None = None,
    delimiter: str = ",",
) -> ImportMapping:
    """Check and parse an import's mapping; raises ImportMappingError with what to change."""
    if kind not in ImportKind.values:
        raise ImportMappingError(
            f"Unknown import kind; choose from {', '.join(ImportKind.values)}.",
            code="invalid_kind",
        )
    columns = [parse_map(spec, kind=kind) for spec in maps if spec.strip()]
    id_column = (id_column or "").strip() or None
    event_column = (event_column or "").strip() or None
    event_name = (event_name or "").strip()[:200] or None
    timestamp_column = (timestamp_column or "").strip() or None
    message_id_column = (message_id_column or "").strip() or None
    if bool(id_column) != bool(id_type and id_type.strip()):
        raise ImportMappingError(
            "--id-column and --id-type go together: the column holding each row's id, and "
            "the type of that id (e.g. --id-column customer_no --id-type crm_id).",
            code="invalid_id_column",
        )
    kind_of_id = _identifier_type(id_type, "--id-type") if id_column and id_type else None

    seen: dict[str, str] = {}  # column -> the option that uses it
    for name, flag in [(id_column, "--id-column"), *((c.column, "--map") for c in columns)]:
        if name is None:
            continue
        if name in seen:
            raise ImportMappingError(
                f"Column {name!r} is mapped more than once; map each column to one target.",
                code="duplicate_mapping",
            )
        seen[name] = flag
    slots: dict[str, str] = {}
    for column in columns:
        if column.target == PROPERTY:
            slot = f"property {column.name!r}"
        elif column.target == TRAIT:
            slot = f"trait {column.name!r}"
        elif kind == ImportKind.PROFILES and column.name in TRAIT_IDENTIFIERS:
            slot = f"trait {column.name!r}"  # identify keeps emails and phones as traits
        elif column.name in MESSAGE_FIELDS:
            slot = f"identifier {column.name!r}"
        else:
            continue  # several columns may carry identifiers of one type (externalIds)
        if slot in slots:
            raise ImportMappingError(
                f"Columns {slots[slot]!r} and {column.column!r} both map to the {slot}.",
                code="duplicate_target",
            )
        slots[slot] = column.column
    if kind_of_id in MESSAGE_FIELDS and f"identifier {kind_of_id!r}" in slots:
        raise ImportMappingError(
            f"The id column and column {slots[f'identifier {kind_of_id!r}']!r} both give "
            f"the {kind_of_id}.",
            code="duplicate_target",
        )

    if kind == ImportKind.EVENTS:
        if bool(event_column) == bool(event_name):
            raise ImportMappingError(
                "An events import needs the event name: --event-column COLUMN (a name per "
                "row) or --event-name NAME (one name for every row), not both.",
                code="missing_event",
            )
        if not timestamp_column:
            raise ImportMappingError(
                "An events import needs --timestamp-column COLUMN (ISO 8601: when each "
                "event happened).",
                code="missing_timestamp",
            )
    elif event_column or event_name:
        raise ImportMappingError(
            "--event-column and --event-name are for events imports.", code="invalid_option"
        )
    for flag, name in (
        ("--event-column", event_column),
        ("--timestamp-column", timestamp_column),
        ("--message-id-column", message_id_column),
    ):
        if name and name in seen:
            raise ImportMappingError(
                f"{flag} {name!r} is also used by {seen[name]}; a column has one role.",
                code="duplicate_mapping",
            )
        if name:
            seen[name] = flag
    has_identifier = bool(id_column) or any(
        c.target == IDENTIFIER or (c.target == TRAIT and c.name in TRAIT_IDENTIFIERS)
        for c in columns
    )
    if not has_identifier:
        raise ImportMappingError(
            "Map at least one identifier: --id-column COLUMN --id-type TYPE, or "
            "--map COLUMN=identifier:TYPE (e.g. email=identifier:email).",
            code="missing_identifier",
        )
    region = (phone_region or "").strip().upper() or None
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ImportMappingError(
            "--phone-region is a two-letter region code such as GB, US or DE.",
            code="invalid_phone_region",
        )
    if len(delimiter) != 1 or delimiter in ('"', "\n", "\r"):
        raise ImportMappingError(
            "--delimiter is one character, e.g. ',' or ';' or a tab.", code="invalid_delimiter"
        )
    return ImportMapping(
        kind=kind,
        columns=tuple(columns),
        id_column=id_column,
        id_type=kind_of_id,
        event_column=event_column,
        event_name=event_name,
        timestamp_column=timestamp_column,
        message_id_column=message_id_column,
        phone_region=region,
        delimiter=delimiter,
    )
