"""The request API: subjects submit, verify and follow (public, per-IP limits, status token,
404 for a wrong token); ticketing systems list and act with a workspace token holding
handle_requests (403 without it, 404 for another workspace's request, nothing changed)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from governance import services
from governance.models import DataSubjectRequest, ExportArchive, RequestEvent
from profiles.models import DataKey
from tests.governance.request_helpers import (
    SUBJECT_EMAIL_NORMALIZED,
    code_from_outbox,
    in_progress,
    verified,
)
from tests.test_no_plaintext_pii import SENTINELS, scan_all_tables

URL = "/api/v1/requests/"


@pytest.fixture(autouse=True)
def _fresh_limits() -> Any:
    cache.clear()
    yield
    cache.clear()


def _submit(client: APIClient, **overrides: Any) -> Any:
    body = {"workspace": "acme", "type": "access", "regime": "gdpr", "email": "ada@example.com"}
    body.update(overrides)
    return client.post(URL, body, format="json")


def _bearer(token: str) -> Any:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_submit_verify_and_follow_a_request(
    workspace: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    client = APIClient()
    # when
    with django_capture_on_commit_callbacks(execute=True):
        submitted = _submit(client)
    body = submitted.json()
    verify = client.post(
        f"{URL}{body['id']}/verify",
        {"code": code_from_outbox()},
        format="json",
        **_bearer(body["token"]),
    )
    status = client.get(f"{URL}{body['id']}", **_bearer(body["token"]))
    # then
    assert submitted.status_code == 201
    assert set(body) == {"id", "state", "due_at", "token"}
    assert body["state"] == "awaiting_verification"
    dsr = DataSubjectRequest.objects.get(pk=body["id"])
    assert body["due_at"] == dsr.due_at.isoformat().replace("+00:00", "Z")
    assert mail.outbox[0].to == ["ada@example.com"]
    assert verify.status_code == 200
    assert verify.json() == {"state": "verified"}
    assert status.status_code == 200
    shown = status.json()
    assert shown["state"] == "verified"
    assert (shown["type"], shown["regime"]) == ("access", "gdpr")
    assert shown["export"] == {"ready": False, "expires_at": None, "download_url": None}
    assert "ada@example.com" not in status.content.decode()


def test_status_links_the_download_once_an_export_exists(workspace: Any) -> None:
    # given
    client = APIClient()
    body = _submit(client).json()
    dsr = DataSubjectRequest.objects.get(pk=body["id"])
    services.request_verify_manually(request=dsr, actor=None, note="Checked.")
    services.request_approve(request=dsr, actor=None)
    before = client.get(f"{URL}{body['id']}", **_bearer(body["token"])).json()["export"]
    services.request_transition(request=dsr, to_state="fulfilled", actor=None)
    ExportArchive.objects.create(
        request=dsr,
        archive="UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==",
        data_key_id=dsr.data_key_id,
        size_bytes=22,
        sha256="0" * 64,
        download_token_hash="1" * 64,
        expires_at=timezone.now() + timedelta(days=7),
    )
    # when
    status = client.get(f"{URL}{body['id']}", **_bearer(body["token"]))
    # then
    assert before == {"ready": False, "expires_at": None, "download_url": None}
    assert status.json()["export"]["ready"] is True
    assert status.json()["export"]["download_url"] == f"/api/v1/requests/{body['id']}/download"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"type": "telepathy"}, "type"),
        ({"regime": "pipeda"}, "regime"),
        ({"email": ""}, "email"),
        ({"phone": "+44 20 7946 0001"}, "non_field_errors"),
    ],
)
def test_submit_refuses_bad_input_and_stores_nothing(
    workspace: Any, overrides: dict[str, Any], field: str
) -> None:
    # when
    response = _submit(APIClient(), **overrides)
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert DataSubjectRequest.objects.count() == 0


def test_submit_refuses_an_unusable_contact(workspace: Any) -> None:
    # when
    response = _submit(APIClient(), email="nobody-at-example")
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_contact"
    assert DataSubjectRequest.objects.count() == 0


def test_submit_to_an_unknown_workspace_is_404(workspace: Any) -> None:
    # when
    response = _submit(APIClient(), workspace="nope")
    # then
    assert response.status_code == 404
    assert DataSubjectRequest.objects.count() == 0


def test_submissions_are_limited_per_client_address(workspace: Any) -> None:
    # given
    client = APIClient()
    for _ in range(10):
        assert _submit(client).status_code == 201
    # when
    refused = _submit(client)
    other_address = client.post(
        URL,
        {"workspace": "acme", "type": "access", "regime": "gdpr", "email": "bo@example.com"},
        format="json",
        REMOTE_ADDR="198.51.100.7",
    )
    # then
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused["Retry-After"]) > 0
    assert other_address.status_code == 201
    assert DataSubjectRequest.objects.count() == 11


def test_verify_attempts_are_limited_per_client_address(workspace: Any) -> None:
    # given
    client = APIClient()
    body = _submit(client).json()
    for _ in range(20):
        client.post(f"{URL}{body['id']}/verify", {"code": "000000"}, format="json", **_bearer("x"))
    # when
    refused = client.post(
        f"{URL}{body['id']}/verify", {"code": "000000"}, format="json", **_bearer(body["token"])
    )
    # then
    assert refused.status_code == 429
    assert DataSubjectRequest.objects.get(pk=body["id"]).verification_attempts == 0


def test_a_wrong_code_answers_400_and_the_sixth_attempt_429(workspace: Any) -> None:
    # given
    client = APIClient()
    body = _submit(client).json()
    url = f"{URL}{body['id']}/verify"
    # when
    first = client.post(url, {"code": "999999"}, format="json", **_bearer(body["token"]))
    for _ in range(4):
        client.post(url, {"code": "999999"}, format="json", **_bearer(body["token"]))
    locked = client.post(url, {"code": "999999"}, format="json", **_bearer(body["token"]))
    # then
    assert first.status_code == 400
    assert first.json()["code"] == "invalid_code"
    assert locked.status_code == 429
    assert locked.json()["code"] == "too_many_attempts"
    assert DataSubjectRequest.objects.get(pk=body["id"]).state == "awaiting_verification"


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_a_wrong_or_missing_token_is_404_like_an_unknown_request(
    workspace: Any, token: str | None
) -> None:
    # given
    client = APIClient()
    body = _submit(client).json()
    headers = _bearer(token) if token else {}
    # when
    status = client.get(f"{URL}{body['id']}", **headers)
    verify = client.post(f"{URL}{body['id']}/verify", {"code": "123456"}, format="json", **headers)
    unknown = client.get(f"{URL}01a00000-0000-7000-8000-000000000000", **_bearer(body["token"]))
    # then
    assert status.status_code == verify.status_code == unknown.status_code == 404
    assert (
        status.json()
        == unknown.json()
        == {"code": "request_not_found", "message": "No such request."}
    )
    assert DataSubjectRequest.objects.get(pk=body["id"]).verification_attempts == 0


def test_no_table_holds_the_submitted_email_in_plaintext(workspace: Any) -> None:
    # when
    response = _submit(APIClient(), email=SENTINELS["email"])
    # then
    assert response.status_code == 201
    assert DataSubjectRequest.objects.get().contact == SENTINELS["email_normalized"]
    assert scan_all_tables() == []


# --- management API ------------------------------------------------------------------------


def test_the_queue_lists_the_workspaces_requests_by_deadline(
    workspace: Any, other_workspace: Any, api_client: APIClient
) -> None:
    # given
    first = verified(workspace)
    second = verified(workspace, regime="lgpd")  # due in 15 days: sooner
    verified(other_workspace)
    # when
    listed = api_client.get(URL)
    filtered = api_client.get(URL, {"state": "awaiting_verification"})
    # then
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["results"]] == [str(second.pk), str(first.pk)]
    assert listed.json()["results"][0]["days_left"] == 15
    assert "contact" not in listed.json()["results"][0]
    assert filtered.json()["results"] == []


def test_an_unknown_queue_filter_is_refused_not_ignored(
    workspace: Any, api_client: APIClient
) -> None:
    # given: ignored, `status` (for `state`) answered the whole queue
    verified(workspace)
    # when
    response = api_client.get(URL, {"status": "fulfilled"})
    paged = api_client.get(URL, {"state": "verified", "page_size": "5", "cursor": ""})
    # then
    assert response.status_code == 400
    assert response.json() == {
        "code": "unknown_parameter",
        "message": "Unknown query parameter(s): status.",
        "parameters": ["status"],
    }
    assert paged.status_code == 200


def test_approve_deny_extend_and_fulfil_through_the_api(
    workspace: Any, api_client: APIClient
) -> None:
    # given
    one = verified(workspace)
    two = verified(workspace)
    # when
    approved = api_client.post(f"{URL}{one.pk}/approve", {"note": "OK"}, format="json")
    extended = api_client.post(f"{URL}{one.pk}/extend", {"reason": "Complex."}, format="json")
    fulfilled = api_client.post(f"{URL}{one.pk}/fulfil", {}, format="json")
    denied = api_client.post(f"{URL}{two.pk}/deny", {"reason": "Duplicate."}, format="json")
    # then
    assert approved.status_code == extended.status_code == fulfilled.status_code == 200
    assert approved.json()["state"] == "in_progress"
    assert extended.json()["extension_reason"] == "Complex."
    assert fulfilled.json()["state"] == "fulfilled"
    assert denied.status_code == 200
    assert (denied.json()["state"], denied.json()["denial_reason"]) == ("denied", "Duplicate.")
    assert list(
        RequestEvent.objects.filter(request=one, actor__isnull=True)
        .order_by("at", "id")
        .values_list("action", flat=True)
    )[-3:] == ["approved", "extended", "fulfilled"]


def test_an_illegal_step_is_409_and_changes_nothing(workspace: Any, api_client: APIClient) -> None:
    # given
    dsr = verified(workspace)
    events = RequestEvent.objects.count()
    # when
    response = api_client.post(f"{URL}{dsr.pk}/fulfil", {}, format="json")
    # then
    assert response.status_code == 409
    assert response.json()["code"] == "illegal_transition"
    assert DataSubjectRequest.objects.get(pk=dsr.pk).state == "verified"
    assert RequestEvent.objects.count() == events


def test_deny_without_a_reason_is_400(workspace: Any, api_client: APIClient) -> None:
    # given
    dsr = verified(workspace)
    # when
    response = api_client.post(f"{URL}{dsr.pk}/deny", {}, format="json")
    # then
    assert response.status_code == 400
    assert DataSubjectRequest.objects.get(pk=dsr.pk).state == "verified"


def test_a_token_without_handle_requests_is_403(
    workspace: Any, api_client_readonly: APIClient
) -> None:
    # given
    dsr = verified(workspace)
    # when
    listed = api_client_readonly.get(URL)
    approve = api_client_readonly.post(f"{URL}{dsr.pk}/approve", {}, format="json")
    # then
    assert listed.status_code == approve.status_code == 403
    assert approve.json()["code"] == "forbidden"
    assert DataSubjectRequest.objects.get(pk=dsr.pk).state == "verified"


def test_no_token_is_401_for_the_management_routes(workspace: Any) -> None:
    # given
    dsr = verified(workspace)
    # when
    response = APIClient().post(f"{URL}{dsr.pk}/approve", {}, format="json")
    # then
    assert response.status_code == 401
    assert DataSubjectRequest.objects.get(pk=dsr.pk).state == "verified"


@pytest.mark.parametrize(
    ("action", "body"),
    [("approve", {}), ("deny", {"reason": "x"}), ("extend", {"reason": "x"}), ("fulfil", {})],
)
def test_every_management_action_needs_a_token_with_handle_requests(
    workspace: Any, api_client_readonly: APIClient, action: str, body: dict[str, Any]
) -> None:
    # given: in progress, where each action is a legal step
    dsr = in_progress(workspace)
    events = RequestEvent.objects.count()
    # when
    anonymous = APIClient().post(f"{URL}{dsr.pk}/{action}", body, format="json")
    readonly = api_client_readonly.post(f"{URL}{dsr.pk}/{action}", body, format="json")
    # then
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthenticated"
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="api"'
    assert readonly.status_code == 403
    assert readonly.json()["code"] == "forbidden"
    assert DataSubjectRequest.objects.get(pk=dsr.pk).state == "in_progress"
    assert RequestEvent.objects.count() == events


def test_the_queue_without_a_token_is_401(workspace: Any) -> None:
    # given
    verified(workspace)
    # when
    response = APIClient().get(URL)
    # then
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_an_outsider_workspace_token_cannot_see_or_act_on_a_request(
    workspace: Any, outsider_api_client: APIClient
) -> None:
    # given
    dsr = in_progress(workspace)
    before = (DataSubjectRequest.objects.get(pk=dsr.pk).state, RequestEvent.objects.count())
    # when
    listed = outsider_api_client.get(URL)
    responses = [
        outsider_api_client.post(f"{URL}{dsr.pk}/{action}", body, format="json")
        for action, body in [
            ("approve", {}),
            ("deny", {"reason": "x"}),
            ("extend", {"reason": "x"}),
            ("fulfil", {}),
        ]
    ]
    # then
    assert listed.json()["results"] == []
    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    assert {r.json()["code"] for r in responses} == {"request_not_found"}
    after = (DataSubjectRequest.objects.get(pk=dsr.pk).state, RequestEvent.objects.count())
    assert after == before


def test_a_status_token_is_not_a_management_token(workspace: Any) -> None:
    # given
    client = APIClient()
    body = _submit(client).json()
    keys = DataKey.objects.count()
    # when
    response = client.post(
        f"{URL}{body['id']}/approve", {}, format="json", **_bearer(body["token"])
    )
    # then
    assert response.status_code == 401
    assert DataSubjectRequest.objects.get(pk=body["id"]).state == "awaiting_verification"
    assert DataKey.objects.count() == keys


def test_the_contact_is_never_in_a_management_answer(workspace: Any, api_client: APIClient) -> None:
    # given
    verified(workspace)
    # when
    listed = api_client.get(URL)
    # then
    assert SUBJECT_EMAIL_NORMALIZED not in listed.content.decode()
