"""Spellings the platforms' rules allow that the normalizers used to refuse or keep: Meta's
email trimmed of end dots as its SDK does, a US ZIP+4 written with a space for Google, a
gender with punctuation for Meta; and Google's clear Zip cell guarded against spreadsheet
formulas like every other CSV we write.

Digests are literals, computed once with coreutils' sha256sum."""

from __future__ import annotations

import io

import pytest

from activation.platforms import Contact, write_google_customer_match_csv
from activation.platforms import normalize as n
from tests.activation.digests import (
    SHA_DOE,
    SHA_JOHN,
    SHA_JOHN_DOE_EMAIL,
    read_csv,
)


@pytest.mark.parametrize("raw", ["John.Doe@Example.COM.", " .john.doe@example.com. "])
def test_meta_email_drops_dots_at_either_end_as_the_sdk_does(raw):
    # when
    normalized = n.meta_email(raw)

    # then
    assert normalized == "john.doe@example.com"
    assert n.sha256_hex(normalized) == SHA_JOHN_DOE_EMAIL


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("94025 1234", "94025-1234"),
        ("940251234", "94025-1234"),
        ("94025-1234", "94025-1234"),
        ("94025", "94025"),
        ("94025  12345", None),
    ],
)
def test_google_postal_code_accepts_every_us_zip_plus_4_spelling(raw, expected):
    assert n.google_postal_code(raw, country="US") == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("M.", "m"), (" f. ", "f"), ("Female!", "f"), ("m/f", None)]
)
def test_meta_gender_ignores_punctuation(raw, expected):
    assert n.meta_gender(raw) == expected


def test_the_google_file_guards_a_zip_that_looks_like_a_formula():
    # given: a postcode (in clear) that a spreadsheet would run
    contact = Contact(
        emails=("john.doe@example.com",),
        first_name="John",
        last_name="Doe",
        country="GB",
        postal_code='=HYPERLINK("https://evil.example.com")',
    )
    out = io.StringIO(newline="")

    # when
    write_google_customer_match_csv([contact], out, min_audience_size=1)

    # then: the cell starts with an apostrophe; hashed cells are untouched
    assert read_csv(out.getvalue())[1] == [
        SHA_JOHN_DOE_EMAIL,
        "",
        SHA_JOHN,
        SHA_DOE,
        "GB",
        '\'=HYPERLINK("https://evil.example.com")',
    ]
