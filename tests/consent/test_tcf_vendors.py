"""TC strings beyond purpose bits: vendor consents, vendor legitimate interests, publisher
restrictions and the Disclosed Vendors segment; the strings the TCF no longer holds valid; a
sale/share purpose granted only with its vendors' consent; decoding bounded by the string.

`tc_string()` below writes TC strings field by field after "Consent string and vendor list
formats v2"; the first test checks it against a golden vector of `@iabtcf/core` 1.5.6.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.urls import reverse

from consent import services
from consent.exceptions import TcStringInvalid
from consent.models import ConsentRecord, ConsentState, Purpose
from consent.tcf import tc_string_decode, tcf_decisions
from profiles import services as profile_services
from tests.consent.test_admin import client_for, purpose_form_data

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
CREATED = datetime(2026, 11, 1, 12, tzinfo=UTC)
NOT_ALLOWED, REQUIRE_CONSENT, REQUIRE_LI = 0, 1, 2
ADVERTISING = {1, 2, 3, 4, 7}  # the TCF purposes the default advertising purpose needs (+1)
GOOGLE = 755

# Encoded like the golden vectors of test_tcf.py, from a GVL of vendors 1-10 and 755 (purposes
# 1-6 and 8-11 on consent, 7 on legitimate interests, 2 and 7 flexible): purposes 1, 2, 3, 4, 7
# consented, LI 7; vendors 1-10 and 755 consented (range encoding) and disclosed; LI vendors 2,
# 3, 5 (bitfield); publisher restrictions: purpose 2 require LI for 755, purpose 3 not allowed
# for 1, purpose 7 require consent for 2, 3, 5, 9.
TC_RESTRICTED = (
    "CQtB6GAQtB6GAEsACBENAqEgAPIAAAIAAAYgF5wAoAAgAUAvMABTQAwoAEBeYYACAAEdADgAEAAYABQAEgAA"
    ".IF5wAoAAgAUAvMAA.YAAAAAAAAAAA"
)


def _number(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def _ranges(vendors: Iterable[int]) -> str:
    runs: list[list[int]] = []
    for vendor in sorted(vendors):
        if runs and vendor == runs[-1][1] + 1:
            runs[-1][1] = vendor
        else:
            runs.append([vendor, vendor])
    bits = _number(len(runs), 12)
    for start, end in runs:
        bits += "0" + _number(start, 16) if start == end else "1" + _number(start, 16)
        bits += _number(end, 16) if start != end else ""
    return bits


def _vendor_section(vendors: Iterable[int], *, ranges: bool = False) -> str:
    ids = set(vendors)
    bits = _number(max(ids, default=0), 16) + ("1" if ranges else "0")
    if ranges:
        return bits + _ranges(ids)
    return bits + "".join("1" if v in ids else "0" for v in range(1, max(ids, default=0) + 1))


def _segment(bits: str, *, pad_to: int) -> str:
    bits += "0" * (-len(bits) % pad_to)
    return "".join(ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def tc_string(
    *,
    purposes: Iterable[int] = ADVERTISING,
    purposes_li: Iterable[int] = (),
    vendors: Iterable[int] = (GOOGLE,),
    vendors_li: Iterable[int] = (),
    restrictions: Iterable[tuple[int, int, Iterable[int]]] = (),
    disclosed: Iterable[int] | None = None,
    policy_version: int = 4,
    service_specific: bool = True,
    range_encoding: bool = False,
    pad_to: int = 24,
) -> str:
    """A TC string (core and, unless `disclosed` is empty, Disclosed Vendors segment) as a CMP
    with cmpId 300 writes it; disclosed defaults to vendor 1 and the consented vendors.
    `@iabtcf/core` pads each segment to 24 bits; some encoders pad only to 6 (`pad_to=6`)."""
    purposes, purposes_li, vendors = set(purposes), set(purposes_li), set(vendors)
    deciseconds = int(CREATED.timestamp()) * 10
    restrictions = list(restrictions)
    core = _number(2, 6) + _number(deciseconds, 36) * 2
    core += _number(300, 12) + _number(2, 12) + _number(1, 6) + _number(4, 6) + _number(13, 6)
    core += _number(42, 12) + _number(policy_version, 6) + str(int(service_specific)) + "0"
    core += "0" * 12 + "".join("1" if p in purposes else "0" for p in range(1, 25))
    core += "".join("1" if p in purposes_li else "0" for p in range(1, 25))
    core += "0" + _number(3, 6) + _number(4, 6)  # purpose one treatment, DE
    core += _vendor_section(vendors, ranges=range_encoding) + _vendor_section(vendors_li)
    core += _number(len(restrictions), 12)
    for purpose, restriction_type, restricted in restrictions:
        core += _number(purpose, 6) + _number(restriction_type, 2) + _ranges(restricted)
    segments = [_segment(core, pad_to=pad_to)]
    disclosed = {1, *vendors} if disclosed is None else set(disclosed)
    if disclosed:
        section = _vendor_section(disclosed, ranges=range_encoding)
        segments.append(_segment(_number(1, 3) + section, pad_to=pad_to))
    return ".".join(segments)


def _vendor_ids(vendors: Any) -> list[int]:
    return [v for v in range(1, 1000) if v in vendors]


def test_the_encoder_here_writes_what_iabtcf_core_writes() -> None:
    # when
    written = tc_string(
        purposes=ADVERTISING,
        purposes_li={7},
        vendors=[*range(1, 11), GOOGLE],
        vendors_li={2, 3, 5},
        restrictions=[
            (2, REQUIRE_LI, {GOOGLE}),
            (3, NOT_ALLOWED, {1}),
            (7, REQUIRE_CONSENT, {2, 3, 5, 9}),
        ],
        range_encoding=True,
    )
    # then: the same core and Disclosed Vendors segments
    assert written == TC_RESTRICTED.rsplit(".", maxsplit=1)[0]


def test_vendor_sections_publisher_restrictions_and_disclosed_vendors_are_decoded() -> None:
    # when
    tc = tc_string_decode(TC_RESTRICTED)
    # then
    assert _vendor_ids(tc.vendors_consented) == [*range(1, 11), GOOGLE]
    assert _vendor_ids(tc.vendors_legitimate_interests) == [2, 3, 5]
    assert _vendor_ids(tc.vendors_disclosed) == [*range(1, 11), GOOGLE]
    assert [
        (r.purpose, r.restriction_type, _vendor_ids(r.vendors)) for r in tc.publisher_restrictions
    ] == [
        (2, REQUIRE_LI, [GOOGLE]),
        (3, NOT_ALLOWED, [1]),
        (7, REQUIRE_CONSENT, [2, 3, 5, 9]),
    ]
    assert (tc.purposes_consented, tc.purposes_legitimate_interests) == (ADVERTISING, {7})


@pytest.fixture
def purposes(workspace: Any) -> list[Purpose]:
    """The default purposes, advertising (sale or sharing) naming Google as its vendor."""
    found = services.purposes_ensure_defaults(workspace=workspace)
    Purpose.objects.filter(workspace=workspace, key="advertising").update(tcf_vendors=[GOOGLE])
    return [p for p in found if p.key != "advertising"] + [
        Purpose.objects.get(workspace=workspace, key="advertising")
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("string", "decision"),
    [
        (tc_string(vendors=()), "denied"),
        (tc_string(vendors={1}), "denied"),
        (tc_string(vendors={GOOGLE}), "granted"),
        (tc_string(vendors={1, GOOGLE}, range_encoding=True), "granted"),
        (tc_string(vendors={GOOGLE}, disclosed={1}), "denied"),
        (tc_string(restrictions=[(3, NOT_ALLOWED, {GOOGLE})]), "denied"),
        (tc_string(restrictions=[(2, REQUIRE_LI, {700, GOOGLE})]), "denied"),
        (tc_string(restrictions=[(7, REQUIRE_CONSENT, {GOOGLE})]), "granted"),
        (tc_string(restrictions=[(3, NOT_ALLOWED, {1})]), "granted"),
        (tc_string(restrictions=[(10, NOT_ALLOWED, {GOOGLE})]), "granted"),
    ],
    ids=[
        "no-vendor-consent",
        "another-vendors-consent",
        "vendor-consent",
        "vendor-consent-range-encoded",
        "vendor-consent-not-disclosed",
        "restriction-not-allowed",
        "restriction-require-li",
        "restriction-require-consent",
        "restriction-on-another-vendor",
        "restriction-on-an-unmapped-purpose",
    ],
)
def test_a_sale_or_share_purpose_needs_its_vendors_consent_unrestricted(
    purposes: list[Purpose], string: str, decision: str
) -> None:
    # given: every TCF purpose advertising maps to (2, 3, 4, 7) consented, in every string
    tc = tc_string_decode(string)
    # when
    decisions = tcf_decisions(tc=tc, purposes=purposes)
    # then
    assert decisions["advertising"] == decision


@pytest.mark.django_db
def test_every_vendor_the_purpose_names_needs_consent(purposes: list[Purpose]) -> None:
    # given: advertising goes to Google and to vendor 32
    advertising = next(p for p in purposes if p.key == "advertising")
    advertising.tcf_vendors = [GOOGLE, 32]
    # when
    google_only = tcf_decisions(tc=tc_string_decode(tc_string(vendors={GOOGLE})), purposes=purposes)
    both = tcf_decisions(tc=tc_string_decode(tc_string(vendors={32, GOOGLE})), purposes=purposes)
    # then
    assert (google_only["advertising"], both["advertising"]) == ("denied", "granted")


@pytest.mark.django_db
def test_a_sale_or_share_purpose_naming_no_vendor_is_never_granted_by_a_tc_string(
    workspace: Any,
) -> None:
    # given: the default purposes, as seeded: advertising names no vendor
    purposes = services.purposes_ensure_defaults(workspace=workspace)
    tc = tc_string_decode(tc_string(purposes=range(1, 11), vendors=range(1, 800)))
    # when
    decisions = tcf_decisions(tc=tc, purposes=purposes)
    # then: the purposes that are not a sale or sharing keep the purpose-bit mapping, and
    # advertising is not decided at all: no grant, and no refusal the person never made
    assert decisions == {
        "analytics": "granted",
        "personalization": "granted",
        "profiling": "granted",
    }


@pytest.mark.django_db
def test_a_refusal_of_a_sale_or_share_purpose_naming_no_vendor_is_still_recorded(
    workspace: Any,
) -> None:
    """No vendor is needed to say no: a person who unticks advertising's TCF purposes in the
    CMP has refused it, and a grant recorded before must not stand."""
    # given: the default purposes, as seeded (advertising names no vendor; TCF 2, 3, 4, 7)
    purposes = services.purposes_ensure_defaults(workspace=workspace)
    tc = tc_string_decode(tc_string(purposes={1, 2, 3, 8, 9}, vendors=range(1, 800)))
    # when
    decisions = tcf_decisions(tc=tc, purposes=purposes)
    # then
    assert decisions["advertising"] == "denied"


@pytest.mark.django_db
def test_purposes_that_are_not_a_sale_or_sharing_need_no_vendor_consent(
    purposes: list[Purpose],
) -> None:
    # given
    tc = tc_string_decode(tc_string(purposes={1, 8, 9}, vendors=()))
    # when
    decisions = tcf_decisions(tc=tc, purposes=purposes)
    # then
    assert decisions["analytics"] == "granted"


@pytest.fixture
def source(purposes: list[Purpose], workspace: Any) -> Any:
    return profile_services.source_create(workspace=workspace, name="Web")


def test_a_submitted_tc_string_without_vendor_consent_records_advertising_denied(
    source: Any,
) -> None:
    # given: TCF purposes 1, 2, 3, 4, 7 consented, no vendor
    submission = services.ConsentSubmission(
        decisions={}, anonymous_id="anon-tcf-1", tc_string=tc_string(vendors=())
    )
    # when
    submitted = services.consent_submit(source=source, submission=submission)
    # then: the activation gate will not send this person to an ad platform
    assert submitted.state["advertising"] == "denied"
    assert ConsentState.objects.get(purpose__key="advertising").decision == "denied"


@pytest.mark.parametrize(
    ("string", "message"),
    [
        (
            tc_string(policy_version=2),
            "TC strings of a TCF policy version below 4 (TCF 2.2) are no longer valid; "
            "consent has to be asked again.",
        ),
        (
            tc_string(policy_version=3),
            "TC strings of a TCF policy version below 4 (TCF 2.2) are no longer valid; "
            "consent has to be asked again.",
        ),
        (tc_string(service_specific=False), "Only service-specific TC strings are accepted."),
        (
            tc_string(disclosed=()),
            "The TC string has no Disclosed Vendors segment (TCF 2.3).",
        ),
        (
            tc_string(disclosed=()) + ".YAAAAAAAAAAA",  # a publisher-TC segment only
            "The TC string has no Disclosed Vendors segment (TCF 2.3).",
        ),
    ],
    ids=["policy-2", "policy-3", "global-scope", "no-disclosed-vendors", "publisher-tc-only"],
)
def test_strings_the_tcf_no_longer_holds_valid_are_refused(string: str, message: str) -> None:
    # when / then
    with pytest.raises(TcStringInvalid) as caught:
        tc_string_decode(string)
    assert (caught.value.code, caught.value.status, caught.value.message) == (
        "invalid_tc_string",
        400,
        message,
    )


@pytest.mark.parametrize("policy_version", [4, 5, 6])
def test_strings_of_tcf_2_2_and_later_policy_versions_are_accepted(policy_version: int) -> None:
    # when
    tc = tc_string_decode(tc_string(policy_version=policy_version))
    # then
    assert tc.tcf_policy_version == policy_version


def test_a_refused_string_records_nothing(source: Any) -> None:
    # given: a string without a Disclosed Vendors segment
    submission = services.ConsentSubmission(
        decisions={"analytics": "granted"},
        anonymous_id="anon-tcf-2",
        tc_string=tc_string(disclosed=()),
    )
    # when
    with pytest.raises(TcStringInvalid):
        services.consent_submit(source=source, submission=submission)
    # then
    assert (ConsentRecord.objects.count(), ConsentState.objects.count()) == (0, 0)


def test_a_string_padded_to_6_bits_decodes_whatever_its_length() -> None:
    # given: the same consent padded to 24 bits (as @iabtcf/core does) and to 6 bits only, a
    # core segment one character past a multiple of 4, which base64 byte decoding refuses
    padded = tc_string(vendors={GOOGLE, 1, 5})
    unpadded = tc_string(vendors={GOOGLE, 1, 5}, pad_to=6)
    assert len(unpadded.split(".")[0]) % 4 == 1
    # when
    tc = tc_string_decode(unpadded)
    # then
    assert tc == tc_string_decode(padded)
    assert _vendor_ids(tc.vendors_consented) == [1, 5, GOOGLE]


def _crafted(tail: str) -> str:
    """A valid core up to the vendor sections, then `tail` bits, then a DV segment."""
    head = tc_string().split(".")[0]
    bits = "".join(format(ALPHABET.index(c), "06b") for c in head)[:213]  # through PublisherCC
    return _segment(bits + tail, pad_to=6) + "." + tc_string().split(".")[1]


@pytest.mark.parametrize(
    "tail",
    [
        # 4095 publisher restrictions of 4095 range entries each, in 70 bits
        _number(0, 17) + _number(0, 17) + _number(4095, 12) + ("0" * 6 + "00" + "1" * 12),
        # 4095 vendor ranges, the first present
        _number(65535, 16) + "1" + _number(4095, 12) + "1" + _number(1, 16) + _number(65535, 16),
        # a vendor bitfield of 65535 bits, 12 of them present
        _number(65535, 16) + "0" + "1" * 12,
    ],
    ids=["restrictions", "vendor-ranges", "vendor-bitfield"],
)
def test_counts_a_short_string_cannot_hold_are_refused_at_once(tail: str) -> None:
    # given
    crafted = _crafted(tail)
    # when
    started = time.perf_counter()
    with pytest.raises(TcStringInvalid) as caught:
        tc_string_decode(crafted)
    elapsed = time.perf_counter() - started
    # then
    assert caught.value.message == "The TC string is truncated."
    assert elapsed < 0.5


@pytest.mark.parametrize(
    ("value", "saved"),
    [("[755, 32]", [755, 32]), ("[0]", None), ("[65536]", None), ('["755"]', None)],
    ids=["vendor-ids", "zero", "past-16-bits", "text"],
)
def test_a_steward_names_a_purposes_tcf_vendors_in_the_admin(
    owner: Any, workspace: Any, value: str, saved: list[int] | None
) -> None:
    # given
    services.purposes_ensure_defaults(workspace=workspace)
    advertising = Purpose.objects.get(workspace=workspace, key="advertising")
    # when
    response = client_for(owner).post(
        reverse("admin:consent_purpose_change", args=[advertising.pk]),
        purpose_form_data(advertising, tcf_vendors=value),
    )
    # then: saved, or refused with the field's error and nothing changed
    advertising.refresh_from_db()
    if saved is None:
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["tcf_vendors"] == [
            "Enter a JSON list of IAB TCF vendor ids, e.g. [755]."
        ]
        assert advertising.tcf_vendors == []
    else:
        assert response.status_code == 302
        assert advertising.tcf_vendors == saved
