"""Values that already are SHA-256 digests (64 hex digits, as a source that hashes before it
sends gives them) pass through the hashed keys, lowercased and not hashed again; keys sent in
clear never read them as digests.

Digests are literals, computed once with coreutils' sha256sum."""

from __future__ import annotations

import io
import json

import pytest

from activation.platforms import (
    Contact,
    write_google_customer_match_csv,
    write_meta_customer_list_csv,
    write_meta_payload_json,
)
from activation.platforms import normalize as n
from tests.activation.digests import (
    SHA_94025,
    SHA_CA,
    SHA_DOE,
    SHA_GOOGLE_PHONE,
    SHA_JOHN,
    SHA_JOHN_DOE_EMAIL,
    SHA_M,
    SHA_META_PHONE,
    SHA_US,
    read_csv,
)

# sha256("+16505551212") (Google) and sha256("16505551212") (Meta)


@pytest.mark.parametrize(
    ("normalizer", "given"),
    [
        (n.google_email, SHA_JOHN_DOE_EMAIL),
        (n.google_phone, SHA_GOOGLE_PHONE),
        (n.google_name, SHA_JOHN),
        (n.meta_email, SHA_JOHN_DOE_EMAIL),
        (n.meta_phone, SHA_META_PHONE),
        (n.meta_name, SHA_JOHN),
        (n.meta_city, SHA_JOHN),
        (lambda v: n.meta_state(v, country="US"), SHA_CA),
        (lambda v: n.meta_zip(v, country="US"), SHA_94025),
        (n.meta_country, SHA_US),
        (n.meta_gender, SHA_M),
    ],
)
def test_a_digest_passes_through_every_hashed_key_lowercased(normalizer, given):
    # given: the digest as a source sent it, in upper case and padded
    raw = f"  {given.upper()} "

    # when
    normalized = normalizer(raw)

    # then: the same digest, lowercased, and hashing it gives it back as it is
    assert normalized == given
    assert n.digest(normalized) == given


def test_a_normalized_value_is_still_hashed():
    assert n.digest("john") == SHA_JOHN
    assert n.digest("94025") == SHA_94025


@pytest.mark.parametrize(
    ("normalizer", "expected"),
    [
        (n.google_country, None),
        (lambda v: n.google_postal_code(v, country="US"), None),
        (n.meta_external_id, SHA_JOHN.upper()),  # in clear, trimmed only
        (n.meta_date_of_birth, None),  # DOBY, DOBM and DOBD cannot come from one digest
        (n.meta_first_initial, None),  # the initial of a hashed name is unknown
    ],
)
def test_keys_in_clear_or_derived_never_read_a_digest(normalizer, expected):
    assert normalizer(f" {SHA_JOHN.upper()} ") == expected


def test_the_google_file_keeps_digests_and_hashes_the_rest():
    # given: an email and a name already hashed, a phone and the address in clear
    contact = Contact(
        emails=(SHA_JOHN_DOE_EMAIL.upper(),),
        phones=("+1 (650) 555-1212",),
        first_name=SHA_JOHN,
        last_name="Doe",
        country="US",
        postal_code="94025",
    )
    out = io.StringIO(newline="")

    # when
    stats = write_google_customer_match_csv([contact], out, min_audience_size=1)

    # then
    assert read_csv(out.getvalue())[1] == [
        SHA_JOHN_DOE_EMAIL,
        SHA_GOOGLE_PHONE,
        SHA_JOHN,
        SHA_DOE,
        "US",
        "94025",
    ]
    assert stats.dropped == {}


def test_the_meta_payload_keeps_digests_and_leaves_the_initial_of_a_hashed_name_out():
    # given
    contact = Contact(
        emails=(SHA_JOHN_DOE_EMAIL,),
        first_name=SHA_JOHN.upper(),
        postal_code=SHA_94025,
        country="US",
    )
    out = io.StringIO()

    # when
    write_meta_payload_json(
        [contact], out, schema=["EMAIL", "FN", "FI", "ZIP", "COUNTRY"], min_audience_size=1
    )

    # then
    assert json.loads(out.getvalue())["payload"]["data"] == [
        [SHA_JOHN_DOE_EMAIL, SHA_JOHN, "", SHA_94025, SHA_US]
    ]


def test_the_meta_customer_list_keeps_digests():
    # given
    contact = Contact(emails=(SHA_JOHN_DOE_EMAIL,), gender=SHA_M)
    out = io.StringIO(newline="")

    # when
    write_meta_customer_list_csv([contact], out, min_audience_size=1)

    # then
    assert read_csv(out.getvalue())[1] == [
        SHA_JOHN_DOE_EMAIL, "", "", "", "", "", "", "", "", "", SHA_M,
    ]  # fmt: skip
