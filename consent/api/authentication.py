"""The consent API's write-key authentication: the shared `cdp.core` class, bound to the
profiles app's sources. A banner's GET may carry the key as `?writeKey=` (no preflight, and a
config answer cacheable by URL); writes carry it as HTTP Basic or `writeKey` in the body."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from cdp.core.api.write_key import WriteKeyAuthentication
from profiles import selectors as profile_selectors


class ConsentWriteKeyAuthentication(WriteKeyAuthentication):
    source_lookup = staticmethod(profile_selectors.source_get_by_write_key)
    query_param = "writeKey"

    def authenticate_header(self, request: object) -> str:
        return 'Basic realm="consent"'


class ConsentWriteKeyScheme(OpenApiAuthenticationExtension):
    target_class = "consent.api.authentication.ConsentWriteKeyAuthentication"
    name = "consentWriteKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "basic",
            "description": "A source's write key as the username, the password empty (or "
            "`writeKey` in the JSON body, or `?writeKey=` on a GET): the same key as collection.",
        }
