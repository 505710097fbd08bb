"""An ad platform destination (Google Customer Match, Meta Custom Audiences) uploads personal
data to share it for advertising: it must serve a purpose held on consent that a GPC signal
opts out of (`advertising` by default), so that neither a missing consent nor GPC lets a
person through. Checked when the destination is created and whenever its purposes change,
through the services, the API and the admin alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from activation import services
from activation.exceptions import DestinationInvalid
from activation.models import Delivery, Destination
from consent import services as consent_services
from consent.enums import LegalBasis
from consent.models import Purpose
from tests.activation.api_helpers import MANAGE, token_client
from tests.activation.sync_helpers import (
    audience,
    enter,
    file_destination,
    grant,
    person,
    run_sync,
)

pytestmark = pytest.mark.django_db

DATA = {"identifiers": ["email"], "traits": []}


@pytest.fixture(autouse=True)
def purposes(workspace: Any) -> None:
    consent_services.purposes_ensure_defaults(workspace=workspace)


def _create(workspace: Any, kind: str, purposes: list[str], name: str = "Ads") -> Destination:
    return services.destination_create(
        workspace=workspace, name=name, kind=kind, purposes=purposes, data=DATA
    )


@pytest.mark.parametrize("kind", ["google_customer_match", "meta_custom_audiences"])
def test_an_ad_platform_needs_a_consented_sale_or_share_purpose(workspace: Any, kind: str) -> None:
    # when / then: analytics alone (what a GPC opt-out leaves granted) is refused
    with pytest.raises(DestinationInvalid) as refused:
        _create(workspace, kind, ["analytics"])
    assert refused.value.code == "advertising_purpose_required"
    assert not Destination.objects.exists()
    # advertising, alone or with others, is accepted
    assert _create(workspace, kind, ["analytics", "advertising"]).pk


def test_a_purpose_on_legitimate_interests_does_not_count(workspace: Any) -> None:
    # given: the workspace holds advertising on legitimate interests
    Purpose.objects.filter(workspace=workspace, key="advertising").update(
        legal_basis=LegalBasis.LEGITIMATE_INTERESTS
    )
    # when / then
    with pytest.raises(DestinationInvalid, match="held on consent"):
        _create(workspace, "meta_custom_audiences", ["advertising"])


def test_changing_the_purposes_of_an_ad_platform_is_checked_too(workspace: Any) -> None:
    # given
    destination = _create(workspace, "meta_custom_audiences", ["advertising"])
    # when / then
    with pytest.raises(DestinationInvalid):
        services.destination_update(destination=destination, purposes=["analytics"])
    assert [p.key for p in Destination.objects.get(pk=destination.pk).purposes.all()] == [
        "advertising"
    ]


def test_other_kinds_declare_what_they_serve(workspace: Any) -> None:
    # a CSV export for analytics is not an ad platform upload
    assert services.destination_create(
        workspace=workspace,
        name="Nightly",
        kind="csv",
        purposes=["analytics"],
        data={"identifiers": ["user_id"], "traits": []},
    ).pk


def test_the_api_and_the_admin_answer_the_reason(workspace: Any, owner: Any) -> None:
    # given
    api = token_client(workspace, MANAGE)
    body = {
        "name": "Meta",
        "kind": "meta_custom_audiences",
        "purposes": ["analytics"],
        "data": DATA,
    }
    # when
    response = api.post("/api/v1/destinations/", body, format="json")
    client = Client()
    client.force_login(owner)
    page = client.post(
        reverse("admin:activation_destination_add"),
        {
            "workspace": workspace.pk,
            "name": "Meta",
            "kind": "meta_custom_audiences",
            "purpose_keys": ["analytics"],
            "data": '{"identifiers": ["email"], "traits": []}',
            "config": "{}",
            "min_audience_size": 100,
        },
    )
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "advertising_purpose_required"
    assert page.status_code == 200  # the form again, with the reason
    assert "opts out of" in page.content.decode()
    assert not Destination.objects.exists()


def test_a_run_of_an_ad_platform_whose_purpose_changed_since_sends_no_one(
    workspace: Any, django_capture_on_commit_callbacks: Any, export_dir: Any
) -> None:
    # given: a Meta sync with a consented member, then the advertising purpose moved to
    # legitimate interests (no longer a consent that GPC can refuse)
    aud = audience(workspace)
    member = person(workspace, email="ada@example.com")
    grant(workspace, member, "advertising")
    enter(aud, member)
    destination = file_destination(
        workspace, "meta_custom_audiences", data={"identifiers": ["email"], "traits": []}
    )
    sync = services.sync_create(audience=aud, destination=destination, mode="full")
    Purpose.objects.filter(workspace=workspace, key="advertising").update(
        legal_basis=LegalBasis.LEGITIMATE_INTERESTS
    )
    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)
    # then
    assert run.status == "refused"
    assert "held on consent" in run.error
    assert run.processed == 0
    assert not Delivery.objects.exists()
