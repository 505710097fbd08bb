"""The audience builder's preview view (what the change form's script calls as rules are typed),
tested without a browser: the count and a masked sample, rule errors with their JSON pointer,
and nothing of another workspace."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.activation.api_helpers import VIP, shopper

pytestmark = pytest.mark.django_db

MASK = "••••••"
PREVIEW = "admin:activation_audience_preview"


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def preview(client: Client, body: Any, *, url: str = PREVIEW) -> Any:
    return client.post(reverse(url), json.dumps(body), content_type="application/json")


def test_the_preview_counts_and_shows_a_masked_sample(owner: Any, workspace: Any) -> None:
    # given
    first, second = shopper(workspace), shopper(workspace)
    shopper(workspace, plan="basic")

    # when
    response = preview(client_for(owner), {"workspace": workspace.pk, "rules": VIP})

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert {row["id"] for row in body["sample"]} == {str(first.profile_id), str(second.profile_id)}
    row = body["sample"][0]
    assert row["url"] == reverse("admin:profiles_profile_change", args=[row["id"]])
    assert row["attributes"] == {"plan": "vip", "country": "DE"}
    assert {i["type"] for i in row["identities"]} == {"user_id", "anonymous_id", "email"}
    assert {i["value"] for i in row["identities"]} == {MASK}
    text = response.content.decode()
    for who in (first, second):
        for value in (who.user_id, who.anonymous_id, who.email):
            assert value not in text


def test_the_lifecycle_stage_form_previews_the_same_way(owner: Any, workspace: Any) -> None:
    # given
    shopper(workspace)

    # when
    response = preview(
        client_for(owner),
        {"workspace": workspace.pk, "rules": VIP},
        url="admin:activation_lifecyclestage_preview",
    )

    # then
    assert response.json()["count"] == 1


def test_invalid_rules_answer_the_json_pointer(owner: Any, workspace: Any) -> None:
    # when
    response = preview(
        client_for(owner),
        {"workspace": workspace.pk, "rules": {"all": [VIP, {"trait": {"key": "plan", "op": "="}}]}},
    )

    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["path"] == "/all/1/trait"
    assert "'value' is a required property" in error["message"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{not json", 400),
        ({"rules": VIP}, 404),
        ({"workspace": "acme", "rules": VIP}, 404),
    ],
)
def test_bad_requests_are_refused(owner: Any, workspace: Any, body: Any, status: int) -> None:
    # given
    client = client_for(owner)
    data = body if isinstance(body, str) else json.dumps(body)

    # when
    response = client.post(reverse(PREVIEW), data, content_type="application/json")

    # then
    assert response.status_code == status
    assert "error" in response.json()


def test_get_is_not_a_preview(owner: Any) -> None:
    # when
    response = client_for(owner).get(reverse(PREVIEW))

    # then
    assert response.status_code == 405


def test_a_steward_of_another_workspace_learns_nothing(
    outsider: Any, workspace: Any, other_workspace: Any
) -> None:
    # given: acme has a match, globex has none
    shopper(workspace)

    # when
    theirs = preview(client_for(outsider), {"workspace": workspace.pk, "rules": VIP})
    own = preview(client_for(outsider), {"workspace": other_workspace.pk, "rules": VIP})

    # then
    assert theirs.status_code == 404
    assert "count" not in theirs.json()
    assert own.json() == {"count": 0, "sample": []}


def test_a_steward_without_manage_audiences_is_refused(member: Any, workspace: Any) -> None:
    # when
    response = preview(client_for(member), {"workspace": workspace.pk, "rules": VIP})

    # then
    assert response.status_code == 403


def test_the_change_form_carries_the_builder(owner: Any, workspace: Any) -> None:
    # when
    response = client_for(owner).get(reverse("admin:activation_audience_add"))

    # then
    content = response.content.decode()
    assert response.status_code == 200
    assert 'id="rules-builder"' in content
    assert f'data-preview-url="{reverse(PREVIEW)}"' in content
    assert "https://json-schema.org/draft/2020-12/schema" in content


@pytest.mark.parametrize("workspace_id", ["\u00b2", "99999999999999999999999"])
def test_a_malformed_workspace_id_is_404_not_a_server_error(owner: Any, workspace_id: str) -> None:
    # when: a superscript digit, and a number past any database integer
    response = preview(client_for(owner), {"workspace": workspace_id, "rules": VIP})

    # then
    assert response.status_code == 404
    assert response.json() == {"error": {"path": "/", "message": "Choose one of your workspaces."}}
