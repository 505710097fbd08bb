"""A profile merged into another left only in name: an ad platform knows people by their
hashed identifiers, which the survivor holds now, so a removal owed for the merged-away
profile would take the survivor back. None is owed while the survivor may still be sent
there."""

from __future__ import annotations

from typing import Any

import pytest

from activation import removals, services
from activation.enums import RemovalReason
from activation.models import Removal
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.services import Evidence, Subject
from profiles import services as profile_services
from tests.activation.sync_helpers import (
    Person,
    audience,
    decide,
    enter,
    file_destination,
    grant,
    person,
    run_sync,
    source_for,
)
from tests.profiles.ingest_helpers import msg

pytestmark = pytest.mark.django_db


def _visitor(workspace: Any, email: str) -> Person:
    """An anonymous visitor who gave an email and granted advertising on their banner."""
    outcome = profile_services.ingest_messages(
        source=source_for(workspace),
        messages=[msg("identify", anonymous_id="anon-ada-tablet", traits={"email": email})],
    )
    profile_id = outcome.profile_ids[0]
    consent_services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", "anon-ada-tablet", profile_id),
        decisions={"advertising": Decision.GRANTED},
        evidence=Evidence(method=Method.BANNER, jurisdiction="DE", ip="198.51.100.7"),
    )
    return Person(profile_id, "", email, "")


def test_no_removal_for_a_merged_profile_whose_survivor_is_still_allowed_on_an_ad_platform(
    workspace: Any, export_dir: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: the same person as two profiles; the newer one was sent to Google for
    # advertising, the older one to a CSV destination for analytics
    ada = person(workspace, email="ada@example.com")
    grant(workspace, ada, "advertising", "analytics")
    tablet = _visitor(workspace, "ada.tablet@example.com")
    google = file_destination(workspace, "google_customer_match", data={"identifiers": ["email"]})
    csv = file_destination(
        workspace, "csv", name="Newsletter", purposes=["analytics"], data={"identifiers": []}
    )
    for key, destination, who in (("ads", google, tablet), ("news", csv, ada)):
        synced = services.sync_create(
            audience=audience(workspace, key),
            destination=destination,
            mode="full",
            interval_minutes=0,
        )
        enter(synced.audience, who)
        assert run_sync(synced, django_capture_on_commit_callbacks).sent == 1
    # and: the two are merged (the older, ada, survives with both emails), then ada withdraws
    # analytics, which the CSV destination is owed a removal for
    merge = profile_services.profiles_merge(
        workspace=workspace,
        profile_ids=(ada.profile_id, tablet.profile_id),
        rule="steward",
        actor=None,
        evidence={"note": "same person"},
    )
    assert merge.survivor_id == ada.profile_id
    decide(workspace, ada, analytics=Decision.WITHDRAWN)
    assert list(Removal.objects.values_list("destination_id", "profile_id")) == [
        (csv.pk, ada.profile_id)
    ]

    # when: removals are owed for ada across every destination (as a sync's check right
    # after a send does)
    queued = removals.removals_owed(
        workspace_id=workspace.pk,
        profile_ids=[ada.profile_id],
        reason=RemovalReason.CONSENT_WITHDRAWN,
    )

    # then: Google, which ada still allows advertising to, is owed nothing: a removal for the
    # tablet profile would carry ada's hashed emails and take her back
    assert queued == []
    assert not Removal.objects.filter(destination=google).exists()
