"""The JSON request parser of the management and public DRF APIs (the collection and consent
routes have their own, collect.api.parsers).

DRF's JSONParser reads with the standard library, which recurses once per nesting level: a
100 KB body of nested brackets raised RecursionError, a 500. This one reads with orjson and
answers what cannot be taken as 400 `malformed_body` (DRF's ParseError), as DRF does for
invalid JSON:

- nesting deeper than MAX_DEPTH (orjson stops at 1024, but the request data is later walked
  by recursive code: json.dumps in serializers' JSONField, jsonschema, the audit log);
- numbers out of a double's range (`1e400`: the standard library read infinity, which no
  JSON column can store), and lone surrogates (`"\\ud800"`, which no UTF-8 column can store);
- integers beyond 64 bits: orjson would read them as floats, and the project writes JSON with
  orjson (sealed columns, exports, webhook payloads), which refuses them: a request's sealed
  details holding one was a 500. Such a number is sent as a string.

A string holding U+0000 anywhere, key or value, answers 400 `invalid_character`: PostgreSQL
refuses NUL in text and JSON, so it would otherwise fail as a 500 wherever it is stored or
looked up. Valid JSON otherwise reads as the standard library reads it (a document holding 19
digits in a row is read again by the standard library, as profiles.handlers does for stored
JSON, to tell a big integer from a float)."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import IO, Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

from cdp.core.exceptions import InvalidInput
from cdp.core.jsontext import has_long_digit_run

# Far above any document the API takes (audience rules are at most 12 groups, some 50
# levels), far below what recursive code downstream survives.
MAX_DEPTH = 256

# What orjson reads and writes exactly, and so what the project's sealed JSON columns, exports
# and webhook payloads (orjson.dumps) can hold.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# JSON cannot hold a raw control character in a string: a NUL in a string is always this escape.
_NUL_ESCAPE = b"\\u0000"


class NulCharacter(InvalidInput):
    code = "invalid_character"
    default_message = "Text in the request body cannot contain the NUL character (U+0000)."


def _parse_error(detail: str) -> ParseError:
    return ParseError(f"JSON parse error - {detail}")


def _check(data: Any, *, nul: bool, big: bool) -> None:
    """Raise for nesting deeper than MAX_DEPTH, for a NUL in a string when `nul`, and for an
    integer beyond 64 bits when `big`. A loop, not recursion: the document may be nested up
    to orjson's own limit."""
    kinds: tuple[type, ...] = (dict, list)
    if nul:
        kinds += (str,)
    if big:
        kinds += (int,)
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise NulCharacter()
            continue
        if isinstance(node, int):
            if not _INT_MIN <= node <= _INT_MAX:
                raise _parse_error("an integer is beyond 64 bits (send such a number as a string)")
            continue
        if depth > MAX_DEPTH:
            raise _parse_error(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            if nul and any("\x00" in key for key in node):
                raise NulCharacter()
            children = node.values()
        else:
            children = node
        stack.extend((child, depth + 1) for child in children if isinstance(child, kinds))


def loads(raw: bytes) -> Any:
    """A UTF-8 JSON document as the standard library reads it, within the bounds above."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _parse_error(str(exc)) from None
    big = has_long_digit_run(raw)
    if big:
        # orjson read any integer beyond 64 bits as a float: the standard library tells.
        try:
            data = json.loads(raw.decode())
        except (ValueError, RecursionError) as exc:
            raise _parse_error(str(exc) or "nested too deeply") from None
    nul = _NUL_ESCAPE in raw
    if big or nul or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        _check(data, nul=nul, big=big)
    return data


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser, reading with `loads`; a body over DATA_UPLOAD_MAX_MEMORY_SIZE raises
    Django's RequestDataTooBig, which the exception handler answers 413."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            # As DRF: a text codec only (a bytes-to-bytes one such as bz2_codec would inflate).
            "".encode(encoding)
        except (LookupError, UnicodeError):
            raise ParseError(
                f'Unsupported charset "{encoding}" in request Content-Type header.'
            ) from None
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            # DRF checks the declared length already; this covers a body it streams.
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        if codecs.lookup(encoding).name != "utf-8":
            # A body in another declared charset, as DRF decodes it, then as UTF-8.
            try:
                raw = raw.decode(encoding).encode()
            except UnicodeError as exc:
                raise _parse_error(str(exc)) from None
        return loads(raw)
