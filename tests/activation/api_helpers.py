"""Helpers for the activation management-API and admin tests: token clients with chosen
permissions, and shoppers ingested with a userId, an anonymousId, an email and plain traits."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from rest_framework.test import APIClient

from consent import services as consent_services
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.enums import WorkspaceRole
from tests.profiles.ingest_helpers import msg

MANAGE = [WorkspaceRole.MANAGE_AUDIENCES.value]
MANAGE_AND_REVEAL = [WorkspaceRole.MANAGE_AUDIENCES.value, WorkspaceRole.REVEAL_PII.value]
VIP = {"trait": {"key": "plan", "op": "=", "value": "vip"}}
_numbers = itertools.count(1)


def token_client(workspace: Any, permissions: list[str]) -> APIClient:
    issued = profile_services.api_token_create(
        workspace=workspace, name=f"token-{next(_numbers)}", permissions=permissions
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


@dataclass(frozen=True)
class Shopper:
    profile_id: Any
    user_id: str
    anonymous_id: str
    email: str


def shop_source(workspace: Any) -> Any:
    consent_services.purposes_ensure_defaults(workspace=workspace)
    for source in profile_selectors.source_list(workspace=workspace):
        if source.name == "Web":
            return source
    return profile_services.source_create(workspace=workspace, name="Web")


def shopper(workspace: Any, *, plan: str = "vip", country: str = "DE") -> Shopper:
    """A profile with a userId, an anonymousId, an email (personal data) and plain traits."""
    n = next(_numbers)
    who = Shopper(None, f"uid-sentinel-{n:04d}", f"aid-sentinel-{n:04d}", f"s{n:04d}@example.com")
    outcome = profile_services.ingest_messages(
        source=shop_source(workspace),
        messages=[
            msg(
                "identify",
                user_id=who.user_id,
                anonymous_id=who.anonymous_id,
                traits={"email": who.email, "plan": plan, "country": country},
            )
        ],
    )
    return Shopper(outcome.profile_ids[0], who.user_id, who.anonymous_id, who.email)
