"""The intake buffer in the admin: stewards holding manage_data see their workspaces' batches
(counts, attempts, error codes; never the sealed messages) and put batches set aside after
repeated failures back in the queue. Others see nothing of them."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from cdp.core.exceptions import InvalidInput
from collect import intake
from collect.models import IntakeBatch
from profiles import services
from profiles.models import Event
from tests.profiles.ingest_helpers import msg

CHANGELIST = reverse("admin:collect_intakebatch_changelist")
SENTINEL = "intake.admin.sentinel@example.com"


@pytest.fixture
def dead_batch(workspace: Any, monkeypatch: Any) -> IntakeBatch:
    from collect import tasks

    monkeypatch.setattr(tasks.intake_drain, "delay", lambda: None)  # set aside, not drained
    source = services.source_create(workspace=workspace, name="Web")
    message = msg("identify", user_id="u-1", message_id="m-1", traits={"email": SENTINEL})
    [batch] = intake.intake_store(source=source, messages=[message])
    IntakeBatch.objects.filter(pk=batch.pk).update(
        dead=True, attempts=intake.MAX_ATTEMPTS, last_error="OperationalError"
    )
    monkeypatch.undo()
    return batch


def test_a_data_steward_sees_the_batch_without_its_messages(
    client: Client, owner: Any, dead_batch: IntakeBatch
) -> None:
    # when
    client.force_login(owner)
    listed = client.get(CHANGELIST)
    detail = client.get(reverse("admin:collect_intakebatch_change", args=[dead_batch.pk]))
    # then
    assert listed.status_code == detail.status_code == 200
    assert [b.pk for b in listed.context["cl"].result_list] == [dead_batch.pk]
    assert b"OperationalError" in listed.content
    for page in (listed, detail):
        assert SENTINEL.encode() not in page.content
        assert b"u-1" not in page.content


def test_others_see_nothing(
    client: Client, member: Any, outsider: Any, dead_batch: IntakeBatch
) -> None:
    # a steward of the workspace without manage_data
    client.force_login(member)
    assert client.get(CHANGELIST).status_code == 403
    # a steward of another workspace
    client.force_login(outsider)
    listed = client.get(CHANGELIST)
    assert listed.status_code == 200
    assert list(listed.context["cl"].result_list) == []
    # its page answers as for a batch that does not exist
    detail = client.get(reverse("admin:collect_intakebatch_change", args=[dead_batch.pk]))
    assert (detail.status_code, detail["Location"]) == (302, reverse("admin:index"))


def test_retry_puts_the_batch_back_and_it_is_stored(
    client: Client, owner: Any, dead_batch: IntakeBatch, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    client.force_login(owner)
    # when: the retry action (the drain it queues runs eagerly here)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            CHANGELIST,
            {"action": "retry", "index": "0", "_selected_action": [str(dead_batch.pk)]},
            follow=True,
        )
    # then
    assert response.status_code == 200
    assert "1 batches put back in the queue." in [str(m) for m in response.context["messages"]]
    assert not IntakeBatch.objects.exists()
    assert Event.objects.filter(message_id="m-1").exists()


def test_retry_leaves_live_batches_alone(workspace: Any, dead_batch: IntakeBatch) -> None:
    # given: a batch that is merely waiting
    IntakeBatch.objects.filter(pk=dead_batch.pk).update(dead=False, attempts=2)
    # when
    retried = intake.intake_retry(batch_ids=[dead_batch.pk], workspace_ids=[workspace.pk])
    # then
    assert retried == 0
    assert IntakeBatch.objects.get().attempts == 2


def _discard(client: Client, batch: IntakeBatch) -> Any:
    """The action chosen on the change list."""
    return client.post(
        CHANGELIST,
        {"action": "discard", "index": "0", "_selected_action": [str(batch.pk)]},
        follow=True,
    )


def _confirm(client: Client, batch: IntakeBatch, reason: str) -> Any:
    """The confirmation page's form, as its template posts it (no `index`)."""
    return client.post(
        CHANGELIST,
        {
            "action": "discard",
            "_selected_action": [str(batch.pk)],
            "confirm": "yes",
            "reason": reason,
        },
        follow=True,
    )


def test_discard_asks_for_a_reason_then_deletes_the_batch_and_audits_it(
    client: Client, owner: Any, dead_batch: IntakeBatch
) -> None:
    from governance.models import AuditLogEntry

    # given
    client.force_login(owner)
    # when: the action, then the confirmation without a reason
    asked = _discard(client, dead_batch)
    refused = _confirm(client, dead_batch, "  ")
    # then: the confirmation page, sealed messages not shown; nothing deleted yet
    assert asked.status_code == refused.status_code == 200
    assert b"Discard the batches" in asked.content
    assert b"after failing 5 drains" in asked.content
    assert b"Please give a reason." in refused.content
    for page in (asked, refused):
        assert SENTINEL.encode() not in page.content
    assert IntakeBatch.objects.filter(pk=dead_batch.pk).exists()
    # when: confirmed with a reason
    done = _confirm(client, dead_batch, "payload damaged on disk")
    # then
    assert "1 batches set aside discarded; their messages were not stored." in [
        str(m) for m in done.context["messages"]
    ]
    assert not IntakeBatch.objects.exists()
    assert not Event.objects.exists()
    entry = AuditLogEntry.objects.get(object_pk=str(dead_batch.pk))
    assert (entry.action, entry.actor_id) == (AuditLogEntry.Action.DELETE, owner.pk)
    assert entry.additional_data["reason"] == "payload damaged on disk"
    assert (entry.additional_data["messages"], entry.additional_data["last_error"]) == (
        1,
        "OperationalError",
    )
    assert SENTINEL not in str(entry.additional_data) + str(entry.changes)


def test_discard_leaves_live_batches_alone(
    client: Client, owner: Any, dead_batch: IntakeBatch
) -> None:
    # given: a batch that is merely waiting
    IntakeBatch.objects.filter(pk=dead_batch.pk).update(dead=False, attempts=2)
    client.force_login(owner)
    # when
    response = _confirm(client, dead_batch, "clean up")
    # then
    assert "None of the selected batches is set aside: nothing to discard." in [
        str(m) for m in response.context["messages"]
    ]
    assert IntakeBatch.objects.filter(pk=dead_batch.pk).exists()
    discarded = intake.intake_discard(
        batch_ids=[dead_batch.pk], workspace_ids=[dead_batch.workspace_id], actor=owner, reason="x"
    )
    assert discarded == 0


def test_discard_needs_manage_data_in_the_batchs_workspace(
    client: Client, member: Any, outsider: Any, dead_batch: IntakeBatch
) -> None:
    # given: a steward of the workspace without manage_data
    client.force_login(member)
    # when
    refused = _confirm(client, dead_batch, "not mine")
    # then
    assert refused.status_code == 403
    # given: a steward with manage_data in another workspace
    client.force_login(outsider)
    # when
    ignored = _confirm(client, dead_batch, "not mine")
    # then: the batch is not in their change list, so nothing was selected
    assert ignored.status_code == 200
    assert list(ignored.context["cl"].result_list) == []
    assert IntakeBatch.objects.filter(pk=dead_batch.pk).exists()


def test_discard_without_a_reason_is_refused_by_the_service(
    owner: Any, dead_batch: IntakeBatch
) -> None:
    with pytest.raises(InvalidInput) as refused:
        intake.intake_discard(
            batch_ids=[dead_batch.pk],
            workspace_ids=[dead_batch.workspace_id],
            actor=owner,
            reason=" ",
        )
    assert refused.value.code == "reason_required"
    assert IntakeBatch.objects.filter(pk=dead_batch.pk).exists()


def test_the_services_leave_batches_of_other_workspaces_alone(
    owner: Any, other_workspace: Any, dead_batch: IntakeBatch
) -> None:
    # when: asked with ids of batches outside the steward's workspaces
    retried = intake.intake_retry(batch_ids=[dead_batch.pk], workspace_ids=[other_workspace.pk])
    discarded = intake.intake_discard(
        batch_ids=[dead_batch.pk], workspace_ids=[other_workspace.pk], actor=owner, reason="x"
    )
    # then
    assert (retried, discarded) == (0, 0)
    assert IntakeBatch.objects.get(pk=dead_batch.pk).dead
