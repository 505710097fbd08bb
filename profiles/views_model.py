"""Read models of a profile for the admin and the management API: identities and traits with
values masked unless a reveal was asked for (and audited by profiles.services.profile_reveal)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

MASK = "••••••"


@dataclass(frozen=True)
class IdentityView:
    id: UUID
    type: str
    value: str
    source: str | None
    first_seen_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class TraitView:
    key: str
    is_pii: bool
    value: Any
    source: str
    observed_at: datetime
    candidates: int  # how many sources or merged profiles offered a value
