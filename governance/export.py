"""Access and portability exports: everything every registered personal-data handler holds about
the request's profile, as `data.json` (machine-readable, with a published JSON Schema),
`schema.json` and `index.html` (readable), zipped in memory and sealed at rest under a data key
of the export's own. The subject downloads it through an expiring token (governance.downloads);
only the token's SHA-256 is kept."""

from __future__ import annotations

import base64
import gc
import hashlib
import html
import io
import json
import secrets
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from itertools import chain, repeat
from typing import Any

import orjson
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from cdp.core import registry
from governance import selectors
from governance.models import DataSubjectRequest, ExportArchive
from profiles import services as profile_services
from profiles.enums import DataKeyPurpose

EXPORT_FORMAT = "cdp-export/1"
DEFAULT_TTL_DAYS = 7

# The published schema of data.json (GET /api/v1/requests/export-schema.json). Each store's
# section is described loosely (its keys are the handler's own), so a new app's handler does
# not break the schema; what every export promises is the envelope.
EXPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Personal data export",
    "description": (
        "Everything this customer data platform stores about one person, from every store "
        "that holds personal data (a response to an access or portability request)."
    ),
    "type": "object",
    "required": [
        "$schema",
        "format",
        "request",
        "workspace",
        "generated_at",
        "data_found",
        "subject",
        "stores",
    ],
    "properties": {
        "$schema": {"type": "string", "description": "Where this schema is published."},
        "format": {"const": EXPORT_FORMAT},
        "request": {
            "type": "object",
            "required": ["id", "type", "regime", "received_at"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "type": {"enum": ["access", "portability"]},
                "regime": {"type": "string"},
                "received_at": {"type": "string", "format": "date-time"},
            },
        },
        "workspace": {
            "type": "object",
            "required": ["slug", "name"],
            "properties": {"slug": {"type": "string"}, "name": {"type": "string"}},
        },
        "generated_at": {"type": "string", "format": "date-time"},
        "data_found": {
            "type": "boolean",
            "description": "False when no profile matched the contact given in the request.",
        },
        "subject": {
            "type": "object",
            "required": ["profile"],
            "properties": {
                "profile": {
                    "type": ["string", "null"],
                    "description": "The pseudonymous id of the person's profile.",
                }
            },
        },
        "stores": {
            "type": "object",
            "description": (
                "One entry per store of personal data (a registered handler), by name, e.g. "
                "profiles.identities, profiles.events, consent.ledger; each holds named "
                "sections (lists of records or objects)."
            ),
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": ["array", "object", "string", "number", "null"]},
            },
        },
    },
    "additionalProperties": False,
}


def export_schema() -> dict[str, Any]:
    """The JSON Schema of data.json, with its published address as `$id`."""
    return {**EXPORT_SCHEMA, "$id": export_schema_url()}


def export_schema_url() -> str:
    """Where the schema is published: absolute when CDP_PUBLIC_URL is set."""
    base = str(getattr(settings, "CDP_PUBLIC_URL", "") or "").rstrip("/")
    return base + reverse("governance-export-schema")


def _ttl() -> timedelta:
    return timedelta(days=int(getattr(settings, "GOVERNANCE_EXPORT_TTL_DAYS", DEFAULT_TTL_DAYS)))


def export_data(*, request: DataSubjectRequest) -> dict[str, Any]:
    """data.json: every registered handler's export of the request's profile."""
    profile = selectors.request_subject_profile(request)
    stores: dict[str, Any] = {}
    if profile is not None:
        for handler in registry.handlers():
            stores[handler.name] = handler.export(profile)
    return {
        "$schema": export_schema_url(),
        "format": EXPORT_FORMAT,
        "request": {
            "id": str(request.pk),
            "type": request.type,
            "regime": request.regime,
            "received_at": request.received_at.isoformat(),
        },
        "workspace": {"slug": request.workspace.slug, "name": request.workspace.name},
        "generated_at": timezone.now().isoformat(),
        "data_found": profile is not None,
        "subject": {"profile": str(profile.pk) if profile is not None else None},
        "stores": stores,
    }


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS
_TEXT_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS


def _json_bytes(value: Any, *, indent: bool = False) -> bytes:
    """JSON in UTF-8 through orjson: an export of a person with many events spends much of
    its time serializing, and the standard library's encoder is pure Python once it indents.
    What orjson refuses (an integer beyond 64 bits, a dict key of an odd type) goes to the
    standard library as before."""
    try:
        option = _JSON_OPTIONS | orjson.OPT_INDENT_2 if indent else _JSON_OPTIONS
        return orjson.dumps(value, default=str, option=option)
    except orjson.JSONEncodeError:
        return json.dumps(
            value, ensure_ascii=False, indent=2 if indent else None, default=str
        ).encode()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, default=str, option=_TEXT_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(
            value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
        )


# Many values are written by one orjson call, between separators (see `_texts`).
_SEPARATOR = "\x00"
_SEPARATOR_JSON = ',"\\u0000",'


# What `_texts` writes in one call: JSON whose text ends outside a string.
_BATCHED_KINDS = frozenset({dict, list, int, float, bool})


def _texts(values: list[Any]) -> list[str]:
    """`_text` of each value. A column of JSON objects, arrays or numbers (an event's
    properties, its context) is written by one orjson call, the values between separator
    strings, and split at the separators: ten thousand calls cost twice as much. The split is
    exact when it gives as many parts as values: the text of such a value ends in `}`, `]`, a
    digit or a letter, never in a beginning of the separator, so every separator between two
    values is found; one inside a value (in a string of it) makes a part more, and then the
    values are written one by one."""
    kinds = set(map(type, values))
    if kinds <= {str}:
        return values
    if kinds <= _BATCHED_KINDS:
        interleaved: list[Any] = [_SEPARATOR] * (2 * len(values) - 1)
        interleaved[::2] = values
        try:
            written = orjson.dumps(interleaved, default=str, option=_TEXT_OPTIONS).decode()
        except orjson.JSONEncodeError:
            written = ""  # orjson refuses one of them: each through _text
        parts = written[1:-1].split(_SEPARATOR_JSON)
        if len(parts) == len(values):
            return parts
    return [v if v.__class__ is str else _text(v) for v in values]


# Cells and rows of a table are joined around these two characters before the whole body is
# escaped in one pass (see `_table_body`), then replaced by the tags; a value holding either
# (NUL never comes from PostgreSQL, whose text cannot hold it) makes the body be escaped cell
# by cell instead.
_CELL, _ROW = "\x00", "\x01"


def _table_body(rows: Sequence[Sequence[str]]) -> SafeString:
    """A table's rows as HTML, every cell escaped (html.escape is what Django's escape
    calls). Joined here rather than looped in the template: thousands of events through the
    template language's loops cost about a second; and escaped as one text rather than cell
    by cell: for 70,000 cells, five passes over one string cost a fraction of 70,000 calls."""
    escape = html.escape
    text = _ROW.join(list(map(_CELL.join, rows)))
    if text.count(_CELL) == sum(map(len, rows)) - len(rows) and text.count(_ROW) == len(rows) - 1:
        body = (
            "<tr><td>"
            + escape(text).replace(_CELL, "</td><td>").replace(_ROW, "</td></tr>\n<tr><td>")
            + "</td></tr>"
        )
    else:
        body = "\n".join(
            [
                "<tr>" + "".join(["<td>" + escape(c) + "</td>" for c in row]) + "</tr>"
                for row in rows
            ]
        )
    return mark_safe(body)  # noqa: S308 — every value in it is escaped just here


def _table_rows(content: list[Any], columns: list[str]) -> Sequence[Sequence[str]]:
    """The cells of a list's table, as text: a record's values under its keys' columns (a
    missing key an empty cell), anything else in a cell of its own."""
    if columns and all(isinstance(item, dict) for item in content):
        # Column by column, each through `_texts` (the values fetched by map in C).
        cells = [_texts(list(map(dict.get, content, repeat(c)))) for c in columns]
        return list(zip(*cells, strict=True))
    return [
        [v if v.__class__ is str else _text(v) for v in map(item.get, columns)]
        if isinstance(item, dict)
        else [_text(item)]
        for item in content
    ]


def _sections(stores: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each store's sections, shaped for the template: a list of records as a table, an
    object as key/value rows. Values are plain strings, escaped by the template, a table's
    rows by `_table_body`."""
    for store, sections in stores.items():
        for name, content in sections.items():
            section: dict[str, Any] = {"store": store, "name": name}
            if isinstance(content, list):
                # Every key of every record, in order of first appearance (dict.fromkeys keeps
                # the first and runs in C over the 70,000 keys of 10,000 events).
                records = (item for item in content if isinstance(item, dict))
                columns = list(dict.fromkeys(chain.from_iterable(records)))
                section["columns"] = columns or ["value"]
                rows = _table_rows(content, columns)
                section["count"] = len(rows)
                section["body"] = _table_body(rows) if rows else ""
            elif isinstance(content, dict):
                section["pairs"] = [(str(k), _text(v)) for k, v in content.items()]
            else:
                section["pairs"] = [(name, _text(content))]
            yield section


def export_html(data: dict[str, Any]) -> str:
    """index.html: the same data, readable (every value escaped by the template)."""
    return render_to_string(
        "governance/export.html",
        {
            "data": data,
            "sections": list(_sections(data["stores"])),
            "ttl_days": _ttl().days,
        },
    )


def export_zip(data: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    # The fastest deflate level: for a person with ten thousand events it compresses about
    # 18 MB of JSON and HTML three times faster than the default level, into a zip 40% larger
    # (about 1.2 MB instead of 0.8).
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("data.json", _json_bytes(data, indent=True))
        archive.writestr("schema.json", json.dumps(export_schema(), indent=2))
        archive.writestr("index.html", export_html(data))
    return buffer.getvalue()


def hash_download_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def download_path(*, archive: ExportArchive, token: str) -> str:
    return (
        reverse("governance-export-download", kwargs={"request_id": archive.request_id})
        + f"?token={token}"
    )


def _notify(*, request: DataSubjectRequest, archive: ExportArchive, token: str) -> None:
    """Send the subject the download link (email contacts; a phone contact hears from the
    steward). The token travels only in the message, never in a log."""
    if request.contact_type != "email":
        return
    base = str(getattr(settings, "CDP_PUBLIC_URL", "") or "").rstrip("/")
    send_mail(
        subject="Your personal data export is ready",
        message=(
            f"The export you asked for (request {request.pk}) is ready:\n\n"
            f"{base}{download_path(archive=archive, token=token)}\n\n"
            f"The link works until {archive.expires_at:%Y-%m-%d %H:%M} UTC. The zip holds "
            f"data.json (with its JSON Schema, schema.json) and index.html to read in a browser."
        ),
        from_email=None,
        recipient_list=[request.contact],
    )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the export is built: the export of a person
    with ten thousand events allocates a hundred thousand dicts and lists that live until the
    zip is written, and every 700 allocations had the collector walk them again, now and then
    with every other object of the process (up to a third of the export's CPU time in
    bench/dsr.py). Restored after, as it was; the build makes no cycles to speak of, and its
    objects are freed by reference counting."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@transaction.atomic
def export_build(*, request: DataSubjectRequest) -> ExportArchive:
    """Build the request's export and store it sealed under a new data key; earlier exports of
    the request are shredded. The download token is set on the returned archive as
    `download_token` (not stored: only its SHA-256) and emailed to the subject on commit."""
    with _collector_paused():
        payload = export_zip(export_data(request=request))
    earlier = list(ExportArchive.objects.filter(request=request).values_list("pk", "data_key_id"))
    if earlier:
        ExportArchive.objects.filter(pk__in=[pk for pk, _ in earlier]).delete()
        profile_services.data_keys_destroy(key_ids=[key for _, key in earlier])
    token = secrets.token_urlsafe(32)
    archive = ExportArchive(
        request=request,
        data_key_id=profile_services.data_key_create_unowned(
            workspace_id=request.workspace_id, purpose=DataKeyPurpose.REQUEST
        ),
        size_bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        download_token_hash=hash_download_token(token),
        expires_at=timezone.now() + _ttl(),
    )
    archive.archive = base64.b64encode(payload).decode()
    archive.save(force_insert=True)
    archive.download_token = token  # type: ignore[attr-defined]
    transaction.on_commit(partial(_notify, request=request, archive=archive, token=token))
    return archive


def export_open(*, archive: ExportArchive) -> bytes:
    """The decrypted zip of an export."""
    return base64.b64decode(archive.archive)


def export_enqueue(*, request: DataSubjectRequest) -> None:
    """(Re)build the request's export in a worker once the current transaction commits."""
    from governance import tasks

    request_id = str(request.pk)
    transaction.on_commit(lambda: tasks.dsr_export.delay(request_id))
