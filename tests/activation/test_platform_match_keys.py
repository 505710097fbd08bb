"""Meta rows need a key Meta can match on: an email, a phone, a MADID or an EXTERN_ID, or a
first and last name with a ZIP or with a city and state. A contact with only country, gender,
birth date or a lone name is skipped (counted as without a match key), never uploaded.

Digests are literals, computed once with coreutils' sha256sum."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from activation import outbound, services
from activation.enums import DeliveryAction
from activation.models import Delivery, Destination
from activation.platforms import (
    Contact,
    meta_users_requests,
    write_meta_customer_list_csv,
    write_meta_payload_json,
)
from profiles.models import Identity
from tests.activation.digests import (
    SHA_94025,
    SHA_CA,
    SHA_DOE,
    SHA_JOHN,
    SHA_JOHN_DOE_EMAIL,
    SHA_MENLOPARK,
    SHA_US,
    read_csv,
)
from tests.activation.sync_helpers import audience, enter, grant, person
from tests.activation.sync_helpers import run_sync as run

COUNTRY_AND_GENDER = Contact(country="US", gender="male")
NAME_AND_COUNTRY = Contact(first_name="John", last_name="Doe", country="US", gender="m")
NAME_AND_ZIP = Contact(first_name="John", last_name="Doe", postal_code="94025", country="US")
NAME_CITY_STATE = Contact(first_name="John", last_name="Doe", city="Menlo Park", state="CA")
EMAIL_ONLY = Contact(emails=("John.Doe@Example.com",), country="US")


def test_the_meta_customer_list_skips_contacts_without_a_match_key():
    # given: country and gender only, a name with a country only, and three matchable contacts
    contacts = [COUNTRY_AND_GENDER, NAME_AND_COUNTRY, NAME_AND_ZIP, NAME_CITY_STATE, EMAIL_ONLY]
    out = io.StringIO(newline="")

    # when
    stats = write_meta_customer_list_csv(contacts, out, min_audience_size=0)

    # then: the first two are skipped, nothing of them is written
    assert (stats.rows, stats.skipped) == (3, 2)
    assert read_csv(out.getvalue())[1:] == [
        ["", "", SHA_JOHN, SHA_DOE, "", "", SHA_94025, SHA_US, "", "", ""],
        ["", "", SHA_JOHN, SHA_DOE, SHA_MENLOPARK, SHA_CA, "", "", "", "", ""],
        [SHA_JOHN_DOE_EMAIL, "", "", "", "", "", "", SHA_US, "", "", ""],
    ]


def test_the_meta_payload_skips_contacts_without_a_match_key():
    # given
    contacts = [COUNTRY_AND_GENDER, NAME_AND_COUNTRY, EMAIL_ONLY]
    out = io.StringIO()

    # when
    stats = write_meta_payload_json(
        contacts, out, schema=["EMAIL", "FN", "LN", "COUNTRY", "GEN"], min_audience_size=0
    )

    # then
    assert json.loads(out.getvalue())["payload"]["data"] == [
        [SHA_JOHN_DOE_EMAIL, "", "", SHA_US, ""]
    ]
    assert (stats.rows, stats.skipped) == (1, 2)


def test_a_match_key_counts_only_when_the_schema_sends_it():
    # given: a schema without EMAIL, and one with EXTERN_ID
    contacts = [EMAIL_ONLY, Contact(external_id="crm-000123", country="US")]

    # when
    without_email = list(
        meta_users_requests(
            contacts, audience_id="42", schema=["COUNTRY", "GEN"], min_audience_size=0
        )
    )
    with_extern_id = list(
        meta_users_requests(
            contacts, audience_id="42", schema=["EXTERN_ID", "COUNTRY"], min_audience_size=0
        )
    )

    # then: country alone is never sent; an EXTERN_ID is a match key
    assert without_email == []
    assert [r.body["payload"]["data"] for r in with_extern_id] == [[["crm-000123", SHA_US]]]


def test_a_removal_without_a_match_key_is_not_expressed_either():
    # given: a contact with only country and gender

    # when: its DELETE body is built
    requests = list(meta_users_requests([COUNTRY_AND_GENDER], audience_id="42", remove=True))

    # then: no request at all
    assert requests == []


def test_outgoing_has_no_meta_record_for_a_person_without_email_or_phone():
    # given: a Meta destination receiving email, country and gender; a person without email
    destination = Destination(
        kind="meta_custom_audiences",
        config={},
        data={"identifiers": ["email"], "traits": ["country", "gender"]},
    )
    who = outbound.Person("p1", {}, {"country": "US", "gender": "male"})

    # when
    out = outbound.outgoing(destination, DeliveryAction.ADD, who)

    # then
    assert out is None


@pytest.mark.django_db
def test_a_meta_sync_counts_a_member_without_a_match_key_and_sends_nothing_of_them(
    workspace: Any, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: two consented members, one of whom has no email left
    ada, bob = person(workspace), person(workspace)
    for who in (ada, bob):
        grant(workspace, who, "advertising")
    Identity.objects.filter(identifier_type="email", profile_id=bob.profile_id).delete()
    destination = services.destination_create(
        workspace=workspace,
        name="Meta",
        kind="meta_custom_audiences",
        purposes=["advertising"],
        data={"identifiers": ["email"], "traits": ["first_name", "country"]},
        min_audience_size=1,
    )
    sync = services.sync_create(
        audience=audience(workspace), destination=destination, mode="full", interval_minutes=0
    )
    enter(sync.audience, ada, bob)

    # when
    result = run(sync, django_capture_on_commit_callbacks)

    # then: bob (first name and country only) is not in the file nor in the ledger
    assert (result.status, result.sent, result.excluded) == (
        "succeeded",
        1,
        {"no_match_key": 1},
    )
    (path,) = sorted(p for p in export_dir.rglob("*") if p.is_file())
    assert len(read_csv(path.read_text(encoding="utf-8"))) == 2
    assert list(Delivery.objects.values_list("profile_id", flat=True)) == [ada.profile_id]
