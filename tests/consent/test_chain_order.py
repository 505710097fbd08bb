"""Two writers of one person's consent at once (an ingestion drain applying the banner
preferences an event carries, and the consent API or the preference centre): the drain
decides on the state as it is once it holds the ledger locks, so a refusal committed while it
waited is not overturned by an older event; and a record is never timed before the head of
its subject's chain, whose order is verified by time. And the gate's basis is the record
behind a state only when that record is the allowing decision."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from cdp.core.crypto import blind_index
from collect.consent_signals import consent_signals_apply
from consent import selectors, services
from consent.enums import Decision, Method
from consent.models import ConsentState, Purpose
from consent.services import Evidence, Subject
from profiles import services as profile_services
from tests.profiles.ingest_helpers import msg

PREFERENCES = {"consent": {"categoryPreferences": {"Advertising": True, "Analytics": True}}}


@pytest.fixture
def source(workspace: Any) -> Any:
    services.purposes_ensure_defaults(workspace=workspace)
    return profile_services.source_create(workspace=workspace, name="Web")


def _profile(source: Any, anonymous_id: str) -> Any:
    outcome = profile_services.ingest_messages(
        source=source, messages=[msg(anonymous_id=anonymous_id)]
    )
    return outcome.profile_ids[0]


def _chain_holds(workspace: Any, anonymous_id: str) -> bool:
    index = blind_index(workspace.pk, "anonymous_id", anonymous_id)
    check = selectors.consent_chain_verify(workspace=workspace, subject_index=index)
    return check.broken_record is None


def test_a_refusal_committed_while_the_drain_waits_is_not_overturned(
    source: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: an event from the page, sent before the person refused advertising
    workspace = source.workspace
    pid = _profile(source, "anon-1")
    sent = timezone.now()
    message = dataclasses.replace(
        msg(anonymous_id="anon-1", context=PREFERENCES), timestamp=sent, received_at=sent
    )
    real_lock = services._lock_subjects
    concurrent: list[Any] = []

    def refusal_commits_while_waiting(*args: Any) -> None:
        # what POST /v1/consent commits while the drain waits for the ledger lock
        if not concurrent:
            concurrent.append(True)  # once: the refusal's own recording takes the lock too
            services.consent_record(
                workspace=workspace,
                subject=Subject("anonymous_id", "anon-1", pid),
                decisions={"advertising": Decision.DENIED},
                evidence=Evidence(method=Method.PREFERENCE_CENTRE),
            )
        real_lock(*args)

    monkeypatch.setattr(services, "_lock_subjects", refusal_commits_while_waiting)
    # when
    consent_signals_apply(source=source, messages=[message], profile_ids=[pid])
    # then: the newer refusal stands, the older event's other choice is recorded, and the
    # chain verifies
    assert concurrent
    states = dict(
        ConsentState.objects.filter(profile_id=pid).values_list("purpose__key", "decision")
    )
    assert states["advertising"] == Decision.DENIED
    assert states["analytics"] == Decision.GRANTED
    assert _chain_holds(workspace, "anon-1")


def test_a_record_is_never_timed_before_its_chain_head(source: Any) -> None:
    # given: a record, then another from a writer whose clock is 5 ms behind the first's
    workspace = source.workspace
    pid = _profile(source, "anon-2")
    subject = Subject("anonymous_id", "anon-2", pid)
    first = services.consent_record(
        workspace=workspace,
        subject=subject,
        decisions={"analytics": Decision.GRANTED},
        evidence=Evidence(method=Method.BANNER),
    )
    # when
    later = services.consent_record_many(
        workspace=workspace,
        changes=[
            services.ConsentChange(
                subject=subject,
                decisions={"analytics": Decision.DENIED},
                evidence=Evidence(method=Method.API),
            )
        ],
        now=first.records[0].server_time - timedelta(milliseconds=5),
    )
    # then
    assert later[0].records[0].server_time > first.records[0].server_time
    assert _chain_holds(workspace, "anon-2")
    state = ConsentState.objects.get(profile_id=pid, purpose__key="analytics")
    assert state.decision == Decision.DENIED


def test_a_state_edited_outside_the_services_grants_no_basis(source: Any) -> None:
    # given: a refusal, then its state turned to granted by hand (a raw UPDATE, which the
    # chain check of the records does not see)
    workspace = source.workspace
    pid = _profile(source, "anon-3")
    services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", "anon-3", pid),
        decisions={"advertising": Decision.DENIED},
        evidence=Evidence(method=Method.PREFERENCE_CENTRE),
    )
    ConsentState.objects.filter(profile_id=pid).update(decision=Decision.GRANTED)
    advertising = Purpose.objects.get(workspace=workspace, key="advertising")
    # when
    basis = selectors.consent_gate_basis(
        workspace=workspace, purpose=advertising, profile_ids=[pid]
    )
    # then: activation, which sends only profiles with a basis, does not send them
    assert basis == {}
