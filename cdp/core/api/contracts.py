"""What the API base knows of a credential: a token scoped to one workspace and its permissions."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class WorkspaceCredential(Protocol):
    workspace_id: Any

    @property
    def workspace(self) -> Any: ...

    def has_permission(self, codename: str) -> bool: ...
