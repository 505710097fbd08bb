"""`manage.py seed_demo` (smaller than `make demo`'s): besides the traffic, audiences and syncs,
the demo shows a merge conflict, a removal in the delivery ledger and data-subject requests in
their several states, each made through the real services; a second run adds nothing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from activation.enums import DeliveryAction, DeliveryStatus, RemovalReason, RemovalStatus
from activation.models import Delivery, Removal
from collect.demo import HOUSEHOLD
from consent.models import ConsentRecord
from governance import selectors
from governance.models import (
    DataSubjectRequest,
    ErasureCertificate,
    ExportArchive,
    GovernanceSettings,
    RequestEvent,
)
from matching.models import MatchCandidate
from profiles.models import Identity, MergeConflict, Profile

pytestmark = pytest.mark.django_db(transaction=True)

COUNTED = (
    DataSubjectRequest,
    RequestEvent,
    ExportArchive,
    ErasureCertificate,
    MergeConflict,
    Removal,
    Delivery,
    ConsentRecord,
    Profile,
    Identity,
    MatchCandidate,
)


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", people=15, events=150, stdout=out)
    return out.getvalue()


def _counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in COUNTED}


def test_the_demo_seeds_requests_a_conflict_and_a_removal_once(
    settings: Any, tmp_path: Path
) -> None:
    # given
    settings.CDP_EXPORT_DIR = tmp_path / "exports"

    # when
    first = _seed()
    after_first = _counts()
    again = _seed()

    # then: the household's shared phone did not merge two userIds
    conflict = MergeConflict.objects.get()
    assert (conflict.identifier_type, conflict.reason) == ("phone", "limit per profile of user_id")
    assert "1 merge conflict(s) recorded" in first

    # a withdrawal took a customer back from the newsletter, recorded in the ledger
    withdrawn = Removal.objects.get(
        reason=RemovalReason.CONSENT_WITHDRAWN, destination__name="Newsletter tool (CSV)"
    )
    assert withdrawn.status == RemovalStatus.SENT
    assert withdrawn.profile_id is not None
    assert Delivery.objects.filter(
        profile_id=withdrawn.profile_id,
        destination=withdrawn.destination,
        action=DeliveryAction.REMOVE,
        status=DeliveryStatus.DELIVERED,
    ).exists()
    assert "Removal: Nora Haddad withdrew marketing_email in the preference centre" in first

    # the requests, in their states
    requests = {
        (r.type, r.state): r for r in DataSubjectRequest.objects.select_related("assigned_to")
    }
    assert sorted(requests) == [
        ("access", "awaiting_verification"),
        ("access", "fulfilled"),
        ("erasure", "fulfilled"),
        ("erasure", "in_progress"),
        ("opt_out", "fulfilled"),
        ("portability", "in_progress"),
        ("rectification", "fulfilled"),
        ("restriction", "fulfilled"),
    ]
    assert ExportArchive.objects.get().request == requests[("access", "fulfilled")]
    certificate = ErasureCertificate.objects.get()
    assert certificate.request == requests[("erasure", "fulfilled")]
    # the erased customer had been sent to both destinations: each is asked to delete
    assert len(certificate.body["destinations"]) == 2
    # ...and its signature holds against the published key (the admin's check)
    assert selectors.certificate_check(certificate).valid
    scheduled = requests[("erasure", "in_progress")]
    assert scheduled.cancel_until is not None
    assert scheduled.fulfil_after == scheduled.cancel_until
    assert GovernanceSettings.objects.get().erasure_cancellation_hours == 48
    due = requests[("portability", "in_progress")]
    assert 0 <= selectors.request_days_left(request=due) <= 3
    assert due.assigned_to is not None and due.assigned_to.username == "steward"
    # the restricted customer, for stewards to try lifting it
    restricted = requests[("restriction", "fulfilled")]
    assert restricted.profile is not None and restricted.profile.restricted is True
    assert sum(line.startswith("Request: ") for line in first.splitlines()) == 8

    # a second run creates nothing and says nothing of them
    assert _counts() == after_first
    assert "Request: " not in again
    assert "Removal: " not in again
    assert "Household: " not in again
    assert HOUSEHOLD[1]["first_name"] not in again


def test_the_demo_seeds_on_a_database_whose_admin_existed_before(
    settings: Any, tmp_path: Path
) -> None:
    # given: an admin made before the first seed (so the seed makes no steward)
    settings.CDP_EXPORT_DIR = tmp_path / "exports"
    get_user_model().objects.create_superuser("admin", "admin@example.com", "x-Pass-1234")
    # when
    output = _seed()
    # then: the superuser handles the demo's requests
    assert DataSubjectRequest.objects.exists()
    assert "Requests: skipped" not in output
