"""The delivery ledger through the management API: search by profile, destination or audience,
and "why was this person sent there?"."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from activation import services
from activation.models import Delivery
from consent import services as consent_services
from profiles.enums import WorkspaceRole
from tests.activation.api_helpers import MANAGE, VIP, token_client
from tests.activation.sync_helpers import enter, grant, person, run_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(
    workspace: Any, export_dir: Any, django_capture_on_commit_callbacks: Any
) -> dict[str, Any]:
    """Two consenting members sent to a CSV destination by one full run."""
    consent_services.purposes_ensure_defaults(workspace=workspace)
    audience = services.audience_create(workspace=workspace, key="vip", name="VIP", rules=VIP)
    destination = services.destination_create(
        workspace=workspace,
        name="Nightly CSV",
        kind="csv",
        purposes=["analytics"],
        data={"identifiers": ["user_id"], "traits": ["country"]},
        config={"prefix": "nightly"},
    )
    sync = services.sync_create(audience=audience, destination=destination, mode="full")
    first, second = person(workspace), person(workspace)
    records = {who.profile_id: grant(workspace, who, "analytics") for who in (first, second)}
    enter(audience, first, second)
    run = run_sync(sync, django_capture_on_commit_callbacks)
    assert run.sent == 2
    return {
        "audience": audience,
        "destination": destination,
        "people": (first, second),
        "records": records,
    }


@pytest.fixture
def manager(workspace: Any) -> APIClient:
    return token_client(workspace, MANAGE)


def test_search_by_profile_destination_and_audience(
    sent: dict[str, Any], manager: APIClient
) -> None:
    # given
    first, second = sent["people"]

    # when
    everything = manager.get("/api/v1/deliveries/").json()["results"]
    by_profile = manager.get("/api/v1/deliveries/", {"profile": str(first.profile_id)}).json()
    by_destination = manager.get(
        "/api/v1/deliveries/", {"destination": str(sent["destination"].pk)}
    ).json()
    by_audience = manager.get("/api/v1/deliveries/", {"audience": "vip"}).json()

    # then
    assert {row["profile_id"] for row in everything} == {
        str(first.profile_id),
        str(second.profile_id),
    }
    row = by_profile["results"][0]
    assert len(by_profile["results"]) == 1
    assert (row["action"], row["status"], row["audience"], row["destination_name"]) == (
        "add",
        "delivered",
        "vip",
        "Nightly CSV",
    )
    assert len(row["payload_sha256"]) == 64
    assert set(row["basis"]) == {"analytics"}
    assert len(by_destination["results"]) == len(by_audience["results"]) == 2
    text = str(everything)
    assert first.user_id not in text and first.email not in text


def test_explain_names_the_consent_record_that_allowed_the_send(
    sent: dict[str, Any], manager: APIClient
) -> None:
    # given
    first, _ = sent["people"]
    delivery = Delivery.objects.get(profile_id=first.profile_id)
    granted = sent["records"][first.profile_id].records[0]

    # when
    response = manager.get(f"/api/v1/deliveries/{delivery.pk}/explain")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["profile"] == str(first.profile_id)
    assert body["payload_sha256"] == delivery.payload_sha256
    assert body["audience"]["key"] == "vip"
    assert body["audience"]["rules"] == VIP
    assert body["membership"]["member_now"] is True
    assert [c["change"] for c in body["membership_history"]] == ["entered"]
    [purpose] = body["purposes"]
    assert (purpose["purpose"], purpose["basis"]) == ("analytics", str(granted.pk))
    record = purpose["consent_record"]
    assert (record["id"], record["decision"], record["method"], record["jurisdiction"]) == (
        str(granted.pk),
        "granted",
        "banner",
        "DE",
    )
    assert record["record_hash"] == granted.record_hash
    assert first.user_id not in response.content.decode()


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"profile": "not-a-uuid"}, 400, "invalid"),
        ({"destination": "0190a0a0-0000-7000-8000-000000000000"}, 404, "destination_not_found"),
        ({"audience": "nobody"}, 404, "audience_not_found"),
    ],
)
def test_bad_searches_are_refused(
    sent: dict[str, Any], manager: APIClient, query: dict[str, str], status: int, code: str
) -> None:
    # when
    response = manager.get("/api/v1/deliveries/", query)

    # then
    assert response.status_code == status
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    ("query", "unknown"),
    [
        ({"profile_id": "0190a0a0-0000-7000-8000-000000000000"}, ["profile_id"]),
        (
            {"audience": "vip", "destination_id": "x", "status": "failed"},
            ["destination_id", "status"],
        ),
    ],
)
def test_an_unknown_filter_is_refused_not_ignored(
    sent: dict[str, Any], manager: APIClient, query: dict[str, str], unknown: list[str]
) -> None:
    # given: ignored, a misspelt filter answered the whole ledger
    # when
    response = manager.get("/api/v1/deliveries/", {**query, "page_size": "10"})
    # then
    assert response.status_code == 400
    assert response.json() == {
        "code": "unknown_parameter",
        "message": f"Unknown query parameter(s): {', '.join(unknown)}.",
        "parameters": unknown,
    }


def test_another_workspace_sees_no_delivery(sent: dict[str, Any], other_workspace: Any) -> None:
    # given
    outsider = token_client(other_workspace, list(WorkspaceRole.values))
    first, _ = sent["people"]
    delivery = Delivery.objects.get(profile_id=first.profile_id)

    # when
    searched = outsider.get("/api/v1/deliveries/", {"profile": str(first.profile_id)})
    explained = outsider.get(f"/api/v1/deliveries/{delivery.pk}/explain")
    unknown = outsider.get("/api/v1/deliveries/not-a-uuid/explain")

    # then
    assert searched.json()["results"] == []
    assert explained.status_code == unknown.status_code == 404
    assert explained.json()["code"] == "delivery_not_found"


def test_the_ledger_needs_manage_audiences(
    sent: dict[str, Any], api_client_readonly: APIClient
) -> None:
    # given
    delivery = Delivery.objects.first()
    assert delivery is not None
    paths = ["/api/v1/deliveries/", f"/api/v1/deliveries/{delivery.pk}/explain"]

    # when
    anonymous = [APIClient().get(path) for path in paths]
    readonly = [api_client_readonly.get(path) for path in paths]

    # then
    assert [r.status_code for r in anonymous] == [401, 401]
    assert [r.status_code for r in readonly] == [403, 403]
