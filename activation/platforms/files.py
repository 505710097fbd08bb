"""Upload files and request bodies for the ad platforms, and plain CSV / JSONL exports.

Every writer streams: it reads its rows from an iterator and writes each one to a file object
as it goes, so memory stays constant whatever the audience size. The ad-platform writers hold
back at most the first `min_audience_size` rows, so that nothing reaches the file before the
audience is known to be large enough (`AudienceTooSmall` otherwise, and the file is empty).
Removals (a consent withdrawal, an erasure) are never held to the minimum: one person must be
removable on their own.

Formats (sources in docs/destinations.md):

- Google Customer Match CSV: header names in English, `Email`, `Phone`, `First Name`,
  `Last Name`, `Country`, `Zip` (`Email`, `Phone` may repeat); email, phone and names are
  SHA-256 of the normalized value, `Country` and `Zip` stay in clear. The same file removes
  people when uploaded as a removal; `google_user_data_operations` gives the Google Ads API
  `OfflineUserDataJobOperation` bodies (`create` / `remove`).
- Meta Custom Audiences: the Marketing API body for `POST` (add) and `DELETE` (remove)
  `/{audience_id}/users`, `{"payload": {"schema": [...], "data": [[...], ...]}}`, at most
  10,000 rows per request with an upload `session`; and Meta's customer-list CSV with its
  documented lowercase headers (`email`, `phone`, `fn`, `ln`, ...), hashed.
- Plain CSV and JSONL of chosen attributes, for file destinations.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import enum
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import orjson

from activation.platforms import normalize as norm
from activation.platforms.contact import Contact
from activation.platforms.errors import AudienceTooSmall, ExportFieldsInvalid
from cdp.core.spreadsheet import spreadsheet_safe

__all__ = [
    "DEFAULT_META_SCHEMA",
    "DEFAULT_MIN_AUDIENCE_SIZE",
    "GOOGLE_CSV_COLUMNS",
    "META_CSV_COLUMNS",
    "META_MAX_ROWS_PER_REQUEST",
    "META_SCHEMA_KEYS",
    "ExportStats",
    "MetaUsersRequest",
    "check_min_audience_size",
    "google_user_data_operations",
    "meta_users_requests",
    "write_csv_export",
    "write_google_customer_match_csv",
    "write_google_customer_match_removal_csv",
    "write_jsonl_export",
    "write_meta_customer_list_csv",
    "write_meta_payload_json",
]

DEFAULT_MIN_AUDIENCE_SIZE = 100
META_MAX_ROWS_PER_REQUEST = 10_000

GOOGLE_CSV_COLUMNS = ("Email", "Phone", "First Name", "Last Name", "Country", "Zip")
META_SCHEMA_KEYS = (
    "EMAIL", "PHONE", "FN", "LN", "FI", "CT", "ST", "ZIP", "COUNTRY",
    "DOBY", "DOBM", "DOBD", "GEN", "MADID", "EXTERN_ID",
)  # fmt: skip
# Meta sends MADID and EXTERN_ID in clear; they are left out unless asked for.
META_UNHASHED_KEYS = frozenset({"MADID", "EXTERN_ID"})
DEFAULT_META_SCHEMA = (
    "EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY", "DOBY", "DOBM", "DOBD", "GEN",
)  # fmt: skip
# Meta's customer-list file: "email", "phone" (each up to three columns), then the others.
META_CSV_COLUMNS = (
    "email",
    "phone",
    "fn",
    "ln",
    "ct",
    "st",
    "zip",
    "country",
    "dob",
    "doby",
    "gen",
)


@dataclass
class ExportStats:
    """What a writer did: rows written, contacts skipped for want of any usable match key,
    and per field how many values did not normalize and were left out."""

    rows: int = 0
    skipped: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


def check_min_audience_size(count: int, minimum: int = DEFAULT_MIN_AUDIENCE_SIZE) -> None:
    """Raise `AudienceTooSmall` when `count` people are fewer than `minimum`."""
    if minimum < 0:
        raise ValueError("minimum must not be negative")
    if count < minimum:
        raise AudienceTooSmall(count=count, minimum=minimum)


class _MinimumGate:
    """Writes nothing (not even the header) until `minimum` rows have arrived."""

    def __init__(
        self,
        minimum: int,
        start: Callable[[], None],
        emit: Callable[[list[str]], None],
    ) -> None:
        if minimum < 0:
            raise ValueError("min_audience_size must not be negative")
        self.minimum = minimum
        self._start = start
        self._emit = emit
        self._held: list[list[str]] | None = []
        self.count = 0
        if minimum == 0:
            self._open()

    def _open(self) -> None:
        held, self._held = self._held or [], None
        self._start()
        for row in held:
            self._emit(row)

    def add(self, row: list[str]) -> None:
        self.count += 1
        if self._held is None:
            self._emit(row)
            return
        self._held.append(row)
        if len(self._held) >= self.minimum:
            self._open()

    def close(self) -> None:
        if self._held is not None:
            check_min_audience_size(self.count, self.minimum)
            self._open()


def _region(contact: Contact, default_region: str | None) -> str | None:
    return norm.country_code(contact.country) or default_region


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _normalized(
    raws: Iterable[object],
    normalizer: Callable[[object], str | None],
    name: str,
    stats: ExportStats,
) -> list[str]:
    out: list[str] = []
    for raw in raws:
        value = normalizer(raw)
        if value is None:
            if norm._text(raw) is not None:
                stats.dropped[name] += 1
        else:
            out.append(value)
    return _dedupe(out)


def _one(
    raw: object, normalizer: Callable[[object], str | None], name: str, stats: ExportStats
) -> str | None:
    values = _normalized([raw], normalizer, name, stats)
    return values[0] if values else None


# --- Google Customer Match ------------------------------------------------------------------


@dataclass(frozen=True)
class _GoogleKeys:
    emails: list[str]  # hashed
    phones: list[str]  # hashed
    # (hashed first name, hashed last name, country, postal code): all four or nothing, since
    # Google matches a mailing address only on the four together.
    address: tuple[str, str, str, str] | None

    def __bool__(self) -> bool:
        return bool(self.emails or self.phones or self.address)


def _google_keys(
    contact: Contact, *, default_region: str | None, canonicalize_gmail: bool, stats: ExportStats
) -> _GoogleKeys:
    region = _region(contact, default_region)
    emails = _normalized(
        contact.emails,
        lambda v: norm.google_email(v, canonicalize_gmail=canonicalize_gmail),
        "email",
        stats,
    )
    phones = _normalized(
        contact.phones, lambda v: norm.google_phone(v, default_region=region), "phone", stats
    )
    first = _one(contact.first_name, norm.google_name, "first_name", stats)
    last = _one(contact.last_name, norm.google_name, "last_name", stats)
    country = _one(contact.country, norm.google_country, "country", stats)
    postal = _one(
        contact.postal_code,
        lambda v: norm.google_postal_code(v, country=country),
        "postal_code",
        stats,
    )
    address = None
    if first and last and country and postal:
        address = (norm.digest(first), norm.digest(last), country, postal)
    elif first or last or postal:
        stats.dropped["address_incomplete"] += 1
    return _GoogleKeys(
        emails=[norm.digest(v) for v in emails],
        phones=[norm.digest(v) for v in phones],
        address=address,
    )


def _fill(values: list[str], width: int) -> list[str]:
    return (values + [""] * width)[:width]


def write_google_customer_match_csv(
    contacts: Iterable[Contact],
    out: TextIO,
    *,
    min_audience_size: int = DEFAULT_MIN_AUDIENCE_SIZE,
    default_region: str | None = None,
    email_columns: int = 1,
    phone_columns: int = 1,
    canonicalize_gmail: bool = True,
) -> ExportStats:
    """Google Customer Match CSV (UTF-8, English headers), hashed; `out` is a text file
    opened with `newline=""`. Extra emails or phones beyond the column counts are left out."""
    if email_columns < 1 or phone_columns < 1:
        raise ValueError("email_columns and phone_columns must be at least 1")
    stats = ExportStats()
    writer = csv.writer(out)
    header = ["Email"] * email_columns + ["Phone"] * phone_columns + list(GOOGLE_CSV_COLUMNS[2:])
    gate = _MinimumGate(min_audience_size, lambda: writer.writerow(header), writer.writerow)
    for contact in contacts:
        keys = _google_keys(
            contact,
            default_region=default_region,
            canonicalize_gmail=canonicalize_gmail,
            stats=stats,
        )
        if not keys:
            stats.skipped += 1
            continue
        address = ["", "", "", ""]
        if keys.address:
            first, last, country, postal = keys.address
            # Zip travels in clear and stewards open this file: no formula may start a cell.
            address = [first, last, country, spreadsheet_safe(postal, keep_numbers=True)]
        gate.add(_fill(keys.emails, email_columns) + _fill(keys.phones, phone_columns) + address)
    gate.close()
    stats.rows = gate.count
    return stats


def write_google_customer_match_removal_csv(
    contacts: Iterable[Contact],
    out: TextIO,
    *,
    default_region: str | None = None,
    email_columns: int = 1,
    phone_columns: int = 1,
    canonicalize_gmail: bool = True,
) -> ExportStats:
    """The same CSV, for Google's "remove customers from the list" upload: no minimum size."""
    return write_google_customer_match_csv(
        contacts,
        out,
        min_audience_size=0,
        default_region=default_region,
        email_columns=email_columns,
        phone_columns=phone_columns,
        canonicalize_gmail=canonicalize_gmail,
    )


def google_user_data_operations(
    contacts: Iterable[Contact],
    *,
    remove: bool = False,
    min_audience_size: int = DEFAULT_MIN_AUDIENCE_SIZE,
    default_region: str | None = None,
    canonicalize_gmail: bool = True,
    stats: ExportStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Google Ads API `OfflineUserDataJobOperation` bodies (REST JSON), one per contact:
    `{"create" | "remove": {"userIdentifiers": [{"hashedEmail": …}, {"hashedPhoneNumber": …},
    {"addressInfo": {"hashedFirstName", "hashedLastName", "countryCode", "postalCode"}}]}}`.
    Each `UserIdentifier` carries exactly one identifier, as the API requires. Additions are
    held back until `min_audience_size` contacts are known; removals are not."""
    stats = stats if stats is not None else ExportStats()
    verb = "remove" if remove else "create"
    held: list[dict[str, Any]] | None = None if remove or min_audience_size == 0 else []
    if min_audience_size < 0:
        raise ValueError("min_audience_size must not be negative")
    for contact in contacts:
        keys = _google_keys(
            contact,
            default_region=default_region,
            canonicalize_gmail=canonicalize_gmail,
            stats=stats,
        )
        if not keys:
            stats.skipped += 1
            continue
        identifiers: list[dict[str, Any]] = [{"hashedEmail": value} for value in keys.emails]
        identifiers += [{"hashedPhoneNumber": value} for value in keys.phones]
        if keys.address:
            first, last, country, postal = keys.address
            identifiers.append(
                {
                    "addressInfo": {
                        "hashedFirstName": first,
                        "hashedLastName": last,
                        "countryCode": country,
                        "postalCode": postal,
                    }
                }
            )
        operation = {verb: {"userIdentifiers": identifiers}}
        stats.rows += 1
        if held is None:
            yield operation
            continue
        held.append(operation)
        if len(held) >= min_audience_size:
            yield from held
            held = None
    if held is not None:
        check_min_audience_size(stats.rows, min_audience_size)
        yield from held


# --- Meta Custom Audiences ------------------------------------------------------------------


def _meta_values(
    contact: Contact, *, default_region: str | None, stats: ExportStats
) -> dict[str, str]:
    """The normalized, not yet hashed, value of every Meta key the contact has. The US rules
    for ZIP and ST follow the contact's country, or else `default_region`; COUNTRY itself
    comes from the contact only."""
    region = _region(contact, default_region)
    emails = _normalized(contact.emails, norm.meta_email, "email", stats)
    phones = _normalized(
        contact.phones, lambda v: norm.meta_phone(v, default_region=region), "phone", stats
    )
    values: dict[str, str | None] = {
        "EMAIL": emails[0] if emails else None,
        "PHONE": phones[0] if phones else None,
        "FN": _one(contact.first_name, norm.meta_name, "first_name", stats),
        "LN": _one(contact.last_name, norm.meta_name, "last_name", stats),
        "CT": _one(contact.city, norm.meta_city, "city", stats),
        "ST": _one(contact.state, lambda v: norm.meta_state(v, country=region), "state", stats),
        "ZIP": _one(
            contact.postal_code, lambda v: norm.meta_zip(v, country=region), "postal_code", stats
        ),
        "COUNTRY": _one(contact.country, norm.meta_country, "country", stats),
        "GEN": _one(contact.gender, norm.meta_gender, "gender", stats),
        "MADID": _one(contact.mobile_advertiser_id, norm.meta_mobile_advertiser_id, "madid", stats),
        "EXTERN_ID": norm.meta_external_id(contact.external_id),
    }
    first = values["FN"]
    # The initial of a name that came already hashed is unknown.
    values["FI"] = first[0] if first and not norm.is_sha256_hex(first) else None
    birth = norm.meta_date_of_birth(contact.date_of_birth)
    if birth is None and norm._text(contact.date_of_birth) is not None:
        stats.dropped["date_of_birth"] += 1
    if birth is not None:
        values.update(DOBY=birth.year, DOBM=birth.month, DOBD=birth.day, DOB=birth.yyyymmdd)
    result = {key: value for key, value in values.items() if value}
    # Every email and phone, for the CSV writer's repeated columns (the API rows take the first).
    for index, email in enumerate(emails):
        result[f"_EMAIL{index}"] = email
    for index, phone in enumerate(phones):
        result[f"_PHONE{index}"] = phone
    return result


# Keys Meta matches a person on by themselves; the others only help a match along.
_META_MATCH_KEYS = ("EMAIL", "PHONE", "MADID", "EXTERN_ID")


def _meta_matchable(values: Mapping[str, str], keys: Collection[str]) -> bool:
    """Whether the contact has, among `keys`, something Meta can match on: an email, a phone,
    a MADID or an EXTERN_ID, or else a first and last name with a ZIP or with a city and
    state. Country, gender, a birth date or a name alone match nobody: sending them would
    disclose personal data for nothing, as a partial address would to Google."""

    def has(key: str) -> bool:
        return key in keys and bool(values.get(key))

    if any(has(key) for key in _META_MATCH_KEYS):
        return True
    return has("FN") and has("LN") and (has("ZIP") or (has("CT") and has("ST")))


def _validate_meta_schema(schema: Sequence[str]) -> list[str]:
    keys = list(schema)
    unknown = [key for key in keys if key not in META_SCHEMA_KEYS]
    if not keys or unknown or len(set(keys)) != len(keys):
        raise ExportFieldsInvalid(
            "A Meta schema is a non-empty list of distinct keys among "
            f"{', '.join(META_SCHEMA_KEYS)}.",
            extra={"unknown": unknown},
        )
    return keys


def _meta_rows(
    contacts: Iterable[Contact],
    schema: list[str],
    *,
    default_region: str | None,
    stats: ExportStats,
) -> Iterator[list[str]]:
    """One Meta multi-key row per contact: the SHA-256 of each key's normalized value, the
    value itself for MADID and EXTERN_ID, and "" where the contact has none (an empty string
    is never hashed). A contact with no match key in the schema (`_meta_matchable`) is
    skipped."""
    for contact in contacts:
        values = _meta_values(contact, default_region=default_region, stats=stats)
        if not _meta_matchable(values, schema):
            stats.skipped += 1
            continue
        row = []
        for key in schema:
            value = values.get(key)
            if not value:
                row.append("")
            elif key in META_UNHASHED_KEYS:
                row.append(value)
            else:
                row.append(norm.digest(value))
        yield row


@dataclass(frozen=True)
class MetaUsersRequest:
    """One Marketing API call: `method` (`POST` adds, `DELETE` removes) on `path`, with `body`
    sent as form or JSON fields (`payload`, and `session` when batched)."""

    method: Literal["POST", "DELETE"]
    path: str
    body: dict[str, Any] = field(repr=False)

    @property
    def row_count(self) -> int:
        return len(self.body["payload"]["data"])


def meta_users_requests(
    contacts: Iterable[Contact],
    *,
    audience_id: str,
    schema: Sequence[str] = DEFAULT_META_SCHEMA,
    remove: bool = False,
    session_id: int | None = None,
    estimated_total: int | None = None,
    batch_size: int = META_MAX_ROWS_PER_REQUEST,
    min_audience_size: int = DEFAULT_MIN_AUDIENCE_SIZE,
    default_region: str | None = None,
    stats: ExportStats | None = None,
) -> Iterator[MetaUsersRequest]:
    """The `/{audience_id}/users` requests that add (or, with `remove=True`, delete) the
    contacts, at most `batch_size` (≤ 10,000) rows each. With a `session_id` every request
    carries Meta's upload session (`batch_seq` from 1, `last_batch_flag` on the last one), so
    that Meta treats the batches as one replace-safe upload. Holds at most two batches."""
    keys = _validate_meta_schema(schema)
    if not 1 <= batch_size <= META_MAX_ROWS_PER_REQUEST:
        raise ValueError(f"batch_size must be between 1 and {META_MAX_ROWS_PER_REQUEST}")
    minimum = 0 if remove else min_audience_size
    if minimum < 0:
        raise ValueError("min_audience_size must not be negative")
    if minimum > batch_size:
        raise ValueError("min_audience_size must not exceed batch_size")
    if not str(audience_id).isdigit():
        raise ValueError("audience_id must be a Meta object id (digits)")
    stats = stats if stats is not None else ExportStats()
    method: Literal["POST", "DELETE"] = "DELETE" if remove else "POST"
    sequence = 0

    def request(rows: list[list[str]], *, last: bool) -> MetaUsersRequest:
        nonlocal sequence
        sequence += 1
        body: dict[str, Any] = {"payload": {"schema": keys, "data": rows}}
        if session_id is not None:
            session: dict[str, Any] = {
                "session_id": session_id,
                "batch_seq": sequence,
                "last_batch_flag": last,
            }
            if estimated_total is not None:
                session["estimated_num_total"] = estimated_total
            body["session"] = session
        return MetaUsersRequest(method=method, path=f"/{audience_id}/users", body=body)

    pending: list[list[str]] | None = None
    batch: list[list[str]] = []
    for row in _meta_rows(contacts, keys, default_region=default_region, stats=stats):
        stats.rows += 1
        batch.append(row)
        if len(batch) == batch_size:
            # Yielded only once the next batch is full too: by then rows > batch_size ≥ minimum.
            if pending is not None:
                yield request(pending, last=False)
            pending, batch = batch, []
    if batch:
        if pending is not None:
            yield request(pending, last=False)
        pending = batch
    check_min_audience_size(stats.rows, minimum)
    if pending is not None:
        yield request(pending, last=True)


def write_meta_payload_json(
    contacts: Iterable[Contact],
    out: TextIO,
    *,
    schema: Sequence[str] = DEFAULT_META_SCHEMA,
    min_audience_size: int = DEFAULT_MIN_AUDIENCE_SIZE,
    default_region: str | None = None,
) -> ExportStats:
    """One `{"payload": {"schema": [...], "data": [[...], ...]}}` document, streamed; the body
    of a `POST` (add) or, with `min_audience_size=0`, a `DELETE` (remove) on
    `/{audience_id}/users`. Split into ≤ 10,000-row requests before sending
    (`meta_users_requests` does that)."""
    keys = _validate_meta_schema(schema)
    stats = ExportStats()
    first = True

    def start() -> None:
        out.write('{"payload":{"schema":' + orjson.dumps(keys).decode() + ',"data":[')

    def emit(row: list[str]) -> None:
        nonlocal first
        out.write(("" if first else ",") + orjson.dumps(row).decode())
        first = False

    gate = _MinimumGate(min_audience_size, start, emit)
    for row in _meta_rows(contacts, keys, default_region=default_region, stats=stats):
        gate.add(row)
    gate.close()
    out.write("]}}")
    stats.rows = gate.count
    return stats


def write_meta_customer_list_csv(
    contacts: Iterable[Contact],
    out: TextIO,
    *,
    min_audience_size: int = DEFAULT_MIN_AUDIENCE_SIZE,
    default_region: str | None = None,
    email_columns: int = 1,
    phone_columns: int = 1,
) -> ExportStats:
    """Meta's customer-list file (Ads Manager upload) with its documented lowercase headers,
    every value SHA-256 of its normalized form (`dob` as `YYYYMMDD`, `doby` as `YYYY`)."""
    if not 1 <= email_columns <= 3 or not 1 <= phone_columns <= 3:
        raise ValueError("Meta accepts one to three email and phone columns")
    stats = ExportStats()
    writer = csv.writer(out)
    header = ["email"] * email_columns + ["phone"] * phone_columns + list(META_CSV_COLUMNS[2:])
    gate = _MinimumGate(min_audience_size, lambda: writer.writerow(header), writer.writerow)
    csv_keys = ("FN", "LN", "CT", "ST", "ZIP", "COUNTRY", "DOB", "DOBY", "GEN")
    for contact in contacts:
        values = _meta_values(contact, default_region=default_region, stats=stats)
        if not _meta_matchable(values, ("EMAIL", "PHONE", *csv_keys)):
            stats.skipped += 1
            continue
        emails = [values[f"_EMAIL{i}"] for i in range(email_columns) if f"_EMAIL{i}" in values]
        phones = [values[f"_PHONE{i}"] for i in range(phone_columns) if f"_PHONE{i}" in values]
        others = [values.get(key, "") for key in csv_keys]
        hashed = [norm.digest(value) if value else "" for value in others]
        gate.add(
            _fill([norm.digest(v) for v in emails], email_columns)
            + _fill([norm.digest(v) for v in phones], phone_columns)
            + hashed
        )
    gate.close()
    stats.rows = gate.count
    return stats


# --- plain CSV / JSONL exports -----------------------------------------------------------------


def _validate_fields(fields: Sequence[str]) -> list[str]:
    names = list(fields)
    if (
        not names
        or len(set(names)) != len(names)
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise ExportFieldsInvalid("Export fields are a non-empty list of distinct names.")
    return names


def _plain(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return value


def _csv_cell(value: object) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        text = orjson.dumps(value, default=str).decode()
    else:
        text = str(value)
    # Plainly a number or a phone number ("+44 20 7183 8750") stays as it is.
    return spreadsheet_safe(text, keep_numbers=True)


def write_csv_export(
    rows: Iterable[Mapping[str, object]], out: TextIO, *, fields: Sequence[str]
) -> ExportStats:
    """CSV with a header of `fields` and one line per row holding only those fields (others
    in the row are not exported). `out` is a text file opened with `newline=""`."""
    names = _validate_fields(fields)
    stats = ExportStats()
    writer = csv.writer(out)
    writer.writerow(names)
    for row in rows:
        writer.writerow([_csv_cell(row.get(name)) for name in names])
        stats.rows += 1
    return stats


def write_jsonl_export(
    rows: Iterable[Mapping[str, object]], out: TextIO, *, fields: Sequence[str]
) -> ExportStats:
    """JSON Lines: one object per row with exactly `fields` (missing ones as null)."""
    names = _validate_fields(fields)
    stats = ExportStats()
    for row in rows:
        record = {name: _plain(row.get(name)) for name in names}
        out.write(orjson.dumps(record, default=str).decode() + "\n")
        stats.rows += 1
    return stats
