"""Lifting a restriction of processing in the admin: an action on the request queue, and a page
linked from the restricted profile; both ask for a reason, are open only to stewards handling
requests in the profile's workspace, and never show the subject's contact."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from governance import services
from governance.models import RequestEvent
from profiles.models import Profile
from tests.governance.request_helpers import in_progress, subject_profile
from tests.test_no_plaintext_pii import SENTINELS

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:governance_datasubjectrequest_changelist")
REASON = "Accuracy verified against the signed contract (ticket 4711)."


def _restricted(workspace: Any, email: str = SENTINELS["email"]) -> tuple[Any, Any]:
    profile = subject_profile(workspace, email=email)
    dsr = in_progress(workspace, request_type="restriction", contact=email)
    services.request_fulfil(request=dsr, actor=None)
    mail.outbox.clear()
    return profile, dsr


def _lift_url(profile: Any) -> str:
    return reverse("admin:governance_restriction_lift", args=[profile.pk])


def _lifted() -> list[Any]:
    return list(RequestEvent.objects.filter(action="restriction_lifted").values_list("actor_id"))


def test_the_request_action_lifts_with_a_reason(client: Client, workspace: Any, owner: Any) -> None:
    # given
    profile, dsr = _restricted(workspace)
    client.force_login(owner)
    data = {"action": "request_lift_restriction", "_selected_action": [str(dsr.pk)]}
    # when: first without a reason, then with one
    refused = client.post(CHANGELIST, {**data, "apply": "1", "reason": " "}, follow=True)
    unchanged = Profile.objects.get(pk=profile.pk).restricted
    done = client.post(CHANGELIST, {**data, "apply": "1", "reason": REASON}, follow=True)
    # then
    assert "A reason is required." in refused.content.decode()
    assert unchanged is True
    assert done.status_code == 200
    assert Profile.objects.get(pk=profile.pk).restricted is False
    assert _lifted() == [(owner.pk,)]
    assert [m.to for m in mail.outbox] == [[SENTINELS["email_normalized"]]]


def test_the_restricted_profile_links_to_the_lift_page_for_stewards_only(
    client: Client, workspace: Any, owner: Any, member: Any
) -> None:
    # given
    profile, _dsr = _restricted(workspace)
    page = reverse("admin:profiles_profile_change", args=[profile.pk])
    # when
    client.force_login(owner)
    as_owner = client.get(page)
    client.force_login(member)
    as_member = client.get(page)
    # then
    assert as_owner.status_code == as_member.status_code == 200
    assert _lift_url(profile) in as_owner.content.decode()
    assert _lift_url(profile) not in as_member.content.decode()


def test_the_lift_page_shows_whom_it_informs_and_lifts_with_a_reason(
    client: Client, workspace: Any, owner: Any
) -> None:
    # given
    profile, dsr = _restricted(workspace)
    client.force_login(owner)
    # when
    shown = client.get(_lift_url(profile))
    refused = client.post(_lift_url(profile), {"reason": ""})
    done = client.post(_lift_url(profile), {"reason": REASON})
    # then
    html = shown.content.decode()
    assert shown.status_code == 200
    assert str(dsr.pk) in html
    assert SENTINELS["email_normalized"] not in html.lower()
    assert refused.status_code == 200
    assert "This field is required." in refused.content.decode()
    assert done.status_code == 302
    assert done["Location"] == reverse("admin:profiles_profile_change", args=[profile.pk])
    assert Profile.objects.get(pk=profile.pk).restricted is False
    assert _lifted() == [(owner.pk,)]


def test_the_lift_page_reports_a_profile_not_restricted(
    client: Client, workspace: Any, owner: Any
) -> None:
    # given
    profile = subject_profile(workspace)
    client.force_login(owner)
    # when
    response = client.post(_lift_url(profile), {"reason": REASON})
    # then
    assert response.status_code == 200
    assert "is not restricted" in response.content.decode()
    assert _lifted() == []


def test_an_outsider_gets_404_and_a_member_without_handle_requests_403(
    client: Client, workspace: Any, outsider: Any, member: Any
) -> None:
    # given
    profile, _dsr = _restricted(workspace)
    # when
    client.force_login(outsider)
    by_outsider = client.post(_lift_url(profile), {"reason": REASON})
    client.force_login(member)
    by_member = client.post(_lift_url(profile), {"reason": REASON})
    # then
    assert by_outsider.status_code == 404
    assert by_member.status_code == 403
    assert Profile.objects.get(pk=profile.pk).restricted is True
    assert _lifted() == []
    assert mail.outbox == []
