"""Paths under /api/ that no route matches answer the API's JSON 404 (cdp.core.api.fallback),
for every method; a write to a path missing its trailing slash is refused, naming the route,
instead of being redirected (a client follows a 301 as a GET: the write silently did not
happen); a read is still redirected."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from activation import services as activation_services
from activation.models import Audience
from tests.activation.api_helpers import VIP

NOT_FOUND = {"code": "not_found", "message": "No such API endpoint."}


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", ["/api/v1/nope/", "/api/v1/nope", "/api/", "/api/v2/profiles/"])
def test_an_unknown_api_path_answers_the_json_404(method: str, path: str) -> None:
    # given: no credentials and no CSRF token, as any API client
    client = Client(enforce_csrf_checks=True)
    body = {} if method == "get" else {"data": b"{}", "content_type": "application/json"}
    # when
    response = getattr(client, method)(path, **body)
    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == NOT_FOUND


def test_a_write_without_the_trailing_slash_is_refused_naming_the_route(
    api_client: APIClient, workspace: Any
) -> None:
    # given
    activation_services.audience_create(workspace=workspace, key="vip", name="VIP", rules=VIP)
    api_client.raise_request_exception = False
    # when
    created = api_client.post(
        "/api/v1/audiences", {"key": "new", "name": "New", "rules": VIP}, format="json"
    )
    changed = api_client.patch("/api/v1/audiences/vip", {"name": "Changed"}, format="json")
    # then
    assert (created.status_code, changed.status_code) == (404, 404)
    assert created.json() == {
        "code": "not_found",
        "message": "No such API endpoint; did you mean /api/v1/audiences/?",
    }
    assert changed.json() == {
        "code": "not_found",
        "message": "No such API endpoint; did you mean /api/v1/audiences/vip/?",
    }
    assert list(Audience.objects.values_list("key", "name")) == [("vip", "VIP")]


def test_a_read_without_the_trailing_slash_is_still_redirected(api_client: APIClient) -> None:
    # when
    response = api_client.get("/api/v1/profiles?page_size=1")
    # then
    assert response.status_code == 301
    assert response["Location"] == "/api/v1/profiles/?page_size=1"


def test_a_path_with_a_slash_its_route_has_not_names_the_route(workspace: Any) -> None:
    # given
    request_id = "0190a0a0-0000-7000-8000-000000000000"
    # when
    response = Client().get(f"/api/v1/requests/{request_id}/")
    # then
    assert response.status_code == 404
    assert response.json() == {
        "code": "not_found",
        "message": f"No such API endpoint; did you mean /api/v1/requests/{request_id}?",
    }


def test_the_schema_and_the_docs_are_still_served() -> None:
    # when
    schema = Client().get("/api/schema/")
    docs = Client().get("/api/docs/")
    # then
    assert (schema.status_code, docs.status_code) == (200, 200)
