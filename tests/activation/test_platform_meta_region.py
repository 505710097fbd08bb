"""Meta's US rules for ZIP and ST follow the contact's country, or else the writer's
`default_region` (as `Contact` documents); COUNTRY itself is only ever the contact's.

Digests are literals, computed once with coreutils' sha256sum."""

from __future__ import annotations

import csv
import io
import json

from activation.platforms import Contact, write_meta_customer_list_csv, write_meta_payload_json
from tests.activation.digests import (
    SHA_94025,
    SHA_CA,
)

SHA_A_EMAIL = "08168cd80dfd534ab0f10af10f1303fe00af2d43ab5c1432360d137f8197e17a"  # a@example.com
SHA_940251234 = "949ec86c69e33d96b5d33f08224429e8f73b24563d5105e65848dab17944c3f3"
SHA_GB = "0b407281768f0e833afef47ed464b6571d01ca4d53c12ce5c51d1462f4ad6677"


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_the_customer_list_applies_the_us_zip_rule_of_the_default_region():
    # given: a ZIP+4 written with a space, no country on the contact, a US destination
    contact = Contact(emails=("a@example.com",), postal_code="94025 1234", state="California")
    out = io.StringIO(newline="")

    # when
    write_meta_customer_list_csv([contact], out, min_audience_size=1, default_region="US")

    # then: the first 5 digits, the state code, and no country
    (row,) = read_csv(out.getvalue())
    assert (row["email"], row["zip"], row["st"], row["country"]) == (
        SHA_A_EMAIL,
        SHA_94025,
        SHA_CA,
        "",
    )


def test_the_us_state_rule_of_the_default_region_drops_a_non_us_state():
    # given: "Ontario" is no US state; under the US rule it is left out, not hashed as text
    contact = Contact(emails=("a@example.com",), state="Ontario")
    out = io.StringIO()

    # when
    stats = write_meta_payload_json(
        [contact], out, schema=["EMAIL", "ST"], min_audience_size=1, default_region="us"
    )

    # then
    assert json.loads(out.getvalue())["payload"]["data"] == [[SHA_A_EMAIL, ""]]
    assert stats.dropped["state"] == 1


def test_the_contacts_own_country_wins_over_the_default_region():
    # given: a British contact in a US destination
    contact = Contact(emails=("a@example.com",), postal_code="94025 1234", country="GB")
    out = io.StringIO()

    # when
    write_meta_payload_json(
        [contact],
        out,
        schema=["EMAIL", "ZIP", "COUNTRY"],
        min_audience_size=1,
        default_region="US",
    )

    # then: the postcode is kept whole (the non-US rule), the country is GB
    assert json.loads(out.getvalue())["payload"]["data"] == [[SHA_A_EMAIL, SHA_940251234, SHA_GB]]
