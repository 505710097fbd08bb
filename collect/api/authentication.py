"""Write-key authentication for the collection routes: the shared public-route authentication
of cdp.core.api.write_key, looking sources up in profiles.

A write key names a *source*, not a user. Accepted, in this order: `Authorization: Basic
base64("<writeKey>:")` (every SDK; password empty), then `writeKey` in the JSON body (Segment's
HTTP API, analytics-next, segment-analytics-python; also the way to pass the key next to an
OAuth `Authorization: Bearer` header).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from cdp.core.api import write_key
from profiles import selectors

MAX_WRITE_KEY_LENGTH = write_key.MAX_WRITE_KEY_LENGTH


class WriteKeyAuthentication(write_key.WriteKeyAuthentication):
    """`request.auth` becomes the Source the write key belongs to; `request.user` stays None."""

    source_lookup = staticmethod(selectors.source_get_by_write_key)


class SourceMayCollect(write_key.SourceMayWrite):
    """The key's source is enabled, and a browser request comes from one of its origins.

    Requests without an Origin header (server SDKs) are not browser requests and pass."""


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
