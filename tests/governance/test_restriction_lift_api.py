"""POST /api/v1/requests/{id}/lift-restriction: a workspace token holding handle_requests lifts
the restriction a restriction request put on its profile (401 without a token, 403 without the
role, 404 for another workspace's request); bad input answers {"code", "message"} and changes
nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from rest_framework.test import APIClient

from governance import services
from governance.models import RequestEvent
from profiles.models import Profile
from tests.governance.request_helpers import (
    SUBJECT_EMAIL_NORMALIZED,
    in_progress,
    subject_profile,
)

pytestmark = pytest.mark.django_db
REASON = "The objection was weighed: our legitimate grounds override it."


def _url(dsr: Any) -> str:
    return f"/api/v1/requests/{dsr.pk}/lift-restriction"


def _restricted(workspace: Any, **kwargs: Any) -> tuple[Any, Any]:
    profile = subject_profile(workspace)
    dsr = in_progress(workspace, request_type="restriction", **kwargs)
    services.request_fulfil(request=dsr, actor=None)
    mail.outbox.clear()
    return profile, dsr


def _unchanged(profile: Any) -> None:
    assert Profile.objects.get(pk=profile.pk).restricted is True
    assert not RequestEvent.objects.filter(action="restriction_lifted").exists()
    assert mail.outbox == []


def test_a_steward_token_lifts_the_restriction(workspace: Any, api_client: APIClient) -> None:
    # given
    profile, dsr = _restricted(workspace)
    # when
    response = api_client.post(_url(dsr), {"reason": REASON}, format="json")
    # then
    assert response.status_code == 200, response.content
    assert response.json() == {
        "profile_id": str(profile.pk),
        "restricted": False,
        "requests": [str(dsr.pk)],
        "informed_by_email": 1,
        "informed_by_steward": 0,
    }
    assert Profile.objects.get(pk=profile.pk).restricted is False
    event = RequestEvent.objects.get(action="restriction_lifted")
    assert event.request_id == dsr.pk
    assert event.note.startswith(REASON)
    assert [m.to for m in mail.outbox] == [[SUBJECT_EMAIL_NORMALIZED]]


def test_no_token_is_401(workspace: Any) -> None:
    # given
    profile, dsr = _restricted(workspace)
    # when
    response = APIClient().post(_url(dsr), {"reason": REASON}, format="json")
    # then
    assert response.status_code == 401
    _unchanged(profile)


def test_a_token_without_handle_requests_is_403(
    workspace: Any, api_client_readonly: APIClient
) -> None:
    # given
    profile, dsr = _restricted(workspace)
    # when
    response = api_client_readonly.post(_url(dsr), {"reason": REASON}, format="json")
    # then
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    _unchanged(profile)


def test_another_workspaces_token_gets_404_and_changes_nothing(
    workspace: Any, outsider_api_client: APIClient
) -> None:
    # given
    profile, dsr = _restricted(workspace)
    # when
    response = outsider_api_client.post(_url(dsr), {"reason": REASON}, format="json")
    # then
    assert response.status_code == 404
    assert response.json()["code"] == "request_not_found"
    _unchanged(profile)


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}])
def test_a_missing_reason_is_400_reason_required(
    workspace: Any, api_client: APIClient, body: dict[str, Any]
) -> None:
    # given
    profile, dsr = _restricted(workspace)
    # when
    response = api_client.post(_url(dsr), body, format="json")
    # then
    assert response.status_code == 400
    assert response.json() == {"code": "reason_required", "message": "A reason is required."}
    _unchanged(profile)


def test_a_request_whose_restriction_was_lifted_is_409(
    workspace: Any, api_client: APIClient
) -> None:
    # given: lifted once already
    _profile, dsr = _restricted(workspace)
    assert api_client.post(_url(dsr), {"reason": REASON}, format="json").status_code == 200
    mail.outbox.clear()
    # when
    again = api_client.post(_url(dsr), {"reason": REASON}, format="json")
    # then
    assert again.status_code == 409
    assert again.json()["code"] == "restriction_already_lifted"
    assert RequestEvent.objects.filter(action="restriction_lifted").count() == 1
    assert mail.outbox == []


def test_another_type_of_request_is_400(workspace: Any, api_client: APIClient) -> None:
    # given
    subject_profile(workspace)
    access = in_progress(workspace)
    # when
    response = api_client.post(_url(access), {"reason": REASON}, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "not_a_restriction"


def test_a_denied_restriction_request_is_409_request_not_fulfilled(
    workspace: Any, api_client: APIClient
) -> None:
    # given: the profile restricted by one request; another one denied
    profile, _dsr = _restricted(workspace)
    denied = services.request_deny(
        request=in_progress(workspace, request_type="restriction"),
        actor=None,
        reason="Not the subject.",
    )
    # when
    response = api_client.post(_url(denied), {"reason": REASON}, format="json")
    # then
    assert response.status_code == 409
    assert response.json()["code"] == "request_not_fulfilled"
    _unchanged(profile)


def test_an_open_restriction_request_is_409_restriction_pending(
    workspace: Any, api_client: APIClient
) -> None:
    # given: the profile restricted by one request; another one still in progress
    profile, dsr = _restricted(workspace)
    pending = in_progress(workspace, request_type="restriction")
    # when
    response = api_client.post(_url(dsr), {"reason": REASON}, format="json")
    # then
    assert response.status_code == 409
    assert response.json()["code"] == "restriction_pending"
    assert response.json()["requests"] == [str(pending.pk)]
    _unchanged(profile)


def test_a_phone_contact_needs_subject_informed(workspace: Any, api_client: APIClient) -> None:
    # given: a restriction request by phone, its profile restricted
    profile = subject_profile(workspace)
    dsr = in_progress(
        workspace, request_type="restriction", contact_type="phone", contact="+44 20 7946 0123"
    )
    dsr.profile_id = profile.pk
    dsr.save(update_fields=["profile"])
    services.request_fulfil(request=dsr, actor=None)
    mail.outbox.clear()
    # when
    refused = api_client.post(_url(dsr), {"reason": REASON}, format="json")
    lifted = api_client.post(_url(dsr), {"reason": REASON, "subject_informed": True}, format="json")
    # then
    assert refused.status_code == 400
    assert refused.json()["code"] == "subject_not_informed"
    assert refused.json()["requests"] == [str(dsr.pk)]
    assert lifted.status_code == 200
    assert lifted.json()["informed_by_steward"] == 1
    assert mail.outbox == []
