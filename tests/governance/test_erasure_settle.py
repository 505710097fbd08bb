"""An erasure settles the intake buffer before its transaction begins. Inside it, the intake
handler waited for batches other workers held while holding the erasure's locks; a worker that
needed one of them (the request's row, the audit trail, a profile) waited for the erasure in
turn, and the erasure failed after its 30 s wait. Settled first, the worker finishes and the
erasure completes."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from cdp.core import registry
from collect import handlers as collect_handlers
from collect import intake
from collect import tasks as collect_tasks
from governance import erasure, services
from governance.enums import RequestState
from governance.models import DataSubjectRequest, ErasureCertificate
from profiles import services as profile_services
from tests.governance.request_helpers import in_progress, subject_profile
from tests.profiles.ingest_helpers import msg
from tests.sessions import held_by_another_drain

pytestmark = [
    pytest.mark.skipif(
        "postgresql" not in settings.DATABASES["default"]["ENGINE"],
        reason="row and advisory locks between sessions",
    ),
    pytest.mark.django_db(transaction=True),
]


def _worker_needing_the_request_row(batch: Any, request: DataSubjectRequest) -> threading.Thread:
    """Another worker holds `batch` as a drain does; before it can commit (storing the batch)
    it needs the request's row, which the erasure's transaction locks."""

    def finish(other: psycopg.Connection[Any]) -> None:
        try:
            time.sleep(0.3)
            other.execute("SET lock_timeout = '20s'")
            other.execute(
                "SELECT id FROM governance_datasubjectrequest WHERE id = %s FOR UPDATE",
                [request.pk],
            )
            other.execute("DELETE FROM collect_intakebatch WHERE id = %s", [batch.pk])
            other.commit()
        except psycopg.errors.LockNotAvailable:
            other.rollback()

    return held_by_another_drain(batch, finish)


@override_settings(COLLECT_INTAKE_SHARDS=1)
def test_a_worker_waiting_for_the_erasure_finishes_first_and_the_erasure_completes(
    workspace: Any, owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the person's batch in the buffer, held by a worker that will need the request
    monkeypatch.setattr(collect_tasks.intake_drain, "delay", lambda: None)
    profile = subject_profile(workspace)
    source = profile_services.source_create(workspace=workspace, name="App")
    [batch] = intake.intake_store(source=source, messages=[msg(user_id="subject-1")])
    dsr = in_progress(workspace, request_type="erasure")
    worker = _worker_needing_the_request_row(batch, dsr)
    started = time.monotonic()
    try:
        # when
        done = services.request_fulfil(request=dsr, actor=owner)
    finally:
        worker.join()
    # then: no 30 s wait, nothing failed
    assert time.monotonic() - started < 15
    assert done.state == RequestState.FULFILLED
    certificate = ErasureCertificate.objects.get(request=dsr)
    [entry] = [s for s in certificate.body["stores"] if s["store"] == "collect.intake"]
    assert (entry["status"], entry["counts"]["batches_left"]) == ("erased", 0)
    assert not type(profile).objects.filter(pk=profile.pk).exists()


def test_settling_runs_outside_the_transaction_and_the_handler_uses_its_time(
    workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    subject_profile(workspace)
    dsr = in_progress(workspace, request_type="erasure")
    seen: dict[str, Any] = {}

    def settle(workspace_id: int, began: Any) -> None:
        seen["settle"] = (workspace_id, began, connection.in_atomic_block)

    def erase(profile: Any) -> Any:
        seen["erase"] = registry.erasure_began()
        return collect_handlers.erase_intake(profile)

    handler = registry._handlers["collect.intake"]
    patched = type(handler)(**{**handler.__dict__, "settle": settle, "erase": erase})
    monkeypatch.setitem(registry._handlers, "collect.intake", patched)
    # when
    with erasure.erasure_settled(request=dsr):
        erasure.erasure_run(request=dsr)
    # then
    workspace_id, began, in_transaction = seen["settle"]
    assert (workspace_id, in_transaction) == (workspace.pk, False)
    assert seen["erase"] == began
    assert registry.erasure_began() is None


def test_a_refused_erasure_settles_nothing(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a request on legal hold
    subject_profile(workspace)
    dsr = in_progress(workspace, request_type="erasure")
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(legal_hold=True)
    dsr.refresh_from_db()
    calls: list[Any] = []
    handler = registry._handlers["collect.intake"]
    patched = type(handler)(**{**handler.__dict__, "settle": lambda *a: calls.append(a)})
    monkeypatch.setitem(registry._handlers, "collect.intake", patched)
    # when
    with erasure.erasure_settled(request=dsr):
        pass
    # then
    assert calls == []


def test_the_fulfilment_task_settles_before_its_transaction(
    workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from governance import tasks

    # given
    subject_profile(workspace)
    dsr = in_progress(workspace, request_type="erasure")
    calls: list[bool] = []
    handler = registry._handlers["collect.intake"]
    patched = type(handler)(
        **{**handler.__dict__, "settle": lambda *a: calls.append(connection.in_atomic_block)}
    )
    monkeypatch.setitem(registry._handlers, "collect.intake", patched)
    # when
    result = tasks.dsr_fulfil(str(dsr.pk))
    # then
    assert (result["ok"], calls) == (True, [False])
    assert ErasureCertificate.objects.filter(request=dsr).exists()
