"""Request-body parsers for the collection routes.

Real clients send JSON as `application/json` (Python SDKs, RudderStack JS, with or without
`;charset=UTF-8`) and as `text/plain` (@segment/analytics-next, beacons); rudder-sdk-python
gzips by default. DRF's stock JSONParser answers 415 to the first (analytics-next then drops
the events) and cannot read the second. The size cap applies to the decompressed body, and
decompression stops at the cap, so a small gzip bomb cannot inflate in memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import IO, Any

import orjson
from django.conf import settings
from rest_framework.parsers import BaseParser

from collect.exceptions import (
    InvalidPayload,
    MalformedBody,
    MalformedJson,
    RequestTooLarge,
    UnsupportedEncoding,
)

DEFAULT_MAX_REQUEST_BYTES = 500 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_BOM = b"\xef\xbb\xbf"


def max_request_bytes() -> int:
    return int(getattr(settings, "COLLECT_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES))


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than {limit} bytes.")


def _inflate(data: bytes, *, wbits: int, limit: int) -> bytes:
    """Decompress at most `limit` bytes; concatenated gzip members are read in turn."""
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(wbits=wbits)
        pending = data
        try:
            while pending:
                chunk = inflater.decompress(pending, limit + 1 - len(out))
                out += chunk
                if len(out) > limit:
                    raise _too_large(limit)
                if pending == inflater.unconsumed_tail and not chunk:
                    break  # no progress: the stream is stuck (corrupt)
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
        except zlib.error:
            raise MalformedBody("The compressed request body is corrupt.") from None
        if not inflater.eof:
            raise MalformedBody("The compressed request body is truncated.")
        data = inflater.unused_data if wbits == _GZIP_WBITS else b""
    return bytes(out)


def read_body(stream: IO[bytes], meta: Mapping[str, Any]) -> bytes:
    """The request body, decompressed per Content-Encoding, at most the configured size."""
    limit = max_request_bytes()
    encoding = str(meta.get("HTTP_CONTENT_ENCODING", "")).strip().lower()
    if encoding in ("", "identity"):
        wire_limit = limit
    elif encoding in ("gzip", "x-gzip", "deflate"):
        # gzip can make incompressible data slightly larger than it was
        wire_limit = limit + limit // 100 + 1024
    else:
        raise UnsupportedEncoding()
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > wire_limit:
        raise _too_large(limit)
    raw = stream.read(wire_limit + 1)
    if len(raw) > wire_limit:
        raise _too_large(limit)
    if encoding in ("gzip", "x-gzip"):
        return _inflate(raw, wbits=_GZIP_WBITS, limit=limit)
    if encoding == "deflate":
        return _inflate(raw, wbits=_ZLIB_WBITS, limit=limit)
    return raw


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw.removeprefix(_BOM))
    except orjson.JSONDecodeError:
        raise MalformedJson() from None
    if not isinstance(data, dict):
        raise InvalidPayload("The request body must be a JSON object.")
    return data


class SegmentJSONParser(BaseParser):
    """JSON, optionally gzip- or deflate-encoded, as a dict."""

    media_type = "application/json"

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        request = (parser_context or {})["request"]
        return parse_json_object(read_body(stream, request.META))


class TextPlainJSONParser(SegmentJSONParser):
    """@segment/analytics-next posts JSON as text/plain (no preflight for that content type)."""

    media_type = "text/plain"


class AnyJSONParser(SegmentJSONParser):
    """Anything else (no Content-Type, form encoding from curl -d) is tried as JSON too:
    a 415 makes browser SDKs drop events silently."""

    media_type = "*/*"
