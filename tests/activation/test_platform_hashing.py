"""Golden vectors for the ad platforms' normalization and SHA-256 hashing.

Two kinds of expected values, both written out as literals (never computed here with the code
under test):

1. Published by the platform: the input, the normalized form and the SHA-256 exactly as the
   platform's documentation prints them (source quoted above each group).
2. Derived from a documented rule: the normalized string follows the quoted rule by hand, and
   its digest was computed once outside this code base with coreutils
   (`printf '%s' 'cloudysanfrancisco@gmail.com' | sha256sum`).
"""

from __future__ import annotations

import datetime as dt

import pytest

from activation.platforms import normalize as n
from activation.platforms.normalize import sha256_hex as _sha256_hex


def sha256_hex(value: str | None) -> str:
    """The code's hash of a normalized value; None (not normalized) fails the test."""
    assert value is not None
    return _sha256_hex(value)


# --- Meta: published vectors ---------------------------------------------------------------
# Meta for Developers, Conversions API > Customer Information Parameters
# (https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/
#  customer-information-parameters). The Custom Audiences guide ("Hashing and Normalizing
# Data") states the same rules for EMAIL, PHONE, FN/LN, COUNTRY.
#   em  "Input: John_Smith@gmail.com  Normalized format: john_smith@gmail.com
#        Expected SHA256 output: 62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
#   ph  "Input: US phone number (650)555-1212  Normalized format: 16505551212
#        Expected SHA256 output: e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
#   fn  "Input: Mary  Normalizaed format: mary
#        Expected SHA256 output: 6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"
#       "Input: 정  Normalized format: UTF-8 character "정"
#        Expected SHA256 output: 8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"
#       "Input: Valéry  Normalized format: valéry
#        Expected SHA256 output: 08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"
#   db  "Input: 2/16/1997  Normalized format: 19970216
#        Expected SHA256 output: 01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c"
#   country "Input: United States  Normalized format: us
#        Expected SHA256 output: 79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"


def test_meta_published_email_vector():
    # given Meta's documented input
    raw = "John_Smith@gmail.com"
    # when normalized and hashed
    normalized = n.meta_email(raw)
    # then both steps match the documentation
    assert normalized == "john_smith@gmail.com"
    assert sha256_hex(normalized) == (
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    )


def test_meta_published_phone_vector():
    normalized = n.meta_phone("(650)555-1212", default_region="US")
    assert normalized == "16505551212"
    assert sha256_hex(normalized) == (
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    )


@pytest.mark.parametrize(
    ("raw", "normalized", "digest"),
    [
        ("Mary", "mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
        ("정", "정", "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"),
        ("Valéry", "valéry", "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),
    ],
)
def test_meta_published_name_vectors(raw, normalized, digest):
    assert n.meta_name(raw) == normalized
    assert sha256_hex(n.meta_name(raw)) == digest


def test_meta_published_date_of_birth_vector():
    # The documented input "2/16/1997" is month-first; we take dates or year-first strings
    # (day/month order is ambiguous), so the same date is given both ways here.
    for raw in (dt.date(1997, 2, 16), "1997-02-16", "19970216"):
        birth = n.meta_date_of_birth(raw, today=dt.date(2026, 11, 28))
        assert birth is not None
        assert birth.yyyymmdd == "19970216"
        assert sha256_hex(birth.yyyymmdd) == (
            "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c"
        )


def test_meta_published_country_vector():
    assert n.meta_country("United States") == "us"
    assert sha256_hex(n.meta_country("United States")) == (
        "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"
    )


# --- Meta: vectors derived from the documented rules ---------------------------------------
# email: "Trim any leading and trailing spaces. Convert all characters to lowercase."
# phone: "Remove symbols, letters, and any leading zeros. Phone numbers must include a
#         country code"
# fn/ln: "Lowercase only with no punctuation. If using special characters, the text must be
#         encoded in UTF-8 format."
# ct:    "Lowercase only with no punctuation, no special characters, and no spaces."
# st:    "Use the 2-character ANSI abbreviation code in lowercase. Normalize states outside the
#         U.S. in lowercase with no punctuation, no special characters, and no spaces."
# zp:    "Use lowercase with no spaces and no dash. Use only the first 5 digits for U.S. zip
#         codes. Use the area, district, and sector format for the UK." (example: m11ae)
# ge:    "an initial in lowercase" (f, m)
# Custom Audiences DOBY/DOBM/DOBD: YYYY, MM, DD.


@pytest.mark.parametrize(
    ("normalizer", "raw", "normalized", "digest"),
    [
        # uppercase and surrounding whitespace
        (
            n.meta_email,
            "  John.Doe@Example.COM ",
            "john.doe@example.com",
            "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f",
        ),
        # Meta keeps gmail dots and +tags (no rule says otherwise)
        (
            n.meta_email,
            "Cloudy.SanFrancisco+shopping@gmail.com",
            "cloudy.sanfrancisco+shopping@gmail.com",
            "8dd4a9bf850242873c14976125edabc35096192b784626a5641a7d2de56e3c1e",
        ),
        # "+" and punctuation go, country code stays
        (
            n.meta_phone,
            "+1 (650) 555-1212",
            "16505551212",
            "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
        ),
        # leading zeros (the international prefix) go
        (
            n.meta_phone,
            "0049 170 1234567",
            "491701234567",
            "8b47a52ed04d068c3a9c5632b98cec18780a9f9f4099d4f8afe233970ce116fe",
        ),
        # a national number with the profile's country as region
        (
            lambda v: n.meta_phone(v, default_region="GB"),
            "020 7183 8750",
            "442071838750",
            "8d5f937f3a5590634cbe975951a6aa1543170671ce6e73cce4062f4e8c288417",
        ),
        # punctuation and spaces out of names, accents kept
        (
            n.meta_name,
            " O'Brien ",
            "obrien",
            "b4cb6cb33fe4b865868de825023a1e2790dc12ac01ecc8d7c5afe8254071c8ba",
        ),
        (
            n.meta_name,
            "Mary Jane",
            "maryjane",
            "f08f448a5e7a9dc3619bb7c129f6a7d5fc6af002cea17ad71dfdc1c68f4d4e0e",
        ),
        (
            n.meta_name,
            "JOSÉ",
            "josé",
            "d994e1d001886fe5b45b1267bd1fa2b752ac50742579bd3dad7b2a2aa0ed6866",
        ),
        # a decomposed accent (e + U+0301) is composed first: same digest as Meta's "valéry"
        (
            n.meta_name,
            "Vale\u0301ry",
            "valéry",
            "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c",
        ),
        (
            n.meta_first_initial,
            "John",
            "j",
            "189f40034be7a199f1fa9891668ee3ab6049f82d38c68be70f596eab2e1857b7",
        ),
        (
            n.meta_city,
            "New York",
            "newyork",
            "350c754ba4d38897693aa077ef43072a859d23f613443133fecbbd90a3512ca5",
        ),
        (
            n.meta_city,
            "Saint-Étienne",
            "saintétienne",
            "bb35a91d6f2bd7ba807fdd240cc838bdd3b20fe1a6fdedba60d941fbe8d5c10f",
        ),
        (
            lambda v: n.meta_state(v, country="US"),
            "California",
            "ca",
            "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126",
        ),
        (
            lambda v: n.meta_state(v, country="US"),
            " TX ",
            "tx",
            "1b5b9ccb3e8d006a5230de9bda23ff91edc794d4f56410560830b418528e446c",
        ),
        (
            lambda v: n.meta_state(v, country="DE"),
            "Bayern",
            "bayern",
            "52b07f18c831ba4b08ba0b8bc84c6e023a825dfd385d20d8dcbf410d11c546e7",
        ),
        (
            lambda v: n.meta_zip(v, country="US"),
            "94025-1234",
            "94025",
            "b9a9cf3cd3723a2e91b7c23ecf68456e872b6e5d86e5cab7f3d45a7302da32c7",
        ),
        (
            lambda v: n.meta_zip(v, country="GB"),
            "M1 1AE",
            "m11ae",
            "1dc694c2070e697769fb959b50671d76cafd430d8ca191fbdd0affcaea344ac5",
        ),
        (
            n.meta_country,
            "GB",
            "gb",
            "0b407281768f0e833afef47ed464b6571d01ca4d53c12ce5c51d1462f4ad6677",
        ),
        (
            n.meta_gender,
            "Female",
            "f",
            "252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111",
        ),
        (
            n.meta_gender,
            "M",
            "m",
            "62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a",
        ),
    ],
)
def test_meta_rule_vectors(normalizer, raw, normalized, digest):
    assert normalizer(raw) == normalized
    assert sha256_hex(normalizer(raw)) == digest


def test_meta_birth_date_parts_for_custom_audience_schema():
    birth = n.meta_date_of_birth(dt.date(1997, 2, 16), today=dt.date(2026, 11, 28))
    assert birth is not None
    assert (birth.year, birth.month, birth.day) == ("1997", "02", "16")
    assert sha256_hex(birth.year) == (
        "0985b889a1fe4f4e1fb925061ac6fb2247f10875f5fcbe63eec2ab55ed68970e"
    )
    assert sha256_hex(birth.month) == (
        "a953f09a1b6b6725b81956e9ad0b1eb49e3ad40004c04307ef8af6246a054116"
    )
    assert sha256_hex(birth.day) == (
        "b17ef6d19c7a5b1ee83b907c595526dcb1eb06db8227d650d5dda0a9f4ce8cd9"
    )


# --- Google: documented examples --------------------------------------------------------------
# Google Data Manager API, "Format user data"
# (https://developers.google.com/data-manager/api/devguides/concepts/formatting):
#   email: "Convert to lowercase. If the email address has the gmail.com or googlemail.com
#     domain: Remove all dots (.) before the @ symbol. Remove the plus sign (+) from the local
#     part and all characters that follow it. Example: cloudy.sanfrancisco+shopping@gmail.com
#     → cloudysanfrancisco@gmail.com. If the email address has a domain other than gmail.com
#     or googlemail.com, don't remove dots or plus signs. Example: user.name+NYC@Example.com
#     → user.name+nyc@example.com." Whitespace: "Trim leading, trailing and intermediate."
#   phone_number: "Use the E.164 format. Include the plus sign (+) and the country code ...
#     the US phone number (800)555-0100 should be formatted and normalized to +18005550100."
#   given_name / family_name: "Convert to lowercase. Don't include prefixes such as Mrs." /
#     "... suffixes such as Jr."; AddressInfo reference: "all lowercase, with no punctuation,
#     no leading or trailing whitespace, and hashed as SHA-256".
#   region_code: "A two-character ISO-3166-1 alpha-2 code" (not hashed); postal_code not hashed.
# Google publishes no digests: they are sha256sum of the documented normalized strings.


@pytest.mark.parametrize(
    ("raw", "normalized", "digest"),
    [
        (
            "cloudy.sanfrancisco+shopping@gmail.com",
            "cloudysanfrancisco@gmail.com",
            "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4",
        ),
        (
            "user.name+NYC@Example.com",
            "user.name+nyc@example.com",
            "f109a2a632fbcea5fc82049f50beed3d8621bf9034399f437fb622222acccdac",
        ),
        # uppercase, whitespace (leading, trailing, intermediate), googlemail.com
        (
            "  J.Doe+Promo @GoogleMail.com ",
            "jdoe@googlemail.com",
            "e9676b23c1c188a4f2eed3c1cb325435d739786b947acf91fc1812a01570292f",
        ),
        (
            " John.Doe@Example.COM",
            "john.doe@example.com",
            "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f",
        ),
    ],
)
def test_google_email_vectors(raw, normalized, digest):
    assert n.google_email(raw) == normalized
    assert sha256_hex(n.google_email(raw)) == digest


def test_google_email_classic_rule_keeps_gmail_dots():
    # The classic Customer Match example only trims and lowercases: available per destination.
    assert n.google_email("John.Smith@Gmail.com", canonicalize_gmail=False) == (
        "john.smith@gmail.com"
    )
    assert sha256_hex(n.google_email("John.Smith@Gmail.com", canonicalize_gmail=False)) == (
        "d0c648bc36f12061bec770df216cea2ab95851b9350fd54b658de53b0407767a"
    )


@pytest.mark.parametrize(
    ("raw", "region", "normalized", "digest"),
    [
        (
            "(800)555-0100",
            "US",
            "+18005550100",
            "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30",
        ),
        (
            "+1 (650) 555-1212",
            None,
            "+16505551212",
            "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8",
        ),
        # digits with their country code but no "+": the "+" is added
        (
            "16505551212",
            None,
            "+16505551212",
            "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8",
        ),
        (
            "0049 170 1234567",
            "DE",
            "+491701234567",
            "b4267a2234e2072fa4d2e8d89fbe727c50fc414731d6ecacc2ed3d00f05038d1",
        ),
        (
            "020 7183 8750",
            "GB",
            "+442071838750",
            "e631c2534428c6c9b48c2167604a8983046085e43a2c00ed748733c544c0bb4d",
        ),
    ],
)
def test_google_phone_vectors(raw, region, normalized, digest):
    assert n.google_phone(raw, default_region=region) == normalized
    assert sha256_hex(n.google_phone(raw, default_region=region)) == digest


def test_google_and_meta_phone_digests_differ_for_the_same_number():
    # the single most common matching bug: "+" (Google) versus no "+" (Meta)
    google = sha256_hex(n.google_phone("(650) 555-1212", default_region="US"))
    meta = sha256_hex(n.meta_phone("(650) 555-1212", default_region="US"))
    assert google == "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"
    assert meta == "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"


@pytest.mark.parametrize(
    ("raw", "normalized", "digest"),
    [
        ("Mary", "mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
        # Google's own CSV template spells "zoë" and "pérez": accents stay
        (" Zoë ", "zoë", "2752b88686847fa5c86f47b94ce652b7b3f22a91c37617d451a4db9afa431450"),
        ("PÉREZ", "pérez", "6654977d57dddd3c0329ca741b109ef6cd6430bedd00008aad213df25683d77f"),
        ("O'Brien", "obrien", "b4cb6cb33fe4b865868de825023a1e2790dc12ac01ecc8d7c5afe8254071c8ba"),
        ("Mrs. Mary", "mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
        (
            "Smith-Jones Jr.",
            "smithjones",
            "6a77f47e3dec33252edbebb457d65e90501b643806c50cf8d6c3e2bd9cb74681",
        ),
        # one inner space is kept, runs of whitespace collapse (only the ends are trimmed)
        (
            "  Mary   Ann ",
            "mary ann",
            "343b97011010c3549fe7fcd6c226ed9431ea37b0b77ed78f6300a0098925faf1",
        ),
    ],
)
def test_google_name_vectors(raw, normalized, digest):
    assert n.google_name(raw) == normalized
    assert sha256_hex(n.google_name(raw)) == digest


def test_google_name_that_is_only_a_title_is_kept():
    assert n.google_name("Miss") == "miss"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("us", "US"), (" gb ", "GB"), ("United States", "US"), ("Deutschland", "DE"),
     ("UK", "GB"), ("Côte d\u2019Ivoire", "CI"), ("Atlantis", None), ("", None)],
)  # fmt: skip
def test_google_country_is_iso_alpha2_in_clear(raw, expected):
    assert n.google_country(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        (" 94025 ", "US", "94025"),
        ("94025-1234", "US", "94025-1234"),
        ("9402", "US", None),
        ("SW1A 1AA", "GB", "SW1A 1AA"),
        ("75018", "FR", "75018"),
    ],
)
def test_google_postal_code_is_trimmed_and_sent_in_clear(raw, country, expected):
    assert n.google_postal_code(raw, country=country) == expected


# --- values that do not normalize -------------------------------------------------------------


@pytest.mark.parametrize(
    ("normalizer", "raw"),
    [
        (n.google_email, None),
        (n.google_email, "   "),
        (n.google_email, "not-an-email"),
        (n.google_email, "+tag@gmail.com"),  # nothing left of the local part
        (n.meta_email, "no-at-sign.example.com"),
        (n.google_phone, "555-1212"),  # no country code, no region
        (n.meta_phone, ""),
        (n.meta_phone, "call me"),
        (n.google_name, "..."),
        (n.meta_name, "-"),
        (n.meta_gender, "x"),
        (n.meta_country, "Atlantis"),
        (lambda v: n.meta_zip(v, country="US"), "ABCDE"),
        (lambda v: n.meta_state(v, country="US"), "Ontario"),
        (n.meta_date_of_birth, "16/02/1997"),  # day-first: ambiguous, refused
        (n.meta_date_of_birth, "1997-02-30"),
        (n.meta_date_of_birth, "1899-12-31"),
        (n.meta_external_id, "  "),
        (n.google_email, "x" * 300 + "@example.com"),
    ],
)
def test_unusable_values_normalize_to_none(normalizer, raw):
    assert normalizer(raw) is None


def test_meta_state_without_country_recognizes_us_states_only():
    assert n.meta_state("New York") == "ny"
    assert n.meta_state("Île-de-France") == "îledefrance"


def test_meta_zip_keeps_non_us_codes_whole():
    assert n.meta_zip("1987", country="AU") == "1987"
    assert n.meta_zip("75018", country="FR") == "75018"
    assert n.meta_zip("94025-1234") == "94025"


def test_unhashed_meta_keys_are_trimmed_only():
    assert n.meta_external_id(" crm-000123 ") == "crm-000123"
    assert n.meta_mobile_advertiser_id(" AECE52E7-03EE-455A-B3C4-E57283966239 ") == (
        "aece52e7-03ee-455a-b3c4-e57283966239"
    )


def test_birth_date_repr_hides_the_date():
    birth = n.meta_date_of_birth("1997-02-16", today=dt.date(2026, 11, 28))
    assert "1997" not in repr(birth)
