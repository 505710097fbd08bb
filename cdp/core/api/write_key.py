"""Write-key authentication for the public, browser-facing routes (collection, consent).

A write key names a *source*, not a user: DRF's BasicAuthentication would try a user login, and
the management API's token auth does not apply. Accepted, in this order:

1. `Authorization: Basic base64("<writeKey>:")` (every SDK; password empty);
2. `writeKey` in the JSON body (Segment's HTTP API, analytics-next, segment-analytics-python);
3. where a route allows it (`query_param`), `?writeKey=` in the query string: a plain GET from
   a banner then needs no CORS preflight and is cacheable by URL. Write keys are public by
   design (they ship in the page), so the key in a URL discloses nothing new.

`cdp.core` knows no Source model: an app subclasses `WriteKeyAuthentication` with a
`source_lookup` (`profiles.selectors.source_get_by_write_key`). `SourceMayWrite` reads only the
duck-typed `enabled` and `allowed_origins` of what the lookup returned.

The origin decision is left on the Django request under the attribute that
`collect.cors.CollectCorsMiddleware` reads, so a refused origin never gets CORS headers on its
error while an accepted one does: the middleware (which serves every `/v1/` path) and this
check agree without either importing the other.

Each app describes its subclass to the OpenAPI schema itself (drf-spectacular keys a security
scheme by the concrete class, so one shared extension would clash between apps).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from rest_framework import authentication
from rest_framework.permissions import BasePermission

from cdp.core.exceptions import ApplicationError

MAX_WRITE_KEY_LENGTH = 256
# Read by collect.cors.CollectCorsMiddleware; keep the two in step.
ORIGIN_DECISION_ATTR = "_collect_origin_allowed"
_DEFAULT_PORTS = {"http": 80, "https": 443}


# Every public write-key route (collection, consent, personalization) answers a missing or
# wrong key with the same challenge, so SDKs see one realm.
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="collect"'}


class WriteKeyMissing(ApplicationError):
    code = "missing_write_key"
    status = 401
    headers = _CHALLENGE
    default_message = "No write key: send it as the HTTP Basic username or as writeKey in the body."


class WriteKeyInvalid(ApplicationError):
    code = "invalid_write_key"
    status = 401
    headers = _CHALLENGE
    default_message = "The write key is not valid."


class SourceDisabled(ApplicationError):
    code = "source_disabled"
    status = 403
    default_message = "This source is disabled."


class OriginNotAllowed(ApplicationError):
    code = "origin_not_allowed"
    status = 403
    default_message = "This source does not accept requests from this origin."


def _key_from_basic(header: bytes) -> str | None:
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise WriteKeyInvalid("The Authorization header is not valid HTTP Basic.") from None
    return decoded.partition(":")[0]


class WriteKeyAuthentication(authentication.BaseAuthentication):
    """`request.auth` becomes the source the write key belongs to; `request.user` stays None."""

    # Set by the subclass: write key -> source (enabled or not) or None.
    source_lookup: Callable[..., Any] | None = None
    # The query parameter that may carry the key (GET routes), or None.
    query_param: str | None = None

    def authenticate(self, request: Any) -> tuple[None, Any] | None:
        key = _key_from_basic(authentication.get_authorization_header(request))
        if not key and self.query_param and request.method in ("GET", "HEAD"):
            key = request.query_params.get(self.query_param) or None
        if not key and request.method not in ("GET", "HEAD", "OPTIONS"):
            data = request.data  # parses the body; its errors answer as themselves
            body_key = data.get("writeKey") if isinstance(data, dict) else None
            if body_key is not None and not isinstance(body_key, str):
                raise WriteKeyInvalid()
            key = body_key
        key = (key or "").strip()
        if not key:
            return None
        if len(key) > MAX_WRITE_KEY_LENGTH:
            raise WriteKeyInvalid()
        lookup = type(self).source_lookup
        if lookup is None:  # a subclass forgot to say where sources come from
            raise ImproperlyConfigured("WriteKeyAuthentication needs a source_lookup")
        source = lookup(write_key=key)
        if source is None:
            raise WriteKeyInvalid()
        return (None, source)

    def authenticate_header(self, request: Any) -> str:
        return 'Basic realm="collect"'


def canonical_origin(origin: str) -> str:
    """The comparable form of an origin: lower-case, no trailing slash, no default port."""
    text = origin.strip().lower().rstrip("/")
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        return text
    if port is not None and _DEFAULT_PORTS.get(parts.scheme) == port and parts.hostname:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return f"{parts.scheme}://{host}"
    return text


def origin_allowed(*, allowed_origins: Iterable[object], origin: str) -> bool:
    """Whether `origin` is one of `allowed_origins` (compared in canonical form)."""
    if not origin or origin.lower() == "null":
        return False
    return canonical_origin(origin) in {canonical_origin(str(o)) for o in allowed_origins if o}


class SourceMayWrite(BasePermission):
    """The key's source is enabled, and a browser request comes from one of its origins.

    Requests without an Origin header (server SDKs, curl) are not browser requests and pass."""

    def has_permission(self, request: Any, view: Any) -> bool:
        source = request.auth
        if source is None:
            raise WriteKeyMissing()
        if not source.enabled:
            raise SourceDisabled()
        origin = request.headers.get("Origin")
        if origin is not None:
            allowed = origin_allowed(allowed_origins=source.allowed_origins or (), origin=origin)
            setattr(request._request, ORIGIN_DECISION_ATTR, allowed)
            if not allowed:
                raise OriginNotAllowed()
        return True
