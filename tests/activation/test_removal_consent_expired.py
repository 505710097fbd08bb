"""A removal owed because a consent grant expired (the consent ledger's sweep records
`expired`, method `expiry`) is labelled `consent_expired`, not `consent_withdrawn`: on the
removal, in the webhook payload, in the delivery ledger and in the admin; a withdrawal keeps
its own reason."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from activation import eligibility, removals, services
from activation.enums import DeliveryAction, RemovalReason, RemovalStatus
from activation.models import Delivery, Removal
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.services import ConsentChange, Evidence, Subject
from tests.activation.sync_helpers import (
    Person,
    Receiver,
    audience,
    decide,
    enter,
    grant,
    person,
    run_sync,
    webhook,
)

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


def _granted_days_ago(workspace: Any, who: Person, days: int) -> None:
    """`who` granted advertising `days` days ago (the seeded validity is 395 days)."""
    consent_services.consent_record_many(
        workspace=workspace,
        changes=[
            ConsentChange(
                Subject("user_id", who.user_id, who.profile_id),
                {"advertising": Decision.GRANTED},
                Evidence(method=Method.BANNER, jurisdiction="DE", ip="198.51.100.7"),
            )
        ],
        now=NOW - timedelta(days=days),
    )


def _sent(workspace: Any, receiver: Receiver, capture: Any, *people: Person) -> Any:
    sync = services.sync_create(
        audience=audience(workspace),
        destination=webhook(workspace, receiver.url),
        mode="full",
        interval_minutes=0,
    )
    enter(sync.audience, *people)
    assert run_sync(sync, capture).sent == len(people)
    return sync


def test_an_expiry_owes_a_removal_labelled_consent_expired_and_a_withdrawal_keeps_its_own(
    workspace: Any, receiver: Receiver, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada granted 400 days ago, bob recently; both were sent to a webhook
    ada, bob = person(workspace), person(workspace)
    _granted_days_ago(workspace, ada, 400)
    grant(workspace, bob, "advertising")
    sync = _sent(workspace, receiver, django_capture_on_commit_callbacks, ada, bob)

    # when: ada's grant expires, bob withdraws, and the removals go out
    assert consent_services.consent_grants_expire(workspace=workspace, now=NOW) == 1
    decide(workspace, bob, advertising=Decision.WITHDRAWN)
    done = removals.removals_send_due()

    # then: each removal carries its own reason, to the receiver and in the ledger
    assert done.sent == 2
    reasons = dict(Removal.objects.values_list("profile_id", "reason"))
    assert reasons == {
        ada.profile_id: RemovalReason.CONSENT_EXPIRED,
        bob.profile_id: RemovalReason.CONSENT_WITHDRAWN,
    }
    payloads = [json.loads(hit.body) for hit in receiver.hits[1:]]
    assert sorted((p["type"], p["reason"], p["records"][0]["profileId"]) for p in payloads) == (
        sorted(
            [
                ("remove", "consent_expired", str(ada.profile_id)),
                ("remove", "consent_withdrawn", str(bob.profile_id)),
            ]
        )
    )
    ledger = dict(
        Delivery.objects.filter(action=DeliveryAction.REMOVE).values_list("profile_id", "basis")
    )
    assert ledger[ada.profile_id]["reason"] == "consent_expired"
    assert ledger[bob.profile_id]["reason"] == "consent_withdrawn"

    # and: a steward reads "Consent expired" on ada's removal
    client = Client()
    client.force_login(owner)
    removal = Removal.objects.get(profile_id=ada.profile_id)
    page = client.get(reverse("admin:activation_removal_change", args=[removal.pk]))
    assert page.status_code == 200
    assert "Consent expired" in page.content.decode()
    assert sync.destination_id == removal.destination_id


def test_a_full_run_taking_back_a_person_whose_grant_expired_says_so(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada was sent; her grant expired and the removal it owed was refused for good
    # (dead-lettered), so the destination may still hold her
    ada = person(workspace)
    _granted_days_ago(workspace, ada, 400)
    sync = _sent(workspace, receiver, django_capture_on_commit_callbacks, ada)
    consent_services.consent_grants_expire(workspace=workspace, now=NOW)
    receiver.statuses = [400]
    assert removals.removals_send_due().dead == 1

    # when: the next full run finds her still a member, no longer allowed, and held
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: it takes her back, as an expiry
    assert (run.sent, run.removed) == (0, 1)
    payload = json.loads(receiver.hits[-1].body)
    assert (payload["type"], payload["reason"]) == ("remove", "consent_expired")
    last = Removal.objects.order_by("created_at", "id").last()
    assert last is not None
    assert (last.reason, last.status) == (RemovalReason.CONSENT_EXPIRED, RemovalStatus.SENT)


def test_removal_reasons_tell_an_expiry_from_a_withdrawal(workspace: Any) -> None:
    # given: ada's grant expired, bob withdrew, cy never decided
    ada, bob, cy = person(workspace), person(workspace), person(workspace)
    _granted_days_ago(workspace, ada, 400)
    consent_services.consent_grants_expire(workspace=workspace, now=NOW)
    grant(workspace, bob, "advertising")
    decide(workspace, bob, advertising=Decision.WITHDRAWN)
    excluded = {
        ada.profile_id: "no_consent:advertising",
        bob.profile_id: "no_consent:advertising",
        cy.profile_id: "no_consent:advertising",
        "restricted-one": eligibility.RESTRICTED,
        "gone-one": eligibility.NOT_ACTIVE,
    }

    # when
    reasons = eligibility.removal_reasons(workspace=workspace, excluded=excluded)

    # then
    assert reasons == {
        ada.profile_id: RemovalReason.CONSENT_EXPIRED,
        bob.profile_id: RemovalReason.CONSENT_WITHDRAWN,
        cy.profile_id: RemovalReason.CONSENT_WITHDRAWN,
        "restricted-one": RemovalReason.RESTRICTED,
        "gone-one": RemovalReason.EXITED,
    }
