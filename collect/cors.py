"""CORS for the collection routes (`/v1/...`), so browser SDKs on a customer's site may send.

A preflight carries no credentials, so it is answered against the union of the origins of all
enabled sources (cached briefly). The actual request is then checked against the origins of
*its* source (see `collect.api.authentication.SourceMayCollect`): a write key copied onto
another site is refused there, with nothing stored. Requests without an Origin header (server
SDKs, curl) are not browser requests and are not subject to CORS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from profiles import selectors

PATH_PREFIX = "/v1/"
ALLOW_METHODS = "POST, GET, OPTIONS"
# What analytics SDKs send: analytics-next adds Authorization (Basic write key) and, on
# retries, X-Retry-Count; RudderStack JS v3 adds AnonymousId, SentAt and the Rsa-* retry
# headers. `authorization` is listed by name: the Fetch standard excludes it from `*`.
ALLOW_HEADERS = ", ".join(
    (
        "authorization",
        "content-type",
        "content-encoding",
        "anonymousid",
        "sentat",
        "x-retry-count",
        "rsa-retry-attempt",
        "rsa-since-last-attempt",
        "rsa-since-first-attempt",
        "rsa-retry-reason",
        "rsa-recovered",
    )
)
# Rate-limited SDKs read Retry-After; browsers hide it from scripts unless exposed.
EXPOSE_HEADERS = "Retry-After, X-RateLimit-Reset"
MAX_AGE_SECONDS = 600
ORIGINS_CACHE_KEY = "collect:cors:allowed-origins"
DEFAULT_ORIGINS_CACHE_SECONDS = 60
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Set on the Django request once the request's own source has ruled on its Origin.
_DECISION_ATTR = "_collect_origin_allowed"


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


def _canonical_set(origins: Iterable[object]) -> frozenset[str]:
    return frozenset(canonical_origin(str(o)) for o in origins if o)


def origin_allowed_for_source(*, source: Any, origin: str) -> bool:
    """Whether `source` (a profiles Source) accepts browser requests from `origin`."""
    if not origin or origin.lower() == "null":
        return False
    return canonical_origin(origin) in _canonical_set(source.allowed_origins or ())


def origin_allowed_anywhere(origin: str) -> bool:
    """Whether any enabled source accepts `origin` (for preflights, which carry no key)."""
    if not origin or origin.lower() == "null":
        return False
    cache = caches[getattr(settings, "COLLECT_CACHE_ALIAS", "default")]
    origins = cache.get(ORIGINS_CACHE_KEY)
    if origins is None:
        origins = sorted(_canonical_set(selectors.source_allowed_origins_enabled()))
        timeout = getattr(
            settings, "COLLECT_CORS_ORIGINS_CACHE_SECONDS", DEFAULT_ORIGINS_CACHE_SECONDS
        )
        cache.set(ORIGINS_CACHE_KEY, origins, timeout=timeout)
    return canonical_origin(origin) in set(origins)


def record_origin_decision(request: HttpRequest, *, allowed: bool) -> None:
    setattr(request, _DECISION_ATTR, allowed)


def _allow(response: HttpResponse, origin: str) -> None:
    response["Access-Control-Allow-Origin"] = origin
    # Write keys travel in headers or the body, never cookies.
    response["Access-Control-Allow-Credentials"] = "false"


class CollectCorsMiddleware:
    """Answers preflights on `/v1/` and adds CORS headers to its responses."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(PATH_PREFIX):
            return self.get_response(request)
        origin = request.headers.get("Origin", "")
        if request.method == "OPTIONS":
            response = HttpResponse(status=204)
            if origin and origin_allowed_anywhere(origin):
                _allow(response, origin)
                response["Access-Control-Allow-Methods"] = ALLOW_METHODS
                response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
                response["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
            patch_vary_headers(response, ("Origin",))
            return response
        response = self.get_response(request)
        if origin:
            decision = getattr(request, _DECISION_ATTR, None)
            # Before a source is known (a bad key, an unreadable body) the error is readable
            # by the origins the preflight would have allowed.
            allowed = decision if decision is not None else origin_allowed_anywhere(origin)
            if allowed:
                _allow(response, origin)
                response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        patch_vary_headers(response, ("Origin",))
        return response
