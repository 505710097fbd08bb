"""The subject's status token: `Authorization: Bearer <token>` on their own request's routes.

It is not a user and not a workspace token: authentication only carries the raw token to the
view, which looks the request up by id and token hash and answers 404 for anything that does
not match (an unknown id and a wrong token look the same)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication


class StatusTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[None, str] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if len(header) != 2 or header[0].lower() != "bearer":
            return None
        return (None, header[1])

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="requests"'


class StatusTokenScheme(OpenApiAuthenticationExtension):
    target_class = "governance.api.authentication.StatusTokenAuthentication"
    name = "requestStatusToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The status token returned once when the request was submitted.",
        }
