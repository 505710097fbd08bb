"""A merge that makes a person's consent stricter takes them back from destinations: the
survivor keeps the most restrictive decision, and whatever received the granted side gets the
removal a withdrawal would have queued, in the merge's transaction."""

from __future__ import annotations

from typing import Any

import pytest

from activation import services
from activation.enums import RemovalReason
from activation.models import Removal
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.models import ConsentState
from consent.services import Evidence, Subject
from profiles import services as profile_services
from tests.activation.sync_helpers import (
    audience,
    enter,
    file_destination,
    grant,
    person,
    run_sync,
    source_for,
)
from tests.profiles.ingest_helpers import msg

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(
    workspace: Any, settings: Any, tmp_path: Any, django_capture_on_commit_callbacks: Any
) -> Any:
    """Ada, granted advertising, was sent to an ad-platform audience."""
    settings.CDP_EXPORT_DIR = tmp_path / "exports"
    destination = file_destination(
        workspace, "meta_custom_audiences", data={"identifiers": ["email"]}, config={"prefix": "m"}
    )
    ada = person(workspace, first_name="Ada")
    grant(workspace, ada, "advertising")
    sync = services.sync_create(
        audience=audience(workspace), destination=destination, mode="full", interval_minutes=0
    )
    enter(sync.audience, ada)
    run_sync(sync, django_capture_on_commit_callbacks)
    return ada


def _visitor(workspace: Any, **decisions: str) -> Any:
    """An anonymous visitor's profile (the same person on another device), with the choices
    made on its banner."""
    outcome = profile_services.ingest_messages(
        source=source_for(workspace), messages=[msg("page", anonymous_id="anon-ada-tablet")]
    )
    profile_id = outcome.profile_ids[0]
    consent_services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", "anon-ada-tablet", profile_id),
        decisions=decisions,
        evidence=Evidence(method=Method.BANNER, jurisdiction="DE", ip="198.51.100.7"),
    )
    return type("Visitor", (), {"profile_id": profile_id})


def _merge(workspace: Any, left: Any, right: Any) -> Any:
    return profile_services.profiles_merge(
        workspace=workspace,
        profile_ids=(left.profile_id, right.profile_id),
        rule="steward",
        actor=None,
        evidence={"note": "same person"},
    )


def test_merging_a_denial_into_a_sent_grant_queues_a_removal(workspace: Any, sent: Any) -> None:
    # given: another profile of the same person denied advertising
    other = _visitor(workspace, advertising=Decision.DENIED)
    assert not Removal.objects.exists()

    # when
    merge = _merge(workspace, sent, other)

    # then: the survivor is denied, and the destination that received Ada is owed a removal
    state = ConsentState.objects.get(profile_id=merge.survivor_id, purpose__key="advertising")
    assert (state.decision, state.needs_reconsent) == (Decision.DENIED, True)
    removal = Removal.objects.get()
    assert removal.reason == RemovalReason.CONSENT_WITHDRAWN
    assert removal.profile_id in {sent.profile_id, other.profile_id}


def test_merging_two_grants_queues_nothing(workspace: Any, sent: Any) -> None:
    # given
    other = _visitor(workspace, advertising=Decision.GRANTED)

    # when
    _merge(workspace, sent, other)

    # then
    assert not Removal.objects.exists()


def test_merging_a_denial_of_another_purpose_queues_nothing(workspace: Any, sent: Any) -> None:
    # given: the other side denied analytics only; the destination serves advertising
    other = _visitor(workspace, analytics=Decision.DENIED)

    # when
    _merge(workspace, sent, other)

    # then
    assert not Removal.objects.exists()
