"""The stewards' request queue in the admin: scoped to workspaces where the steward handles
requests, soonest deadline first, overdue highlighted, contact never shown; every action calls
its service and leaves a RequestEvent and an audit entry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import get_perms

from governance.models import DataSubjectRequest, RequestEvent
from tests.governance.request_helpers import frozen, in_progress, verified
from tests.test_no_plaintext_pii import SENTINELS

CHANGELIST = reverse("admin:governance_datasubjectrequest_changelist")
LogEntry = get_logentry_model()


def _login(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def _act(client: Client, action: str, requests: list[Any], **fields: Any) -> Any:
    data = {
        "action": f"request_{action}",
        "_selected_action": [str(r.pk) for r in requests],
        "apply": "1",
        **fields,
    }
    return client.post(CHANGELIST, data, follow=True)


def test_the_queue_shows_only_the_stewards_workspaces_soonest_first(
    client: Client, workspace: Any, other_workspace: Any, owner: Any
) -> None:
    # given
    later = verified(workspace)
    sooner = verified(workspace, regime="lgpd")
    elsewhere = verified(other_workspace)
    # when
    response = _login(client, owner).get(CHANGELIST)
    # then
    assert response.status_code == 200
    shown = [obj.pk for obj in response.context["cl"].result_list]
    assert shown == [sooner.pk, later.pk]
    assert elsewhere.pk not in shown


def test_a_steward_without_handle_requests_does_not_see_the_queue(
    client: Client, workspace: Any, member: Any
) -> None:
    # given
    verified(workspace)
    # when
    response = _login(client, member).get(CHANGELIST)
    # then
    assert response.status_code == 403


def test_an_outsider_can_neither_see_nor_act_on_a_request(
    client: Client, workspace: Any, outsider: Any
) -> None:
    # given
    dsr = verified(workspace)
    events = RequestEvent.objects.count()
    _login(client, outsider)
    # when
    listed = client.get(CHANGELIST)
    change = client.get(reverse("admin:governance_datasubjectrequest_change", args=[dsr.pk]))
    _act(client, "deny", [dsr], reason="Not ours.")
    # then
    assert [obj.pk for obj in listed.context["cl"].result_list] == []
    assert change.status_code == 302  # the admin's "does not exist" redirect
    assert DataSubjectRequest.objects.get(pk=dsr.pk).state == "verified"
    assert RequestEvent.objects.count() == events


def test_the_list_masks_the_contact(client: Client, workspace: Any, owner: Any) -> None:
    # given
    verified(workspace, contact=SENTINELS["email"])
    # when
    response = _login(client, owner).get(CHANGELIST)
    # then
    html = response.content.decode().lower()
    assert "email •••• (sealed)" in html
    assert SENTINELS["email_normalized"] not in html
    assert "sentinel.person" not in html


def test_the_change_page_shows_the_history_but_not_the_contact(
    client: Client, workspace: Any, owner: Any
) -> None:
    # given
    dsr = verified(workspace, contact=SENTINELS["email"])
    # when
    response = _login(client, owner).get(
        reverse("admin:governance_datasubjectrequest_change", args=[dsr.pk])
    )
    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert "Checked by phone." in html  # the manual verification's note, in the history
    assert SENTINELS["email_normalized"] not in html.lower()


def test_overdue_requests_are_highlighted(client: Client, workspace: Any, owner: Any) -> None:
    # given: an LGPD request (15 days) received 20 days ago, due 5 days ago
    with frozen(timezone.now() - timedelta(days=20)):
        verified(workspace, regime="lgpd")
    # when
    response = _login(client, owner).get(CHANGELIST)
    # then
    assert '<strong class="dsr-overdue" style="color:#ba2121">overdue by 5 day(s)</strong>' in (
        response.content.decode()
    )


def test_approve_and_fulfil_from_the_admin_are_recorded_and_audited(
    client: Client, workspace: Any, owner: Any
) -> None:
    # given
    dsr = verified(workspace)
    audited = LogEntry.objects.count()
    _login(client, owner)
    # when
    _act(client, "approve", [dsr], reason="")
    _act(client, "fulfil", [dsr], reason="Done.")
    # then
    dsr.refresh_from_db()
    assert dsr.state == "fulfilled"
    events = RequestEvent.objects.filter(request=dsr, action__in=["approved", "fulfilled"])
    assert [(e.action, e.actor) for e in events] == [("approved", owner), ("fulfilled", owner)]
    new_entries = LogEntry.objects.filter(pk__gt=0).order_by("-id")[
        : LogEntry.objects.count() - audited
    ]
    assert {e.actor for e in new_entries} == {owner}
    assert LogEntry.objects.count() - audited >= 4  # two state changes, two events


@pytest.mark.parametrize("action", ["deny", "extend", "hold", "note"])
def test_actions_that_need_a_reason_ask_for_one_first(
    client: Client, workspace: Any, owner: Any, action: str
) -> None:
    # given
    dsr = verified(workspace)
    events = RequestEvent.objects.count()
    # when
    response = _act(_login(client, owner), action, [dsr], reason="")
    # then
    assert response.status_code == 200
    assert "A reason is required." in response.content.decode()
    assert RequestEvent.objects.count() == events


def test_deny_extend_hold_and_note_with_reasons(client: Client, workspace: Any, owner: Any) -> None:
    # given
    one = verified(workspace)
    two = verified(workspace)
    _login(client, owner)
    # when
    _act(client, "extend", [one], reason="Complex request.")
    _act(client, "hold", [one], reason="Litigation.")
    _act(client, "note", [one], reason="Asked IT.")
    _act(client, "unhold", [one], reason="")
    _act(client, "deny", [two], reason="Duplicate request.")
    # then
    one.refresh_from_db()
    two.refresh_from_db()
    assert one.extended_due_at is not None
    assert one.extension_reason == "Complex request."
    assert one.legal_hold is False
    assert list(RequestEvent.objects.filter(request=one).values_list("action", flat=True))[-4:] == [
        "extended",
        "hold",
        "note",
        "unhold",
    ]
    assert (two.state, two.denial_reason) == ("denied", "Duplicate request.")


def test_a_refused_action_reports_the_error_and_changes_nothing(
    client: Client, workspace: Any, owner: Any
) -> None:
    # given
    dsr = verified(workspace)
    events = RequestEvent.objects.count()
    # when
    response = _act(_login(client, owner), "fulfil", [dsr], reason="")
    # then
    assert "cannot be fulfilled" in response.content.decode()
    assert DataSubjectRequest.objects.get(pk=dsr.pk).state == "verified"
    assert RequestEvent.objects.count() == events


def test_assign_to_a_steward_grants_the_object_permission(
    client: Client, workspace: Any, owner: Any
) -> None:
    # given
    dsr = in_progress(workspace)
    # when
    _act(_login(client, owner), "assign", [dsr], assignee=str(owner.pk))
    # then
    dsr.refresh_from_db()
    assert dsr.assigned_to == owner
    assert get_perms(owner, dsr) == ["handle_request"]
    assert RequestEvent.objects.filter(request=dsr, action="assigned", actor=owner).count() == 1
