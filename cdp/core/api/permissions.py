"""Permission classes for the management API. A request is always scoped to the workspace of
its token; `WorkspacePermission.of("reveal_pii")` additionally requires one of its roles."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from cdp.core.api.contracts import WorkspaceCredential


class IsWorkspaceToken(BasePermission):
    message = "A workspace API token is required."

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.auth, WorkspaceCredential)


class WorkspacePermission(IsWorkspaceToken):
    codename: str = ""

    @classmethod
    def of(cls, codename: str) -> type[WorkspacePermission]:
        return type(f"WorkspacePermission_{codename}", (cls,), {"codename": codename})

    def has_permission(self, request: Any, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        self.message = f"This token lacks the {self.codename!r} permission."
        return bool(request.auth.has_permission(self.codename))
