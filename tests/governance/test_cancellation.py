"""The erasure cancellation window: it opens at verification (CDP_ERASURE_CANCELLATION_HOURS or
the workspace's own value); until it closes the subject may cancel (portal or API, the request
ends revoked) and nothing is erased: a steward's fulfil schedules the erasure, which the hourly
task carries out once the window has closed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from cdp.core.exceptions import InvalidInput
from governance import services, tasks
from governance.enums import RequestState
from governance.models import DataSubjectRequest, ErasureCertificate, GovernanceSettings
from profiles.models import Profile
from tests.governance.request_helpers import (
    SUBJECT_EMAIL,
    code_from_outbox,
    frozen,
    in_progress,
    subject_profile,
    submitted,
    verified,
)

WINDOW = override_settings(CDP_ERASURE_CANCELLATION_HOURS=24)


@pytest.fixture(autouse=True)
def _fresh_limits() -> Any:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def person(workspace: Any) -> Any:
    return subject_profile(workspace)


def _erasure(workspace: Any, owner: Any) -> DataSubjectRequest:
    """An erasure, verified (the window opens) and approved by a steward."""
    return in_progress(workspace, actor=owner, request_type="erasure")


# --- the window ------------------------------------------------------------------------------


@WINDOW
def test_the_window_opens_at_verification_for_erasures_only(workspace: Any) -> None:
    # when
    erasure = verified(workspace, request_type="erasure")
    access = verified(workspace, request_type="access")
    # then
    assert erasure.verified_at is not None
    assert erasure.cancel_until == erasure.verified_at + timedelta(hours=24)
    assert erasure.events.filter(action="cancellation_window").count() == 1
    assert access.cancel_until is None


@WINDOW
def test_the_workspace_value_wins_over_the_setting(workspace: Any) -> None:
    # given
    GovernanceSettings.objects.create(workspace=workspace, erasure_cancellation_hours=0)
    # when
    none = verified(workspace, request_type="erasure")
    GovernanceSettings.objects.filter(workspace=workspace).update(erasure_cancellation_hours=2)
    short = verified(workspace, request_type="erasure")
    # then
    assert none.cancel_until is None
    assert short.cancel_until == short.verified_at + timedelta(hours=2)


def test_without_a_window_an_erasure_is_fulfilled_at_once(
    workspace: Any, owner: Any, person: Profile
) -> None:
    # given
    assert settings.CDP_ERASURE_CANCELLATION_HOURS == 0
    dsr = _erasure(workspace, owner)
    # when
    services.request_fulfil(request=dsr, actor=owner)
    # then
    assert dsr.cancel_until is None
    assert dsr.state == RequestState.FULFILLED
    assert not Profile.objects.filter(pk=person.pk).exists()


# --- fulfilment waits ------------------------------------------------------------------------


@WINDOW
def test_a_fulfil_during_the_window_is_scheduled_and_done_once_it_closes(
    workspace: Any, owner: Any, person: Profile
) -> None:
    # given
    dsr = _erasure(workspace, owner)
    # when: the steward fulfils during the window
    services.request_fulfil(request=dsr, actor=owner)
    # then: nothing is erased, the erasure is scheduled for the window's end
    dsr.refresh_from_db()
    assert dsr.state == RequestState.IN_PROGRESS
    assert dsr.fulfil_after == dsr.cancel_until
    assert Profile.objects.filter(pk=person.pk).exists()
    assert not ErasureCertificate.objects.exists()
    # when: the hourly task runs just before, then just after the window closes
    assert dsr.cancel_until is not None
    with frozen(dsr.cancel_until - timedelta(seconds=1)):
        early = tasks.dsr_fulfilments_due.delay().get()
    with frozen(dsr.cancel_until):
        due = tasks.dsr_fulfilments_due.delay().get()
    # then
    assert early == {"enqueued": 0}
    assert due == {"enqueued": 1}
    dsr.refresh_from_db()
    assert dsr.state == RequestState.FULFILLED
    assert ErasureCertificate.objects.filter(request=dsr).exists()
    assert not Profile.objects.filter(pk=person.pk).exists()


@WINDOW
def test_the_task_leaves_an_erasure_on_legal_hold(
    workspace: Any, owner: Any, person: Profile
) -> None:
    # given: scheduled, then held
    dsr = _erasure(workspace, owner)
    services.request_fulfil(request=dsr, actor=owner)
    services.request_hold(request=dsr, actor=owner, reason="Litigation.")
    # when
    assert dsr.cancel_until is not None
    with frozen(dsr.cancel_until + timedelta(hours=1)):
        outcome = tasks.dsr_fulfilments_due.delay().get()
    # then
    assert outcome == {"enqueued": 0}
    assert Profile.objects.filter(pk=person.pk).exists()


def test_the_due_fulfilments_task_is_scheduled_hourly() -> None:
    assert settings.CELERY_BEAT_SCHEDULE["dsr-fulfilments-due"] == {
        "task": "governance.tasks.dsr_fulfilments_due",
        "schedule": timedelta(hours=1),
    }


# --- the subject cancels ---------------------------------------------------------------------


@WINDOW
def test_the_subject_cancels_in_the_portal_during_the_window(
    client: Client, workspace: Any, owner: Any, person: Profile,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    # given: submitted and verified in this browser, then approved and fulfilled (scheduled)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/privacy/acme/",
            {"type": "erasure", "regime": "gdpr", "contact_type": "email",
             "email": SUBJECT_EMAIL, "phone": "", "details": ""},
        )  # fmt: skip
    dsr = DataSubjectRequest.objects.get()
    client.post(f"/privacy/requests/{dsr.pk}/verify/", {"code": code_from_outbox()})
    services.request_approve(request=dsr, actor=owner)
    services.request_fulfil(request=dsr, actor=owner)
    # when
    status = client.get(f"/privacy/requests/{dsr.pk}/")
    cancelled = client.post(f"/privacy/requests/{dsr.pk}/cancel/")
    stranger = Client().post(f"/privacy/requests/{dsr.pk}/cancel/")
    # then
    html = status.content.decode()
    assert "You can cancel until" in html
    assert f'action="/privacy/requests/{dsr.pk}/cancel/"' in html
    assert cancelled.status_code == 302
    assert stranger.status_code == 404
    dsr.refresh_from_db()
    assert dsr.state == RequestState.REVOKED
    assert dsr.fulfil_after is None
    assert dsr.events.filter(action="cancelled", to_state="revoked").count() == 1
    # and the scheduled erasure never happens
    assert dsr.cancel_until is not None
    with frozen(dsr.cancel_until + timedelta(hours=1)):
        assert tasks.dsr_fulfilments_due.delay().get() == {"enqueued": 0}
    assert Profile.objects.filter(pk=person.pk).exists()


def test_the_cancel_form_is_csrf_protected(workspace: Any) -> None:
    # given
    strict = Client(enforce_csrf_checks=True)
    sub = submitted(workspace, request_type="erasure")
    session = strict.session
    session["privacy_request_tokens"] = {str(sub.request.pk): sub.status_token}
    session.save()
    # when
    forged = strict.post(f"/privacy/requests/{sub.request.pk}/cancel/")
    # then
    assert forged.status_code == 403
    sub.request.refresh_from_db()
    assert sub.request.state == RequestState.AWAITING_VERIFICATION


@WINDOW
def test_the_subject_cancels_through_the_api_until_the_window_closes(
    workspace: Any, owner: Any, person: Profile
) -> None:
    # given: two approved erasures of the same subject
    client = APIClient()
    first = submitted(workspace, request_type="erasure")
    second = submitted(workspace, request_type="erasure")
    for sub in (first, second):
        services.request_verify_manually(request=sub.request, actor=owner, note="By phone.")
        services.request_approve(request=sub.request, actor=owner)
    url = "/api/v1/requests/{}/cancel"
    # when
    status = client.get(
        f"/api/v1/requests/{first.request.pk}",
        HTTP_AUTHORIZATION=f"Bearer {first.status_token}",
    )
    wrong = client.post(
        url.format(first.request.pk), HTTP_AUTHORIZATION=f"Bearer {second.status_token}"
    )
    ok = client.post(
        url.format(first.request.pk), HTTP_AUTHORIZATION=f"Bearer {first.status_token}"
    )
    assert second.request.cancel_until is not None
    second.request.refresh_from_db()
    with frozen(second.request.cancel_until + timedelta(seconds=1)):
        late = client.post(
            url.format(second.request.pk), HTTP_AUTHORIZATION=f"Bearer {second.status_token}"
        )
    # then
    assert status.json()["cancellable"] is True
    assert status.json()["cancel_until"] is not None
    assert wrong.status_code == 404
    assert ok.status_code == 200 and ok.json() == {"state": "revoked"}
    assert late.status_code == 409 and late.json()["code"] == "cannot_cancel"
    second.request.refresh_from_db()
    assert second.request.state == RequestState.IN_PROGRESS


def test_work_in_progress_on_other_requests_cannot_be_cancelled(workspace: Any) -> None:
    # given
    dsr = in_progress(workspace, request_type="access")
    # when
    with pytest.raises(services.CancellationClosed):
        services.request_cancel(request=dsr)
    # then
    dsr.refresh_from_db()
    assert dsr.state == RequestState.IN_PROGRESS


def test_a_request_not_yet_started_can_be_cancelled(workspace: Any) -> None:
    # given
    dsr = verified(workspace, request_type="access")
    # when
    services.request_cancel(request=dsr)
    # then
    assert dsr.state == RequestState.REVOKED
    assert dsr.closed_at is not None and dsr.closed_at <= timezone.now()


@WINDOW
def test_the_management_api_shows_the_window_and_the_schedule(
    workspace: Any, owner: Any, api_client: APIClient, person: Profile
) -> None:
    # given
    dsr = _erasure(workspace, owner)
    # when
    response = api_client.post(f"/api/v1/requests/{dsr.pk}/fulfil", {}, format="json")
    # then
    body = response.json()
    assert response.status_code == 200
    assert body["state"] == "in_progress"
    assert body["cancel_until"] is not None and body["fulfil_after"] == body["cancel_until"]
    assert Profile.objects.filter(pk=person.pk).exists()


# --- the admin -------------------------------------------------------------------------------


@WINDOW
def test_the_queue_says_a_fulfil_during_the_window_was_scheduled(
    client: Client, workspace: Any, owner: Any, person: Profile
) -> None:
    # given
    dsr = _erasure(workspace, owner)
    client.force_login(owner)
    # when
    response = client.post(
        reverse("admin:governance_datasubjectrequest_changelist"),
        {"action": "request_fulfil", "_selected_action": [str(dsr.pk)], "apply": "1"},
        follow=True,
    )
    # then
    assert "the erasure is scheduled for then" in response.content.decode()
    dsr.refresh_from_db()
    assert dsr.state == RequestState.IN_PROGRESS and dsr.fulfil_after == dsr.cancel_until


@WINDOW
def test_the_service_sets_the_workspace_window_for_erasures_verified_after(
    workspace: Any, other_workspace: Any
) -> None:
    # given
    before = verified(workspace, request_type="erasure")
    # when
    services.erasure_cancellation_hours_set(workspace=workspace, hours=48)
    after = verified(workspace, request_type="erasure")
    # then
    assert before.cancel_until == before.verified_at + timedelta(hours=24)
    assert after.cancel_until == after.verified_at + timedelta(hours=48)
    assert services.erasure_cancellation_hours(workspace=other_workspace) == 24
    # and None gives the installation's default back
    services.erasure_cancellation_hours_set(workspace=workspace, hours=None)
    assert services.erasure_cancellation_hours(workspace=workspace) == 24


@pytest.mark.parametrize("hours", [-1, 721])
def test_the_service_refuses_a_window_out_of_range_and_changes_nothing(
    workspace: Any, hours: int
) -> None:
    # when
    with pytest.raises(InvalidInput) as refused:
        services.erasure_cancellation_hours_set(workspace=workspace, hours=hours)
    # then
    assert refused.value.code == "window_out_of_range"
    assert not GovernanceSettings.objects.filter(workspace=workspace).exists()


def test_a_steward_sets_the_window_of_their_workspace_only(
    client: Client, workspace: Any, other_workspace: Any, owner: Any, outsider: Any
) -> None:
    # given
    add = reverse("admin:governance_governancesettings_add")
    form = {"erasure_cancellation_hours": "48", "controller_contact": "", "dpo_contact": ""}
    # when: the outsider tries for acme, the owner sets it
    client.force_login(outsider)
    refused = client.post(add, {**form, "workspace": workspace.pk})
    client.force_login(owner)
    too_long = client.post(
        add, {**form, "workspace": workspace.pk, "erasure_cancellation_hours": "721"}
    )
    accepted = client.post(add, {**form, "workspace": workspace.pk})
    # then
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert too_long.status_code == 200
    assert accepted.status_code == 302
    assert services.erasure_cancellation_hours(workspace=workspace) == 48
    assert services.erasure_cancellation_hours(workspace=other_workspace) == 0


@WINDOW
def test_the_queue_shows_when_a_scheduled_erasure_is_carried_out(
    client: Client, workspace: Any, owner: Any, person: Profile
) -> None:
    # given
    dsr = _erasure(workspace, owner)
    services.request_fulfil(request=dsr, actor=owner)
    dsr.refresh_from_db()
    assert dsr.cancel_until is not None
    client.force_login(owner)
    # when
    page = client.get(reverse("admin:governance_datasubjectrequest_changelist"))
    # then
    assert f"scheduled for {dsr.cancel_until:%Y-%m-%d %H:%M} UTC" in page.content.decode()
