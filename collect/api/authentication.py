"""Write-key authentication for the collection routes.

A write key names a *source*, not a user: DRF's BasicAuthentication would try a user login, and
the management API's token auth does not apply here. Accepted, in this order:

1. `Authorization: Basic base64("<writeKey>:")` (every SDK; password empty);
2. `writeKey` in the JSON body (Segment's HTTP API, analytics-next, segment-analytics-python;
   also the way to pass the key next to an OAuth `Authorization: Bearer` header).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication
from rest_framework.permissions import BasePermission

from collect import cors
from collect.exceptions import (
    InvalidWriteKey,
    MissingWriteKey,
    OriginNotAllowed,
    SourceDisabled,
)
from profiles import selectors

MAX_WRITE_KEY_LENGTH = 256


def _key_from_basic(header: bytes) -> str | None:
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidWriteKey("The Authorization header is not valid HTTP Basic.") from None
    return decoded.partition(":")[0]


class WriteKeyAuthentication(authentication.BaseAuthentication):
    """`request.auth` becomes the Source the write key belongs to; `request.user` stays None."""

    def authenticate(self, request: Any) -> tuple[None, Any] | None:
        key = _key_from_basic(authentication.get_authorization_header(request))
        if not key:
            data = request.data  # parses the body; its errors answer as themselves
            body_key = data.get("writeKey") if isinstance(data, dict) else None
            if body_key is None:
                return None
            if not isinstance(body_key, str):
                raise InvalidWriteKey()
            key = body_key
        key = key.strip()
        if not key:
            return None
        if len(key) > MAX_WRITE_KEY_LENGTH:
            raise InvalidWriteKey()
        source = selectors.source_get_by_write_key(write_key=key)
        if source is None:
            raise InvalidWriteKey()
        return (None, source)

    def authenticate_header(self, request: Any) -> str:
        return 'Basic realm="collect"'


class SourceMayCollect(BasePermission):
    """The key's source is enabled, and a browser request comes from one of its origins.

    Requests without an Origin header (server SDKs) are not browser requests and pass."""

    def has_permission(self, request: Any, view: Any) -> bool:
        source = request.auth
        if source is None:
            raise MissingWriteKey()
        if not source.enabled:
            raise SourceDisabled()
        origin = request.headers.get("Origin")
        if origin is not None:
            allowed = cors.origin_allowed_for_source(source=source, origin=origin)
            cors.record_origin_decision(request._request, allowed=allowed)
            if not allowed:
                raise OriginNotAllowed()
        return True


class WriteKeyScheme(OpenApiAuthenticationExtension):
    target_class = "collect.api.authentication.WriteKeyAuthentication"
    name = "writeKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "basic",
            "description": "The source's write key as the username, the password empty "
            "(or `writeKey` in the JSON body).",
        }
