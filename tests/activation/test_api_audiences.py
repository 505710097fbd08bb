"""The audience management API: create, list, retrieve, update, preview (size and a masked
sample), refresh and members (userId / anonymousId masked unless revealed, audited)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from auditlog import get_logentry_model
from rest_framework.test import APIClient

from activation import services
from activation.models import Audience
from activation.rules.compiler import MAX_DEPTH, MAX_NESTING
from profiles import services as profile_services
from profiles.enums import WorkspaceRole
from tests.activation.api_helpers import (
    MANAGE,
    MANAGE_AND_REVEAL,
    VIP,
    shopper,
    token_client,
)

pytestmark = pytest.mark.django_db

MASK = "••••••"
BAD_RULES = {"all": [VIP, {"trait": {"key": "plan", "op": "="}}]}


@pytest.fixture
def manager(workspace: Any) -> APIClient:
    return token_client(workspace, MANAGE)


@pytest.fixture
def revealer(workspace: Any) -> APIClient:
    return token_client(workspace, MANAGE_AND_REVEAL)


@pytest.fixture
def outsider(other_workspace: Any) -> APIClient:
    """Every permission, on the other workspace."""
    return token_client(other_workspace, list(WorkspaceRole.values))


@pytest.fixture
def vip(workspace: Any) -> Audience:
    return services.audience_create(workspace=workspace, key="vip", name="VIP", rules=VIP)


def create(client: APIClient, **body: Any) -> Any:
    return client.post("/api/v1/audiences/", body, format="json")


# --- authentication and permissions ------------------------------------------------------------


def test_no_token_is_401(vip: Any) -> None:
    # when
    response = APIClient().get("/api/v1/audiences/")

    # then
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_token_without_manage_audiences_is_403_and_creates_nothing(
    workspace: Any, api_client_readonly: APIClient
) -> None:
    # when
    listed = api_client_readonly.get("/api/v1/audiences/")
    created = create(api_client_readonly, key="vip", name="VIP", rules=VIP)

    # then
    assert listed.status_code == 403
    assert created.status_code == 403
    assert created.json() == {
        "code": "forbidden",
        "message": "This token lacks the 'manage_audiences' permission.",
    }
    assert not Audience.objects.filter(workspace=workspace).exists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/audiences/preview", {"rules": VIP}),
        ("get", "/api/v1/audiences/vip/", None),
        ("patch", "/api/v1/audiences/vip/", {"name": "Mine"}),
        ("get", "/api/v1/audiences/vip/preview", None),
        ("post", "/api/v1/audiences/vip/refresh", None),
        ("get", "/api/v1/audiences/vip/members/", None),
    ],
)
def test_every_audience_route_needs_a_token_with_manage_audiences(
    workspace: Any,
    vip: Audience,
    api_client_readonly: APIClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    # given
    shopper(workspace)
    # when
    anonymous = getattr(APIClient(), method)(path, body, format="json")
    readonly = getattr(api_client_readonly, method)(path, body, format="json")
    # then
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthenticated"
    assert readonly.status_code == 403
    assert readonly.json()["code"] == "forbidden"
    vip.refresh_from_db()
    assert (vip.name, vip.size, vip.memberships.count()) == ("VIP", 0, 0)


def test_another_workspace_sees_nothing_and_changes_nothing(
    workspace: Any, vip: Audience, outsider: APIClient
) -> None:
    # given
    shopper(workspace)
    services.audience_refresh(audience=vip)

    # when
    listed = outsider.get("/api/v1/audiences/")
    detail = outsider.get("/api/v1/audiences/vip/")
    changed = outsider.patch("/api/v1/audiences/vip/", {"name": "Mine"}, format="json")
    members = outsider.get("/api/v1/audiences/vip/members/")
    refreshed = outsider.post("/api/v1/audiences/vip/refresh")
    previewed = outsider.post("/api/v1/audiences/preview", {"rules": VIP}, format="json")

    # then
    assert listed.json()["results"] == []
    for response in (detail, changed, members, refreshed):
        assert response.status_code == 404
        assert response.json()["code"] == "audience_not_found"
    assert previewed.json() == {"count": 0, "sample": []}
    vip.refresh_from_db()
    assert (vip.name, vip.size) == ("VIP", 1)


@pytest.mark.parametrize("key", ["a%00b", "%00", "vip%0A", "v" * 65, "vip%20"])
def test_a_key_that_cannot_exist_is_not_found(vip: Audience, manager: APIClient, key: str) -> None:
    # given: PostgreSQL refuses a NUL in a query: looking the key up was a 500 there
    manager.raise_request_exception = False
    # when
    responses = [
        manager.get(f"/api/v1/audiences/{key}/"),
        manager.patch(f"/api/v1/audiences/{key}/", {"name": "Mine"}, format="json"),
        manager.get(f"/api/v1/audiences/{key}/preview"),
        manager.post(f"/api/v1/audiences/{key}/refresh"),
        manager.get(f"/api/v1/audiences/{key}/members/"),
    ]
    # then
    for response in responses:
        assert response.status_code == 404
        assert response.json() == {"code": "audience_not_found", "message": "No such audience."}
    vip.refresh_from_db()
    assert vip.name == "VIP"


# --- create, list, retrieve, update ------------------------------------------------------------


def test_create_list_retrieve_and_update(workspace: Any, manager: APIClient) -> None:
    # when
    created = create(manager, key="vip", name="VIP", rules=VIP, realtime=True)
    listed = manager.get("/api/v1/audiences/")
    detail = manager.get("/api/v1/audiences/vip/")
    changed = manager.patch(
        "/api/v1/audiences/vip/",
        {"rules": {"trait": {"key": "plan", "op": "=", "value": "gold"}}, "status": "paused"},
        format="json",
    )

    # then
    assert created.status_code == 201
    body = created.json()
    assert {k: body[k] for k in ("key", "name", "rules", "realtime", "status", "size")} == {
        "key": "vip",
        "name": "VIP",
        "rules": VIP,
        "realtime": True,
        "status": "active",
        "size": 0,
    }
    assert [a["key"] for a in listed.json()["results"]] == ["vip"]
    assert detail.json()["rules"] == VIP
    assert changed.status_code == 200
    assert changed.json()["status"] == "paused"
    saved = Audience.objects.get(workspace=workspace, key="vip")
    assert saved.rules == {"trait": {"key": "plan", "op": "=", "value": "gold"}}
    assert saved.status == "paused"


def test_changes_are_audited_with_the_token_creator(workspace: Any, owner: Any) -> None:
    # given: a token created by a steward
    issued = profile_services.api_token_create(
        workspace=workspace, name="ci", permissions=MANAGE, created_by=owner
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")

    # when
    create(client, key="vip", name="VIP", rules=VIP)

    # then
    audience = Audience.objects.get(workspace=workspace, key="vip")
    entry = get_logentry_model().objects.get_for_object(audience).get()
    assert entry.actor_id == owner.pk
    assert audience.created_by_id == owner.pk


def test_invalid_rules_answer_400_with_the_json_pointer(workspace: Any, manager: APIClient) -> None:
    # when
    response = create(manager, key="vip", name="VIP", rules=BAD_RULES)

    # then
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_rules"
    assert body["path"] == "/all/1/trait"
    assert "'value' is a required property" in body["message"]
    assert not Audience.objects.filter(workspace=workspace).exists()


def test_invalid_rules_on_update_keep_the_old_ones(vip: Audience, manager: APIClient) -> None:
    # when
    response = manager.patch("/api/v1/audiences/vip/", {"rules": BAD_RULES}, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["path"] == "/all/1/trait"
    vip.refresh_from_db()
    assert vip.rules == VIP


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"key": "vip", "name": "VIP"}, 400, "invalid"),
        ({"key": "has space", "name": "X", "rules": VIP}, 400, "invalid_audience"),
        ({"key": "long", "rules": VIP, "description": "x" * 2001}, 400, "invalid"),
        ({"key": "vip", "name": "Again", "rules": VIP}, 409, "audience_key_taken"),
        ({"key": "other", "rules": VIP, "realtime": "perhaps"}, 400, "invalid"),
    ],
)
def test_bad_input_is_refused(
    vip: Audience, manager: APIClient, body: dict[str, Any], status: int, code: str
) -> None:
    # when
    response = create(manager, **body)

    # then
    assert response.status_code == status
    assert response.json()["code"] == code
    assert list(Audience.objects.values_list("key", flat=True)) == ["vip"]


def test_a_bad_key_names_the_field_not_the_rules(manager: APIClient) -> None:
    # when
    response = create(manager, key="has space", name="X", rules=VIP)
    # then
    assert response.status_code == 400
    assert response.json()["field"] == "key"
    assert "path" not in response.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"description": "x" * 2001}, "description"), ({"status": "sleeping"}, "status")],
)
def test_a_bad_update_keeps_the_audience(
    vip: Audience, manager: APIClient, body: dict[str, Any], field: str
) -> None:
    # when
    response = manager.patch("/api/v1/audiences/vip/", body, format="json")
    # then
    assert response.status_code == 400
    assert field in json.dumps(response.json())
    vip.refresh_from_db()
    assert (vip.description, vip.status) == ("", "active")


def test_an_empty_update_is_400(vip: Audience, manager: APIClient) -> None:
    # when
    response = manager.patch("/api/v1/audiences/vip/", {}, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["code"] == "nothing_to_change"


# --- preview -----------------------------------------------------------------------------------


def test_preview_counts_and_shows_a_masked_sample(workspace: Any, manager: APIClient) -> None:
    # given
    first, second = shopper(workspace), shopper(workspace)
    shopper(workspace, plan="basic")

    # when
    response = manager.post("/api/v1/audiences/preview", {"rules": VIP}, format="json")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert {row["id"] for row in body["sample"]} == {str(first.profile_id), str(second.profile_id)}
    row = body["sample"][0]
    assert row["attributes"] == {"plan": "vip", "country": "DE"}
    assert {i["type"] for i in row["identities"]} == {"user_id", "anonymous_id", "email"}
    assert {i["value"] for i in row["identities"]} == {MASK}
    text = response.content.decode()
    for secret in (first.user_id, first.anonymous_id, first.email, second.email):
        assert secret not in text
    assert not Audience.objects.exists()


def test_preview_sample_size_is_bounded(workspace: Any, manager: APIClient) -> None:
    # given
    shopper(workspace)
    shopper(workspace)

    # when
    one = manager.post("/api/v1/audiences/preview", {"rules": VIP, "sample": 1}, format="json")
    too_many = manager.post(
        "/api/v1/audiences/preview", {"rules": VIP, "sample": 51}, format="json"
    )

    # then
    assert (one.json()["count"], len(one.json()["sample"])) == (2, 1)
    assert too_many.status_code == 400


def test_preview_of_invalid_rules_answers_the_path(manager: APIClient) -> None:
    # when
    response = manager.post("/api/v1/audiences/preview", {"rules": BAD_RULES}, format="json")

    # then
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["path"]) == ("invalid_rules", "/all/1/trait")


def _nots(depth: int) -> dict[str, Any]:
    rules: dict[str, Any] = VIP
    for _ in range(depth):
        rules = {"not": rules}
    return rules


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/audiences/preview", {}),
        ("post", "/api/v1/audiences/", {"key": "deep", "name": "Deep"}),
        ("patch", "/api/v1/audiences/vip/", {}),
    ],
)
def test_rules_nested_hundreds_deep_are_invalid_rules(
    workspace: Any,
    vip: Audience,
    manager: APIClient,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    # given: 250 "not" around a condition, some 2.5 KB: the schema check recursed past
    # Python's limit before the compiler counted groups
    manager.raise_request_exception = False
    rules = _nots(250)
    # when
    response = getattr(manager, method)(path, {**body, "rules": rules}, format="json")
    # then
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_rules",
        "message": f"nested too deeply (at most {MAX_DEPTH} groups)",
        "path": "/" + "/".join(["not"] * (MAX_NESTING + 1)),
    }
    assert list(Audience.objects.values_list("key", "rules")) == [("vip", VIP)]


def test_groups_nested_past_the_limit_name_the_group(manager: APIClient) -> None:
    # given: deeper than the compiler takes, not as deep as the nesting bound
    rules = _nots(3 * MAX_DEPTH + 1)
    # when
    response = manager.post("/api/v1/audiences/preview", {"rules": rules}, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["message"] == f"nested deeper than {MAX_DEPTH} groups"


def test_a_saved_audience_can_be_previewed(
    workspace: Any, vip: Audience, manager: APIClient
) -> None:
    # given
    shopper(workspace)

    # when
    response = manager.get("/api/v1/audiences/vip/preview?sample=0")

    # then
    assert response.json() == {"count": 1, "sample": []}


# --- refresh and members -------------------------------------------------------------------------


def test_refresh_then_members_with_their_identifiers_masked(
    workspace: Any, vip: Audience, manager: APIClient
) -> None:
    # given
    member = shopper(workspace)
    shopper(workspace, plan="basic")

    # when
    refreshed = manager.post("/api/v1/audiences/vip/refresh")
    members = manager.get("/api/v1/audiences/vip/members/")

    # then
    assert refreshed.status_code == 200
    assert refreshed.json()["entered"] == 1
    assert refreshed.json()["audience"]["size"] == 1
    rows = members.json()["results"]
    assert [(r["profile_id"], r["user_id"], r["anonymous_id"]) for r in rows] == [
        (str(member.profile_id), MASK, MASK)
    ]
    assert member.user_id not in members.content.decode()


def test_members_are_paginated(workspace: Any, vip: Audience, manager: APIClient) -> None:
    # given
    people = {str(shopper(workspace).profile_id) for _ in range(3)}
    services.audience_refresh(audience=vip)

    # when
    first = manager.get("/api/v1/audiences/vip/members/?page_size=2").json()
    second = manager.get(first["next"]).json()

    # then
    assert len(first["results"]) == 2
    assert second["next"] is None
    seen = [r["profile_id"] for r in first["results"] + second["results"]]
    assert sorted(seen) == sorted(people)


def test_revealing_members_decrypts_and_audits_each_one(
    workspace: Any, vip: Audience, revealer: APIClient
) -> None:
    # given
    member = shopper(workspace)
    services.audience_refresh(audience=vip)
    entries = get_logentry_model().objects

    # when
    response = revealer.get(
        "/api/v1/audiences/vip/members/", {"reveal": "true", "reason": "Support ticket 4711"}
    )

    # then
    row = response.json()["results"][0]
    assert (row["user_id"], row["anonymous_id"]) == (member.user_id, member.anonymous_id)
    access = entries.filter(action=entries.model.Action.ACCESS, object_pk=str(member.profile_id))
    assert access.count() == 1
    assert access.get().additional_data["reason"] == "Support ticket 4711"
    assert access.get().additional_data["fields"] == ["user_id", "anonymous_id"]
    trail = json.dumps([access.get().changes, access.get().additional_data])
    assert member.user_id not in trail and member.anonymous_id not in trail


def test_revealing_needs_reveal_pii_and_a_reason(
    workspace: Any, vip: Audience, manager: APIClient, revealer: APIClient
) -> None:
    # given
    shopper(workspace)
    services.audience_refresh(audience=vip)
    entries = get_logentry_model().objects
    before = entries.count()

    # when
    without_role = manager.get("/api/v1/audiences/vip/members/", {"reveal": "true", "reason": "x"})
    without_reason = revealer.get("/api/v1/audiences/vip/members/", {"reveal": "true"})

    # then
    assert without_role.status_code == 403
    assert without_reason.status_code == 400
    assert without_reason.json()["code"] == "reason_required"
    assert entries.count() == before
