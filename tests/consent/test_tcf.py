"""IAB TCF v2 strings: decoding, the refusals around it, and the mapping of TCF purpose
consents onto our purposes (vendor consents and publisher restrictions: test_tcf_vendors.py).

Golden vectors. Encoded once (not at test time) with npm `@iabtcf/core` 1.5.6 under Node 20,
`TCString.encode(tcModel, {segments: [CORE, VENDORS_DISCLOSED, PUBLISHER_TC]})` on a TCModel
built from a minimal inline GVL (gvlSpecificationVersion 3, vendorListVersion 42,
tcfPolicyVersion 4, purposes 1-11, special feature 1, vendors 1 and 755). Every model: cmpId
300, cmpVersion 2, consentScreen 1, consentLanguage EN, publisherCountryCode DE,
isServiceSpecific true, created = lastUpdated = 2026-11-01T12:00:00Z, vendors 1 and 755
disclosed (`.IF5wAgAAgLzA`, mandatory since TCF 2.3), and the publisher-TC segment the encoder
adds (`.YAAAAAAAAAAA`). `@iabtcf/core`'s own decoder read each back as listed before it was
copied here.
"""

from __future__ import annotations

import base64
import time
from datetime import datetime
from typing import Any

import pytest

from consent import services
from consent.exceptions import TcStringInvalid
from consent.tcf import tc_string_decode, tcf_decisions

# purposes 1-10 consented; vendors 1 and 755
TC_ALL = "CQtB6GAQtB6GAEsACBENAqEgAP_AAAAAAAYgF5wAgAAgLzAAAAAA.IF5wAgAAgLzA.YAAAAAAAAAAA"
# purposes 1, 8, 9 consented; vendor 1
TC_ANALYTICS_ONLY = "CQtB6GAQtB6GAEsACBENAqEgAIGAAAAAAAYgAAoAAAAA.IF5wAgAAgLzA.YAAAAAAAAAAA"
# purposes 1, 2, 3, 4, 7 consented; legitimate interests 2, 7; vendors 1, 755; special feature 1
TC_ADVERTISING = "CQtB6GAQtB6GAEsACBENAqEoAPIAAEIAAAYgF5wAgAAgLzAAAAAA.IF5wAgAAgLzA.YAAAAAAAAAAA"
# nothing consented
TC_NONE = "CQtB6GAQtB6GAEsACBENAqEgAAAAAAAAAAYgAAAAAAAA.IF5wAgAAgLzA.YAAAAAAAAAAA"
# purposes 1, 3, 4; LI 2, 7; vendors 1, 755; special feature 1; a publisher-TC segment with
# publisher consent for purpose 1
TC_SEGMENTED = "CQtB6GAQtB6GAEsACBENAqEoALAAAEIAAAYgF5wAgAAgLzAAAAAA.IF5wAgAAgLzA.cAAAAAAAAAAA"
# A TCF v1.1 string (the iab-tcf project's own test vector): not accepted.
TC_V1 = "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA"


@pytest.mark.parametrize(
    ("tc_string", "consented", "legitimate", "special"),
    [
        (TC_ALL, set(range(1, 11)), set(), set()),
        (TC_ANALYTICS_ONLY, {1, 8, 9}, set(), set()),
        (TC_ADVERTISING, {1, 2, 3, 4, 7}, {2, 7}, {1}),
        (TC_NONE, set(), set(), set()),
        (TC_SEGMENTED, {1, 3, 4}, {2, 7}, {1}),
    ],
    ids=["all", "analytics-only", "advertising", "none", "segmented"],
)
def test_golden_vectors_decode_to_what_they_encode(
    tc_string: str, consented: set[int], legitimate: set[int], special: set[int]
) -> None:
    # when
    tc = tc_string_decode(tc_string)
    # then
    assert tc.purposes_consented == consented
    assert tc.purposes_legitimate_interests == legitimate
    assert tc.special_features_optin == special
    assert (tc.tcf_policy_version, tc.cmp_id, tc.cmp_version, tc.vendor_list_version) == (
        4,
        300,
        2,
        42,
    )
    # text, not bytes
    assert (tc.consent_language, tc.publisher_cc) == ("EN", "DE")
    assert tc.created == datetime(2026, 11, 1, 12, 0)
    assert tc.is_service_specific is True


@pytest.mark.django_db
def test_decisions_map_tcf_purposes_onto_consent_purposes(workspace: Any) -> None:
    # given: the default purposes (analytics 8+9, personalization 5+6, advertising 2+3+4+7,
    # profiling 3+5, necessary and marketing_email without TCF purposes); advertising, a sale
    # or sharing, goes to vendor 755, which every string below but TC_NONE consents to
    purposes = services.purposes_ensure_defaults(workspace=workspace)
    next(p for p in purposes if p.key == "advertising").tcf_vendors = [755]
    # when
    analytics_only = tcf_decisions(tc=tc_string_decode(TC_ANALYTICS_ONLY), purposes=purposes)
    advertising = tcf_decisions(tc=tc_string_decode(TC_ADVERTISING), purposes=purposes)
    everything = tcf_decisions(tc=tc_string_decode(TC_ALL), purposes=purposes)
    # then: all of a purpose's TCF purposes consented -> granted, any missing -> denied
    assert analytics_only == {
        "analytics": "granted",
        "personalization": "denied",
        "advertising": "denied",
        "profiling": "denied",
    }
    assert advertising == {
        "analytics": "denied",
        "personalization": "denied",
        "advertising": "granted",
        "profiling": "denied",  # 3 consented, 5 not
    }
    assert set(everything.values()) == {"granted"}
    assert "necessary" not in everything and "marketing_email" not in everything


@pytest.mark.django_db
def test_purposes_on_another_legal_basis_are_not_decided_by_consent_bits(workspace: Any) -> None:
    # given: analytics moved to legitimate interests
    purposes = services.purposes_ensure_defaults(workspace=workspace)
    analytics = next(p for p in purposes if p.key == "analytics")
    analytics.legal_basis = "legitimate_interests"
    # when
    decisions = tcf_decisions(tc=tc_string_decode(TC_NONE), purposes=purposes)
    # then
    assert "analytics" not in decisions
    assert decisions["personalization"] == "denied"  # still decided: consent, no consent bits


def _truncated(tc_string: str, keep: int) -> str:
    return tc_string.split(".", maxsplit=1)[0][:keep]


@pytest.mark.parametrize(
    "tc_string",
    [
        "",
        "   ",
        "not a tc string",
        "CQtB6GAQtB6GAEsA!ACBENAqEgAIGAAAAAAAYgAAoAAAAA",  # outside the base64url alphabet
        "CQtB6GAQtB6GAEsACBENAqEgAIGAAAAAAAYgAAoAAAAA..YAAAAAAAAAAA",  # an empty segment
        _truncated(TC_ALL, 20),  # iab-tcf, used before, read past its end without complaint
        _truncated(TC_ANALYTICS_ONLY, 40),
        TC_V1,
        "A" * 44,  # version 0
        "C" + "A" * 9000,  # longer than any CMP sends
    ],
    ids=[
        "empty",
        "blank",
        "prose",
        "alphabet",
        "empty-segment",
        "truncated-20",
        "truncated-40",
        "tcf-v1",
        "version-0",
        "too-long",
    ],
)
def test_anything_but_a_whole_v2_string_is_refused(tc_string: str) -> None:
    # when / then
    with pytest.raises(TcStringInvalid) as caught:
        tc_string_decode(tc_string)
    assert caught.value.code == "invalid_tc_string"
    assert caught.value.status == 400


def _bits_to_segment(bits: str) -> str:
    bits += "0" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_crafted_disclosed_vendors_segment_costs_nothing() -> None:
    # given: a disclosed-vendors segment of 100 ranges 1-65535 (600 characters); iab-tcf's
    # decode() built and copied a 65535-entry dict per range: seconds of CPU. Ranges are kept.
    ranges = 100
    bits = "001" + format(65535, "016b") + "1" + format(ranges, "012b")
    bits += ("1" + format(1, "016b") + format(65535, "016b")) * ranges
    crafted = TC_ANALYTICS_ONLY.split(".", maxsplit=1)[0] + "." + _bits_to_segment(bits)
    # when
    started = time.perf_counter()
    tc = tc_string_decode(crafted)
    elapsed = time.perf_counter() - started
    # then
    assert tc.purposes_consented == {1, 8, 9}
    assert elapsed < 0.5
