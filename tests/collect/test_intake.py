"""The asynchronous intake: sealed in the buffer, drained by the pipeline, retried, set aside."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from collect import intake, tasks
from collect.models import IntakeBatch
from profiles import services
from profiles.enums import DataKeyPurpose
from profiles.models import DataKey, Event, Identity

SENTINEL = "intake.sentinel@example.com"


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Web")


def post(client: Any, source: Any, batch: list[dict[str, Any]]) -> Any:
    auth = base64.b64encode(f"{source.write_key}:".encode()).decode()
    return client.post(
        "/v1/batch",
        data={"batch": batch},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {auth}",
    )


BATCH: list[dict[str, Any]] = [
    {"type": "identify", "userId": "u-9", "anonymousId": "a-9", "traits": {"email": SENTINEL}},
    {"type": "track", "anonymousId": "a-9", "event": "Viewed", "messageId": "m-2"},
]


@override_settings(COLLECT_ASYNC_INTAKE=True)
def test_a_request_is_sealed_in_the_buffer_then_drained(
    client: Any, source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # when: the request answers before the pipeline runs
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, source, BATCH)
    # then
    assert response.status_code == 200
    assert response.json() == {"success": True}
    batches = list(IntakeBatch.objects.all())  # one per intake shard the messages fall in
    assert sum(batch.message_count for batch in batches) == 2
    assert {DataKey.objects.get(pk=b.data_key_id).purpose for b in batches} == {
        DataKeyPurpose.INTAKE
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT payload FROM collect_intakebatch")
        for (payload,) in cursor.fetchall():
            assert SENTINEL.encode() not in bytes(payload)
    assert Event.objects.count() == 0
    drains = [c for c in callbacks if "collect.tasks.intake_drain" in repr(c)]
    assert len(drains) == 1
    # when: the drain queued after commit runs
    drains[0]()
    # then
    assert IntakeBatch.objects.count() == 0
    assert Event.objects.count() == 2
    assert Identity.objects.get(identifier_type="email").value == SENTINEL


@override_settings(COLLECT_ASYNC_INTAKE=True)
def test_a_failing_batch_is_retried_then_set_aside(
    client: Any, source: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    with django_capture_on_commit_callbacks(execute=False):
        post(client, source, BATCH)

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("boom with " + SENTINEL)

    monkeypatch.setattr(intake.profile_services, "ingest_messages", broken)
    # when
    for _ in range(intake.MAX_ATTEMPTS):
        assert tasks.intake_drain() == 0
    # then
    for batch in IntakeBatch.objects.all():
        assert (batch.attempts, batch.dead, batch.last_error) == (5, True, "RuntimeError")
    assert Event.objects.count() == 0
    assert tasks.intake_drain() == 0  # dead batches are not picked up again


def test_intake_keys_are_shredded_once_nothing_is_sealed_under_them(
    workspace: Any,
) -> None:
    # given: an intake key older than its lifetime and sealing nothing
    key_id = services.intake_key_current(workspace_id=workspace.pk)
    DataKey.objects.filter(pk=key_id).update(
        created_at=DataKey.objects.get(pk=key_id).created_at - services.INTAKE_KEY_LIFETIME * 2
    )
    # when
    destroyed = tasks.intake_keys_shred()
    # then
    assert destroyed == 1
    assert DataKey.objects.get(pk=key_id).wrapped is None
