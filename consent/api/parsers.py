"""Request bodies of the consent API: JSON as `application/json`, and as `text/plain` (what
Klaro, analytics-next and `navigator.sendBeacon` send, to avoid a CORS preflight). A consent
change is small: bodies over 64 KiB are refused before they are read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import orjson
from rest_framework.parsers import BaseParser

from cdp.core.exceptions import InvalidInput

MAX_BODY_BYTES = 64 * 1024
_BOM = b"\xef\xbb\xbf"


class ConsentJSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise InvalidInput(
                f"The request body is larger than {MAX_BODY_BYTES} bytes.",
                code="request_too_large",
            )
        if not raw.strip():
            return {}
        try:
            data = orjson.loads(raw.removeprefix(_BOM))
        except orjson.JSONDecodeError:
            raise InvalidInput(
                "The request body is not valid JSON.", code="malformed_json"
            ) from None
        if not isinstance(data, dict):
            raise InvalidInput("The request body must be a JSON object.", code="invalid_payload")
        return data


class ConsentTextPlainParser(ConsentJSONParser):
    media_type = "text/plain"


class ConsentAnyParser(ConsentJSONParser):
    """No Content-Type (curl, some beacons) is tried as JSON too: a 415 would lose a consent."""

    media_type = "*/*"
