"""With workers (GOVERNANCE_FULFIL_IN_WORKER, on when there is a broker), a steward's "fulfil"
of an export or an erasure queues it for the dsr worker instead of carrying it out in the web
request: an erasure first settles the intake buffer (draining it, waiting up to 30 s for
batches other workers hold), and an export decrypts and zips a person's whole history. The
request stays in progress with `fulfil_after` set until the worker closes it; the hourly sweep
finds a queued request whose task was lost."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import current_app
from django.test import Client, override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from governance import erasure, services, tasks
from governance.enums import RequestState
from governance.models import (
    DataSubjectRequest,
    ErasureCertificate,
    ExportArchive,
    RequestEvent,
)
from profiles.models import Profile
from tests.governance.request_helpers import frozen, in_progress, subject_profile


@pytest.fixture(autouse=True)
def _in_worker(settings: Any) -> None:
    settings.GOVERNANCE_FULFIL_IN_WORKER = True


@pytest.fixture
def person(workspace: Any) -> Profile:
    return subject_profile(workspace)


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The requests whose erasure was settled (the intake buffer drained), in order."""
    calls: list[Any] = []
    original = erasure.erasure_settled

    @contextlib.contextmanager
    def recording(*, request: DataSubjectRequest) -> Iterator[None]:
        calls.append(request.pk)
        with original(request=request):
            yield

    monkeypatch.setattr(erasure, "erasure_settled", recording)
    return calls


@pytest.fixture
def lost(
    workspace: Any, owner: Any, django_capture_on_commit_callbacks: Any
) -> Callable[[str], DataSubjectRequest]:
    """Queue a request of a type, fulfilled by the steward, whose task never runs (lost, or
    still in the broker)."""

    def queue(request_type: str) -> DataSubjectRequest:
        dsr = in_progress(workspace, actor=owner, request_type=request_type)
        with django_capture_on_commit_callbacks():
            services.request_fulfil(request=dsr, actor=owner)
        dsr.refresh_from_db()
        assert dsr.fulfil_after is not None
        return dsr

    return queue


def test_an_erasure_is_queued_and_the_worker_erases(
    workspace: Any, owner: Any, person: Profile, settled: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    # given
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    # when: the steward fulfils
    with django_capture_on_commit_callbacks() as queued:
        services.request_fulfil(request=dsr, actor=owner, note="Identity checked twice.")
    # then: nothing is erased or settled in the caller; one task waits for the commit
    dsr.refresh_from_db()
    assert dsr.state == RequestState.IN_PROGRESS
    assert dsr.fulfil_after is not None and dsr.cancel_until is None
    assert Profile.objects.filter(pk=person.pk).exists()
    assert not ErasureCertificate.objects.filter(request=dsr).exists()
    assert settled == []
    assert len(queued) == 1
    event = RequestEvent.objects.get(request=dsr, action="fulfil_queued")
    assert event.actor == owner
    assert event.note.startswith("Identity checked twice.\nQueued: a worker carries out")
    # when: the worker runs the task
    queued[0]()
    # then: settled, erased, closed, on the steward's behalf
    dsr.refresh_from_db()
    assert settled == [dsr.pk]
    assert dsr.state == RequestState.FULFILLED
    assert RequestEvent.objects.get(request=dsr, action="fulfilled").actor == owner
    assert ErasureCertificate.objects.filter(request=dsr).exists()
    assert not Profile.objects.filter(pk=person.pk).exists()


def test_an_access_request_is_queued_and_the_worker_builds_the_export(
    workspace: Any, owner: Any, person: Profile, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    dsr = in_progress(workspace, actor=owner, request_type="access")
    # when
    with django_capture_on_commit_callbacks() as queued:
        services.request_fulfil(request=dsr, actor=owner)
    # then
    dsr.refresh_from_db()
    assert (dsr.state, len(queued)) == (RequestState.IN_PROGRESS, 1)
    assert not ExportArchive.objects.filter(request=dsr).exists()
    assert "builds the export" in RequestEvent.objects.get(request=dsr, action="fulfil_queued").note
    # when
    queued[0]()
    # then
    dsr.refresh_from_db()
    assert dsr.state == RequestState.FULFILLED
    assert ExportArchive.objects.filter(request=dsr).count() == 1


def test_a_second_run_of_the_task_changes_nothing(
    workspace: Any, owner: Any, person: Profile, django_capture_on_commit_callbacks: Any
) -> None:
    # given: queued twice over (two clicks, or the sweep and the task)
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    with django_capture_on_commit_callbacks() as queued:
        services.request_fulfil(request=dsr, actor=owner)
    queued[0]()
    # when
    again = tasks.dsr_fulfil(str(dsr.pk))
    # then
    assert again == {"request": str(dsr.pk), "ok": False, "code": "illegal_transition"}
    assert ErasureCertificate.objects.filter(request=dsr).count() == 1


def test_a_request_on_legal_hold_is_refused_and_nothing_is_queued(
    workspace: Any, owner: Any, person: Profile, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    services.request_hold(request=dsr, actor=owner, reason="Litigation.")
    # when
    with (
        django_capture_on_commit_callbacks() as queued,
        pytest.raises(services.RequestOnLegalHold),
    ):
        services.request_fulfil(request=dsr, actor=owner)
    # then
    dsr.refresh_from_db()
    assert (queued, dsr.fulfil_after) == ([], None)
    assert not RequestEvent.objects.filter(request=dsr, action="fulfil_queued").exists()


def test_a_request_not_yet_approved_is_refused(
    workspace: Any, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    dsr = services.request_submit(
        workspace=workspace,
        request_type="access",
        regime="gdpr",
        contact_type="email",
        contact="someone@example.com",
    ).request
    # when
    with (
        django_capture_on_commit_callbacks() as queued,
        pytest.raises(services.IllegalTransition),
    ):
        services.request_fulfil(request=dsr, actor=owner)
    # then
    assert queued == []


def test_an_opt_out_is_still_carried_out_at_once(
    workspace: Any, owner: Any, person: Profile, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    dsr = in_progress(workspace, actor=owner, request_type="opt_out", regime="ccpa")
    # when
    with django_capture_on_commit_callbacks() as queued:
        services.request_fulfil(request=dsr, actor=owner)
    # then
    assert (dsr.state, queued) == (RequestState.FULFILLED, [])


def test_the_hourly_sweep_finds_a_queued_request_whose_task_was_lost(
    workspace: Any, owner: Any, lost: Any, person: Profile
) -> None:
    # given: queued; the task never ran
    dsr = lost("access")
    untouched = in_progress(workspace, actor=owner, request_type="access")
    # when: within the grace its task may still be waiting in the broker; after, it was lost
    with frozen(dsr.fulfil_after + services.QUEUED_GRACE - timedelta(seconds=1)):
        early = tasks.dsr_fulfilments_due.delay().get()
    with frozen(dsr.fulfil_after + services.QUEUED_GRACE):
        first = tasks.dsr_fulfilments_due.delay().get()
        second = tasks.dsr_fulfilments_due.delay().get()
    # then: the queued one is carried out, once, for the steward who queued it; the one
    # nobody fulfilled is left alone
    dsr.refresh_from_db()
    untouched.refresh_from_db()
    assert (early, first, second) == ({"enqueued": 0}, {"enqueued": 1}, {"enqueued": 0})
    assert dsr.state == RequestState.FULFILLED
    assert RequestEvent.objects.get(request=dsr, action="fulfilled").actor == owner
    assert untouched.state == RequestState.IN_PROGRESS


def test_the_api_answers_with_the_queued_request(
    workspace: Any, owner: Any, person: Profile, api_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    # given
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    # when
    with django_capture_on_commit_callbacks() as queued:
        response = api_client.post(f"/api/v1/requests/{dsr.pk}/fulfil", {}, format="json")
    # then
    body = response.json()
    assert response.status_code == 200
    assert body["state"] == "in_progress"
    assert body["fulfil_after"] is not None and body["cancel_until"] is None
    assert len(queued) == 1
    assert Profile.objects.filter(pk=person.pk).exists()


def test_another_workspace_cannot_queue_the_request(
    workspace: Any, owner: Any, person: Profile, outsider_api_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    # given
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    # when
    with django_capture_on_commit_callbacks() as queued:
        response = outsider_api_client.post(f"/api/v1/requests/{dsr.pk}/fulfil", {}, format="json")
    # then
    dsr.refresh_from_db()
    assert response.status_code == 404
    assert (queued, dsr.fulfil_after) == ([], None)


def test_the_admin_says_the_request_was_queued(
    client: Client, workspace: Any, owner: Any, person: Profile,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    # given
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    client.force_login(owner)
    # when
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(
            reverse("admin:governance_datasubjectrequest_changelist"),
            {"action": "request_fulfil", "_selected_action": [str(dsr.pk)], "apply": "1"},
            follow=True,
        )
    # then
    page = response.content.decode()
    assert "queued; a worker carries it out" in page
    assert "cancellation window" not in page
    assert len(queued) == 1
    dsr.refresh_from_db()
    assert dsr.state == RequestState.IN_PROGRESS


@override_settings(CDP_ERASURE_CANCELLATION_HOURS=24)
def test_during_the_cancellation_window_the_erasure_is_scheduled_not_queued(
    workspace: Any, owner: Any, person: Profile, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    # when
    with django_capture_on_commit_callbacks() as queued:
        services.request_fulfil(request=dsr, actor=owner)
    # then: the sweep carries it out once the window has closed
    dsr.refresh_from_db()
    assert queued == []
    assert dsr.cancel_until is not None and dsr.fulfil_after == dsr.cancel_until
    assert RequestEvent.objects.filter(request=dsr, action="fulfil_scheduled").exists()
    assert not RequestEvent.objects.filter(request=dsr, action="fulfil_queued").exists()


def test_a_second_fulfil_while_queued_queues_nothing_more(
    workspace: Any, owner: Any, person: Profile, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    with django_capture_on_commit_callbacks() as first:
        services.request_fulfil(request=dsr, actor=owner)
    queued_at = dsr.fulfil_after
    # when: a second click, or an API client's retry
    with django_capture_on_commit_callbacks() as second:
        services.request_fulfil(request=dsr, actor=owner)
    # then
    dsr.refresh_from_db()
    assert (len(first), second) == (1, [])
    assert dsr.fulfil_after == queued_at
    assert RequestEvent.objects.filter(request=dsr, action="fulfil_queued").count() == 1


def test_a_hold_calls_off_a_queued_erasure_and_the_steward_decides_again(
    workspace: Any, owner: Any, person: Profile, django_capture_on_commit_callbacks: Any
) -> None:
    # given: queued, then held before the worker ran
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    with django_capture_on_commit_callbacks() as queued:
        services.request_fulfil(request=dsr, actor=owner)
    services.request_hold(request=dsr, actor=owner, reason="Litigation.")
    # then: no longer queued, and said so
    dsr.refresh_from_db()
    assert dsr.fulfil_after is None
    assert RequestEvent.objects.get(request=dsr, action="fulfil_unqueued").actor == owner
    # when: the task enqueued before the hold runs anyway
    result = tasks.dsr_fulfil(str(dsr.pk))
    # then: refused, nothing erased, nothing more recorded
    assert result == {"request": str(dsr.pk), "ok": False, "code": "legal_hold"}
    assert Profile.objects.filter(pk=person.pk).exists()
    assert not RequestEvent.objects.filter(request=dsr, action="fulfil_refused").exists()
    # when: the hold is lifted and the steward fulfils again
    services.request_unhold(request=dsr, actor=owner, note="Settled.")
    with django_capture_on_commit_callbacks() as again:
        services.request_fulfil(request=dsr, actor=owner)
    # then
    assert len(queued) == len(again) == 1


def test_a_refusal_in_the_worker_is_recorded_and_the_request_is_no_longer_queued(
    owner: Any, lost: Any, person: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    from governance import erasure, fulfilment

    # given: queued; the erasure then refuses (a certificate exists already, say)
    dsr = lost("erasure")

    def refused(**kwargs: Any) -> Any:
        raise erasure.ErasureCertified()

    monkeypatch.setattr(fulfilment, "fulfil", refused)
    # when
    result = tasks.dsr_fulfil(str(dsr.pk))
    # then
    dsr.refresh_from_db()
    assert result["ok"] is False
    assert dsr.fulfil_after is None and dsr.state == RequestState.IN_PROGRESS
    event = RequestEvent.objects.get(request=dsr, action="fulfil_refused")
    assert event.note.startswith(f"Not carried out ({result['code']})")


def test_a_failure_in_the_worker_leaves_the_request_in_error_and_not_queued(
    owner: Any, lost: Any, person: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    from governance import fulfilment

    # given
    dsr = lost("access")

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(fulfilment, "fulfil", broken)
    # when
    with pytest.raises(RuntimeError):
        tasks.dsr_fulfil(str(dsr.pk))
    # then
    dsr.refresh_from_db()
    assert (dsr.state, dsr.fulfil_after) == (RequestState.ERROR, None)
    assert not services.requests_fulfilment_due().filter(pk=dsr.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_the_intake_buffer_settles_before_the_worker_acts_for_the_steward(
    workspace: Any, owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: settling stores other people's pending messages: an entry written then (as the
    # drain writes them) must not name the steward
    subject_profile(workspace)
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    written = settle_writes_an_entry(workspace, monkeypatch)
    # when
    result = tasks.dsr_fulfil(str(dsr.pk), owner.pk)
    # then: settled with no actor; the erasure itself is the steward's
    assert result["ok"] is True
    assert actors_of(written) == [None]
    assert RequestEvent.objects.get(request=dsr, action="fulfilled").actor == owner


@override_settings(CDP_ERASURE_CANCELLATION_HOURS=1)
def test_a_fulfil_once_the_window_has_closed_queues_the_scheduled_erasure_at_once(
    workspace: Any, owner: Any, person: Profile, django_capture_on_commit_callbacks: Any
) -> None:
    # given: scheduled for the window's end, which has passed (the hourly sweep has not run)
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    services.request_fulfil(request=dsr, actor=owner)
    dsr.refresh_from_db()
    assert dsr.cancel_until is not None and dsr.fulfil_after == dsr.cancel_until
    # when
    with (
        frozen(dsr.cancel_until + timedelta(minutes=1)),
        django_capture_on_commit_callbacks() as queued,
    ):
        services.request_fulfil(request=dsr, actor=owner)
    # then
    assert len(queued) == 1
    assert RequestEvent.objects.filter(request=dsr, action="fulfil_queued").count() == 1


def test_a_fulfil_past_the_grace_queues_a_request_whose_task_was_lost(
    workspace: Any, owner: Any, lost: Any, person: Profile, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    dsr = lost("access")
    # when: within the grace, then past it
    with django_capture_on_commit_callbacks() as within:
        services.request_fulfil(request=dsr, actor=owner)
    with (
        frozen(dsr.fulfil_after + services.QUEUED_GRACE + timedelta(seconds=1)),
        django_capture_on_commit_callbacks() as past,
    ):
        services.request_fulfil(request=dsr, actor=owner)
    # then
    assert (len(within), len(past)) == (0, 1)


def test_a_legal_hold_does_not_stop_the_sweep_from_carrying_out_an_export(
    workspace: Any, owner: Any, lost: Any, person: Profile
) -> None:
    # given: an access request queued (its task lost), then held (holds block erasures only)
    dsr = lost("access")
    services.request_hold(request=dsr, actor=owner, reason="Litigation.")
    dsr.refresh_from_db()
    assert dsr.fulfil_after is not None
    # when
    with frozen(dsr.fulfil_after + services.QUEUED_GRACE):
        outcome = tasks.dsr_fulfilments_due.delay().get()
    # then
    dsr.refresh_from_db()
    assert outcome == {"enqueued": 1}
    assert dsr.state == RequestState.FULFILLED


def test_the_sweep_queues_afresh_and_waits_the_grace_again(
    owner: Any, lost: Any, person: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: queued; the broker holds every task (none runs)
    dsr = lost("access")
    monkeypatch.setattr(tasks.dsr_fulfil, "delay", lambda *a, **k: None)
    late = dsr.fulfil_after + services.QUEUED_GRACE
    # when: the sweep runs, and again an hour later, then past another grace
    with frozen(late):
        first = tasks.dsr_fulfilments_due()
    with frozen(late + timedelta(minutes=14)):
        second = tasks.dsr_fulfilments_due()
    with frozen(late + services.QUEUED_GRACE):
        third = tasks.dsr_fulfilments_due()
    # then
    assert (first, second, third) == ({"enqueued": 1}, {"enqueued": 0}, {"enqueued": 1})


def test_the_queue_shows_which_requests_a_worker_will_carry_out(
    client: Client, owner: Any, lost: Any, person: Profile
) -> None:
    # given: one queued, one not asked for
    queued = lost("access")
    waiting = in_progress(queued.workspace, actor=owner, request_type="access")
    client.force_login(owner)
    # when
    page = client.get(reverse("admin:governance_datasubjectrequest_changelist"))
    # then
    rows = {
        str(dsr.pk)[-12:]: row
        for dsr in (queued, waiting)
        for row in page.content.decode().split("<tr")
        if str(dsr.pk)[-12:] in row
    }
    assert queued.fulfil_after is not None
    assert (
        f"queued for a worker since {queued.fulfil_after:%Y-%m-%d %H:%M} UTC"
        in rows[str(queued.pk)[-12:]]
    )
    assert "queued for a worker" not in rows[str(waiting.pk)[-12:]]


def test_the_sweep_still_runs_under_its_former_name(
    workspace: Any, owner: Any, lost: Any, person: Profile
) -> None:
    # given: a queued request whose task was lost, and a sweep queued by an earlier release
    dsr = lost("access")
    # when: the message names the task as it was called before
    with frozen(dsr.fulfil_after + services.QUEUED_GRACE):
        outcome = current_app.tasks["governance.tasks.dsr_erasures_due"].delay().get()
    # then: it is registered, and sweeps
    dsr.refresh_from_db()
    assert outcome == {"enqueued": 1}
    assert dsr.state == RequestState.FULFILLED


@pytest.mark.django_db(transaction=True)
def test_an_erasure_fulfilled_in_the_request_settles_unattributed_too(
    workspace: Any, owner: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditlog.context import set_actor

    # given: no worker, so the steward's own request settles the intake buffer (as with a
    # forced asynchronous intake and no broker); the entries settling writes are other
    # people's
    settings.GOVERNANCE_FULFIL_IN_WORKER = False
    subject_profile(workspace)
    dsr = in_progress(workspace, actor=owner, request_type="erasure")
    written = settle_writes_an_entry(workspace, monkeypatch)
    # when: within the steward's request (the admin's middleware sets the actor)
    with set_actor(owner):
        done = services.request_fulfil(request=dsr, actor=owner)
    # then: settled with no actor; the erasure itself is the steward's
    assert done.state == RequestState.FULFILLED
    assert actors_of(written) == [None]
    assert RequestEvent.objects.get(request=dsr, action="fulfilled").actor == owner


def settle_writes_an_entry(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make the intake buffer's settling write one audit entry, as the drain writes other
    people's; returns the ids of the entries written."""
    from auditlog import get_logentry_model

    from cdp.core import registry

    entries = get_logentry_model().objects
    written: list[Any] = []

    def settle(*args: Any) -> None:
        entry = entries.log_create(
            workspace, force_log=True, action=entries.model.Action.ACCESS, changes={}
        )
        written.append(entry.pk)

    handler = registry._handlers["collect.intake"]
    monkeypatch.setitem(
        registry._handlers,
        "collect.intake",
        type(handler)(**{**handler.__dict__, "settle": settle}),
    )
    return written


def actors_of(entry_ids: list[Any]) -> list[Any]:
    from auditlog import get_logentry_model

    entries = get_logentry_model().objects.filter(pk__in=entry_ids).order_by("pk")
    return list(entries.values_list("actor_id", flat=True))
