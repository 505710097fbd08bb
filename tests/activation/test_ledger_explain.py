"""Reading the delivery ledger: the search narrows by profile, destination and audience within
a workspace, and "why was this person sent?" names the audience, the membership history, the
consent record with its time and evidence (or the legal basis), and the payload hash."""

from __future__ import annotations

from typing import Any

import pytest

from activation import selectors, services
from activation.models import Delivery
from cdp.core.exceptions import NotFound
from consent.models import ConsentState
from tests.activation.sync_helpers import (
    Receiver,
    audience,
    enter,
    grant,
    person,
    run_sync,
    webhook,
)
from tests.profiles.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_the_search_is_scoped_and_explain_names_the_consent_behind_a_delivery(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada and bob sent to a destination serving advertising and (by contract) necessary
    ada, bob = person(workspace), person(workspace)
    grant(workspace, ada, "advertising")
    grant(workspace, bob, "advertising")
    destination = webhook(workspace, receiver.url, purposes=("advertising", "necessary"))
    aud = audience(workspace)
    enter(aud, ada, bob)
    sync = services.sync_create(
        audience=aud, destination=destination, mode="full", interval_minutes=0
    )
    run_sync(sync, django_capture_on_commit_callbacks)
    other = WorkspaceFactory(slug="globex")

    # when
    found = list(selectors.delivery_search(workspace=workspace, profile_id=ada.profile_id))
    by_destination = selectors.delivery_search(workspace=workspace, destination=destination)
    by_audience = selectors.delivery_search(workspace=workspace, audience=aud)

    # then
    assert [d.profile_id for d in found] == [ada.profile_id]
    assert by_destination.count() == by_audience.count() == 2
    assert not selectors.delivery_search(workspace=other).exists()

    # when
    explained = selectors.delivery_explain(workspace=workspace, delivery=found[0])

    # then
    grant_record = ConsentState.objects.get(
        profile_id=ada.profile_id, purpose__key="advertising"
    ).record_id
    delivery = Delivery.objects.get(pk=found[0].pk)
    assert explained["payload_sha256"] == delivery.payload_sha256
    assert (explained["action"], explained["status"]) == ("add", "delivered")
    assert explained["audience"]["rules"] == {"all": []}
    assert explained["membership"]["member_now"] is True
    assert [h["change"] for h in explained["membership_history"]] == ["entered"]
    purposes = {p["purpose"]: p for p in explained["purposes"]}
    assert purposes["necessary"]["basis"] == "contract"
    assert purposes["necessary"]["consent_record"] is None
    evidence = purposes["advertising"]["consent_record"]
    assert evidence["id"] == str(grant_record)
    assert (evidence["decision"], evidence["method"], evidence["jurisdiction"]) == (
        "granted",
        "banner",
        "DE",
    )
    assert evidence["proof"] == ["ip"]
    assert evidence["server_time"] <= explained["delivered_at"]
    assert ada.email.lower() not in str(explained).lower()
    assert ada.user_id not in str(explained)

    # and another workspace cannot have it explained
    with pytest.raises(NotFound) as refused:
        selectors.delivery_explain(workspace=other, delivery=found[0])
    assert refused.value.code == "delivery_not_found"
