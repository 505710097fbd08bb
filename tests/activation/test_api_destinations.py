"""The destination and sync management API: destinations (the secret write-only and sealed),
syncs, starting a run and following it."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from activation import services
from activation.models import Destination, Sync, SyncRun
from consent import services as consent_services
from profiles.enums import WorkspaceRole
from tests.activation.api_helpers import MANAGE, VIP, token_client
from tests.activation.sync_helpers import enter, grant, person

pytestmark = pytest.mark.django_db

SECRET = "whsec_sentinel_0123456789abcdef"
NEW_SECRET = "whsec_replaced_fedcba9876543210"
HOOK = {
    "name": "CRM hook",
    "kind": "webhook",
    "purposes": ["marketing_email"],
    "data": {"identifiers": ["user_id"], "traits": ["country"]},
    "config": {"url": "https://127.0.0.1:8443/cdp"},
    "secret": SECRET,
}
CSV = {
    "name": "Nightly CSV",
    "kind": "csv",
    "purposes": ["analytics"],
    "data": {"identifiers": ["user_id"], "traits": ["country"]},
    "config": {"prefix": "nightly"},
}


@pytest.fixture
def manager(workspace: Any, settings: Any) -> APIClient:
    # The sandbox resolves no public name: webhooks point at a loopback address (never called).
    settings.CDP_WEBHOOK_ALLOW_PRIVATE = True

    consent_services.purposes_ensure_defaults(workspace=workspace)
    return token_client(workspace, MANAGE)


@pytest.fixture
def outsider(other_workspace: Any) -> APIClient:
    consent_services.purposes_ensure_defaults(workspace=other_workspace)
    return token_client(other_workspace, list(WorkspaceRole.values))


def stored_secret(destination_id: Any) -> bytes:
    table = Destination._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secret FROM {table} WHERE id = %s", [destination_id.hex])  # noqa: S608
        row = cursor.fetchone()
        if row is None:  # PostgreSQL stores uuid natively
            cursor.execute(f"SELECT secret FROM {table} WHERE id = %s", [destination_id])  # noqa: S608
            row = cursor.fetchone()
    return bytes(row[0])


# --- destinations ------------------------------------------------------------------------------


def test_create_a_webhook_destination_with_a_write_only_secret(
    workspace: Any, manager: APIClient
) -> None:
    # when
    created = manager.post("/api/v1/destinations/", HOOK, format="json")

    # then
    assert created.status_code == 201
    body = created.json()
    assert "secret" not in body
    assert body["has_secret"] is True
    assert (body["kind"], body["purposes"], body["config"]) == (
        "webhook",
        ["marketing_email"],
        {"url": "https://127.0.0.1:8443/cdp"},
    )
    assert SECRET not in created.content.decode()
    destination = Destination.objects.get(pk=body["id"])
    assert destination.secret == SECRET
    assert SECRET.encode() not in stored_secret(destination.pk)


def test_list_and_retrieve_never_answer_the_secret(manager: APIClient) -> None:
    # given
    created = manager.post("/api/v1/destinations/", HOOK, format="json").json()

    # when
    listed = manager.get("/api/v1/destinations/")
    detail = manager.get(f"/api/v1/destinations/{created['id']}/")

    # then
    assert [d["name"] for d in listed.json()["results"]] == ["CRM hook"]
    assert detail.json()["has_secret"] is True
    for response in (listed, detail):
        assert SECRET not in response.content.decode()
        assert "secret" not in response.json().get("results", [response.json()])[0]


def test_update_a_destination_and_replace_its_secret(manager: APIClient) -> None:
    # given
    created = manager.post("/api/v1/destinations/", HOOK, format="json").json()

    # when
    changed = manager.patch(
        f"/api/v1/destinations/{created['id']}/",
        {
            "name": "CRM",
            "purposes": ["marketing_email", "analytics"],
            "config": {"url": "https://127.0.0.1:8443/v2", "batch_size": 50},
            "secret": NEW_SECRET,
            "enabled": False,
        },
        format="json",
    )

    # then
    assert changed.status_code == 200
    body = changed.json()
    assert (body["name"], body["purposes"], body["enabled"]) == (
        "CRM",
        ["analytics", "marketing_email"],
        False,
    )
    assert body["config"] == {"url": "https://127.0.0.1:8443/v2", "batch_size": 50}
    assert NEW_SECRET not in changed.content.decode()
    destination = Destination.objects.get(pk=created["id"])
    assert destination.secret == NEW_SECRET


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"purposes": ["no_such_purpose"]}, "unknown_purpose"),
        ({"secret": "short"}, "secret_required"),
        ({"config": {"url": "ftp://127.0.0.1"}}, "invalid_webhook_url"),
        ({"data": {"identifiers": ["shoe_size"]}}, "invalid_identifiers"),
        ({"kind": "csv"}, "nothing_to_change"),
        ({"min_audience_size": 2**31}, "invalid_min_size"),  # past the database's integer
    ],
)
def test_an_invalid_update_changes_nothing(
    manager: APIClient, change: dict[str, Any], code: str
) -> None:
    # given
    created = manager.post("/api/v1/destinations/", HOOK, format="json").json()

    # when
    response = manager.patch(f"/api/v1/destinations/{created['id']}/", change, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["code"] == code
    destination = Destination.objects.get(pk=created["id"])
    assert (destination.name, destination.secret, destination.config) == (
        "CRM hook",
        SECRET,
        {"url": "https://127.0.0.1:8443/cdp"},
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**HOOK, "secret": None}, 400, "invalid"),
        ({k: v for k, v in HOOK.items() if k != "secret"}, 400, "secret_required"),
        ({**HOOK, "purposes": []}, 400, "purposes_required"),
        ({**HOOK, "kind": "carrier_pigeon"}, 400, "invalid"),
        ({**CSV, "data": {"identifiers": ["user_id"], "extra": []}}, 400, "invalid_data"),
        ({**CSV, "min_audience_size": 2**31}, 400, "invalid_min_size"),
    ],
)
def test_bad_destinations_are_refused(
    workspace: Any, manager: APIClient, body: dict[str, Any], status: int, code: str
) -> None:
    # when
    response = manager.post("/api/v1/destinations/", body, format="json")

    # then
    assert response.status_code == status
    assert response.json()["code"] == code
    assert not Destination.objects.filter(workspace=workspace).exists()


def test_a_second_destination_of_the_same_name_is_409(manager: APIClient) -> None:
    # given
    manager.post("/api/v1/destinations/", CSV, format="json")

    # when
    response = manager.post("/api/v1/destinations/", CSV, format="json")

    # then
    assert response.status_code == 409
    assert response.json()["code"] == "destination_exists"


def test_another_workspace_cannot_see_or_change_a_destination(
    manager: APIClient, outsider: APIClient
) -> None:
    # given
    created = manager.post("/api/v1/destinations/", HOOK, format="json").json()

    # when
    listed = outsider.get("/api/v1/destinations/")
    detail = outsider.get(f"/api/v1/destinations/{created['id']}/")
    changed = outsider.patch(
        f"/api/v1/destinations/{created['id']}/", {"name": "Mine"}, format="json"
    )
    malformed = outsider.get("/api/v1/destinations/not-a-uuid/")

    # then
    assert listed.json()["results"] == []
    for response in (detail, changed, malformed):
        assert response.status_code == 404
        assert response.json()["code"] == "destination_not_found"
    assert Destination.objects.get(pk=created["id"]).name == "CRM hook"


def test_destinations_need_a_token_with_manage_audiences(
    workspace: Any, api_client_readonly: APIClient
) -> None:
    # when
    anonymous = APIClient().post("/api/v1/destinations/", CSV, format="json")
    readonly = api_client_readonly.post("/api/v1/destinations/", CSV, format="json")

    # then
    assert anonymous.status_code == 401
    assert readonly.status_code == 403
    assert not Destination.objects.exists()


# --- syncs and runs ------------------------------------------------------------------------------


@pytest.fixture
def csv_sync(workspace: Any, manager: APIClient, export_dir: Any) -> dict[str, Any]:
    services.audience_create(workspace=workspace, key="vip", name="VIP", rules=VIP)
    destination = manager.post("/api/v1/destinations/", CSV, format="json").json()
    created = manager.post(
        "/api/v1/syncs/",
        {"audience": "vip", "destination": destination["id"], "mode": "full"},
        format="json",
    )
    assert created.status_code == 201
    return dict(created.json())


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/audiences/",
        "/api/v1/audiences/vip/members/",
        "/api/v1/destinations/",
        "/api/v1/syncs/",
        "/api/v1/syncs/{sync}/runs/",
    ],
)
def test_a_list_refuses_a_parameter_it_does_not_know(
    csv_sync: dict[str, Any], manager: APIClient, path: str
) -> None:
    # given: these lists take no filter; ignoring one answered everything
    url = path.format(sync=csv_sync["id"])
    # when
    refused = manager.get(url, {"name": "Nightly CSV", "page_size": "1"})
    paged = manager.get(url, {"page_size": "1", "format": "json"})
    # then
    assert refused.status_code == 400
    assert refused.json() == {
        "code": "unknown_parameter",
        "message": "Unknown query parameter(s): name.",
        "parameters": ["name"],
    }
    assert paged.status_code == 200


RUN_ID = "0190a0a0-0000-7000-8000-000000000000"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/destinations/", None),
        ("get", "/api/v1/destinations/{destination}/", None),
        ("patch", "/api/v1/destinations/{destination}/", {"name": "Mine"}),
        ("get", "/api/v1/syncs/", None),
        ("post", "/api/v1/syncs/", {"audience": "vip", "destination": "{destination}"}),
        ("get", "/api/v1/syncs/{sync}/", None),
        ("post", "/api/v1/syncs/{sync}/start", {}),
        ("get", "/api/v1/syncs/{sync}/runs/", None),
        ("get", f"/api/v1/sync-runs/{RUN_ID}/", None),
    ],
)
def test_destinations_syncs_and_runs_need_a_token_with_manage_audiences(
    csv_sync: dict[str, Any],
    api_client_readonly: APIClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    # given
    ids = {"destination": csv_sync["destination"], "sync": csv_sync["id"]}
    url = path.format(**ids)
    data = {k: v.format(**ids) if isinstance(v, str) else v for k, v in (body or {}).items()}
    before = (
        list(Destination.objects.values_list("pk", "name", "updated_at")),
        list(Sync.objects.values_list("pk", flat=True)),
        SyncRun.objects.count(),
    )
    # when
    anonymous = getattr(APIClient(), method)(url, data, format="json")
    readonly = getattr(api_client_readonly, method)(url, data, format="json")
    # then
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthenticated"
    assert readonly.status_code == 403
    assert readonly.json()["code"] == "forbidden"
    after = (
        list(Destination.objects.values_list("pk", "name", "updated_at")),
        list(Sync.objects.values_list("pk", flat=True)),
        SyncRun.objects.count(),
    )
    assert after == before


def test_create_a_sync(csv_sync: dict[str, Any], manager: APIClient) -> None:
    # when
    listed = manager.get("/api/v1/syncs/")
    detail = manager.get(f"/api/v1/syncs/{csv_sync['id']}/")

    # then
    assert (csv_sync["audience"], csv_sync["mode"], csv_sync["interval_minutes"]) == (
        "vip",
        "full",
        60,
    )
    assert [s["id"] for s in listed.json()["results"]] == [csv_sync["id"]]
    assert detail.json() == csv_sync


def test_start_a_run_and_follow_it(
    workspace: Any,
    csv_sync: dict[str, Any],
    manager: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: two members, one consenting to analytics
    allowed, refused = person(workspace), person(workspace)
    grant(workspace, allowed, "analytics")
    sync = Sync.objects.get(pk=csv_sync["id"])
    enter(sync.audience, allowed, refused)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        started = manager.post(f"/api/v1/syncs/{csv_sync['id']}/start", {}, format="json")
    run_id = started.json()["id"]
    status = manager.get(f"/api/v1/sync-runs/{run_id}/")
    runs = manager.get(f"/api/v1/syncs/{csv_sync['id']}/runs/")

    # then
    assert started.status_code == 202
    body = status.json()
    assert (body["status"], body["mode"], body["sent"], body["removed"]) == (
        "succeeded",
        "full",
        1,
        0,
    )
    assert sum(body["excluded"].values()) == 1
    assert body["progress"] == 1.0
    assert [r["id"] for r in runs.json()["results"]] == [run_id]
    assert SyncRun.objects.get(pk=run_id).started_by_id is None  # the token has no creator


def test_a_disabled_destination_cannot_start_a_run(
    csv_sync: dict[str, Any], manager: APIClient
) -> None:
    # given
    Destination.objects.filter(pk=csv_sync["destination"]).update(enabled=False)

    # when
    response = manager.post(f"/api/v1/syncs/{csv_sync['id']}/start", {}, format="json")

    # then
    assert response.status_code == 409
    assert response.json()["code"] == "sync_disabled"
    assert not SyncRun.objects.exists()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"audience": "nobody", "mode": "full"}, 404, "audience_not_found"),
        ({"audience": "vip", "mode": "sometimes"}, 400, "invalid"),
        ({"audience": "vip", "interval_minutes": -5}, 400, "invalid"),
        ({"audience": "vip"}, 409, "sync_exists"),
    ],
)
def test_bad_syncs_are_refused(
    csv_sync: dict[str, Any], manager: APIClient, body: dict[str, Any], status: int, code: str
) -> None:
    # when
    response = manager.post(
        "/api/v1/syncs/", {"destination": csv_sync["destination"], **body}, format="json"
    )

    # then
    assert response.status_code == status
    assert response.json()["code"] == code
    assert Sync.objects.count() == 1


def test_another_workspace_cannot_see_start_or_use_a_sync(
    csv_sync: dict[str, Any], outsider: APIClient, other_workspace: Any
) -> None:
    # given: the outsider has an audience of its own
    services.audience_create(workspace=other_workspace, key="vip", name="VIP", rules=VIP)

    # when
    listed = outsider.get("/api/v1/syncs/")
    detail = outsider.get(f"/api/v1/syncs/{csv_sync['id']}/")
    started = outsider.post(f"/api/v1/syncs/{csv_sync['id']}/start", {}, format="json")
    runs = outsider.get(f"/api/v1/syncs/{csv_sync['id']}/runs/")
    borrowed = outsider.post(
        "/api/v1/syncs/", {"audience": "vip", "destination": csv_sync["destination"]}, format="json"
    )

    # then
    assert listed.json()["results"] == []
    for response in (detail, started, runs):
        assert response.status_code == 404
        assert response.json()["code"] == "sync_not_found"
    assert borrowed.status_code == 404
    assert borrowed.json()["code"] == "destination_not_found"
    assert not SyncRun.objects.exists()
    assert Sync.objects.count() == 1


def test_a_run_of_another_workspace_is_404(
    workspace: Any,
    csv_sync: dict[str, Any],
    manager: APIClient,
    outsider: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given
    with django_capture_on_commit_callbacks(execute=True):
        run_id = manager.post(f"/api/v1/syncs/{csv_sync['id']}/start", {}, format="json").json()[
            "id"
        ]

    # when
    response = outsider.get(f"/api/v1/sync-runs/{run_id}/")

    # then
    assert response.status_code == 404
    assert response.json()["code"] == "sync_run_not_found"


@pytest.mark.parametrize("sync_id", ["\u00b2", "99999999999999999999999", "0x1"])
def test_a_malformed_sync_id_is_404_not_a_server_error(
    csv_sync: dict[str, Any], manager: APIClient, sync_id: str
) -> None:
    # given: a sync exists; the ids are a superscript digit, one past any database integer,
    # and not a number at all

    # when
    detail = manager.get(f"/api/v1/syncs/{sync_id}/")
    started = manager.post(f"/api/v1/syncs/{sync_id}/start", {}, format="json")

    # then
    for response in (detail, started):
        assert response.status_code == 404
        assert response.json()["code"] == "sync_not_found"
    assert not SyncRun.objects.exists()
