"""Cursor pagination of the management lists: a cursor is base64 the client can forge, and one
whose position is not a value of the ordering field answers like an undecodable one (404
`Invalid cursor`), never a server error; a cursor the API wrote still pages on."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from activation import services as activation_services
from profiles.models import Profile
from tests.activation.api_helpers import VIP, shopper
from tests.governance.request_helpers import verified

INVALID_CURSOR = {"code": "not_found", "message": "Invalid cursor"}


def _cursor(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


@pytest.fixture(autouse=True)
def _fresh_limits() -> Any:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def lists(workspace: Any) -> dict[str, str]:
    """One paginated list of each kind, each holding a row."""
    who = shopper(workspace)
    activation_services.audience_create(workspace=workspace, key="vip", name="VIP", rules=VIP)
    verified(workspace)
    return {
        "profiles": "/api/v1/profiles/",
        "events": f"/api/v1/profiles/{who.profile_id}/events/",
        "audiences": "/api/v1/audiences/",
        "members": "/api/v1/audiences/vip/members/",
        "deliveries": "/api/v1/deliveries/",
        "requests": "/api/v1/requests/",
    }


@pytest.mark.parametrize(
    "name", ["profiles", "events", "audiences", "members", "deliveries", "requests"]
)
@pytest.mark.parametrize(
    "position",
    [
        "garbage",  # not a date
        "2026-01-01",  # a date, but naive: the API writes aware positions only
        "0001-01-01 00:00:00%2B01:00",  # a date before the first representable instant in UTC
        "%00",  # NUL, which PostgreSQL refuses in any text
    ],
)
def test_a_forged_cursor_position_is_an_invalid_cursor(
    api_client: APIClient, lists: dict[str, str], name: str, position: str
) -> None:
    # given: a well-formed cursor whose position is not a value of the ordering field
    api_client.raise_request_exception = False
    forged = _cursor(f"p={position}")
    # when
    response = api_client.get(lists[name], {"cursor": forged})
    # then
    assert response.status_code == 404
    assert response.json() == INVALID_CURSOR


@pytest.mark.parametrize("name", ["profiles", "audiences", "requests"])
def test_an_undecodable_cursor_answers_the_same(
    api_client: APIClient, lists: dict[str, str], name: str
) -> None:
    # when
    response = api_client.get(lists[name], {"cursor": "!!not-base64"})
    # then
    assert response.status_code == 404
    assert response.json() == INVALID_CURSOR


def test_a_cursor_the_api_wrote_pages_on(api_client: APIClient, workspace: Any) -> None:
    # given: two profiles, one per page
    shopper(workspace)
    shopper(workspace)
    ordered = Profile.objects.order_by("-created_at", "-id")
    newest_first = [str(pk) for pk in ordered.values_list("pk", flat=True)]
    # when
    first = api_client.get("/api/v1/profiles/", {"page_size": 1})
    second = api_client.get(first.json()["next"])
    back = api_client.get(second.json()["previous"])
    # then
    assert [p["id"] for p in first.json()["results"]] == newest_first[:1]
    assert second.status_code == 200
    assert [p["id"] for p in second.json()["results"]] == newest_first[1:]
    assert [p["id"] for p in back.json()["results"]] == newest_first[:1]
