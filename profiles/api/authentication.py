"""Management-API authentication: `Authorization: Bearer cdp_...` (or `Token cdp_...`)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions

from profiles import selectors, services


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keywords = ("bearer", "token")

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed authorization header.")
        token = selectors.api_token_get_active(token_hash=services.hash_token(header[1]))
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        services.api_token_touch(token=token)
        return (token.created_by or AnonymousUser(), token)

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="api"'
