"""IAB TCF v2 consent strings: decode them, map their consents onto our purposes.

The CDP consumes TC strings (stores them with the consent, derives decisions from them); it is
not a CMP and never encodes one. The reader is our own, after "Consent string and vendor list
formats v2" (TCF 2.2/2.3):

- every segment is read 6 bits per base64url character, as CMPs encode it (one that pads
  only to 6 bits leaves a length base64 byte decoding refuses);
- a read past the end refuses the string, so the work is bounded by the string's length
  whatever counts it claims; vendor ranges are kept as ranges, never expanded. (`iab-tcf`
  0.2.x, used before, read a missing bit as 1 and a missing number as 0, and built the vendor
  ranges of the optional segments by copying dicts: a small crafted string cost seconds.)

Refused as no longer valid under the TCF: a TCF policy version below 4 (strings from before
TCF 2.2, which the TCF says to re-establish consent for; we hold no GVL to compare a newer
version with, so 4 and later are accepted), global scope (IsServiceSpecific 0, dead since
2021-09-01), and strings without a Disclosed Vendors segment (mandatory under TCF 2.3; strings
without it are invalid since 2026-02-28). Other optional segments are kept, as received, in
the signals, not decoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from consent.enums import Decision, LegalBasis
from consent.exceptions import TcStringInvalid

# A TC string with a full vendor bitfield is a few hundred characters; publisher restrictions
# and the optional segments add more. Far above anything a CMP sends, far below a cost.
MAX_TC_STRING_LENGTH = 8192
_SEGMENT = r"[A-Za-z0-9_-]+"
_TC_STRING_RE = re.compile(rf"^{_SEGMENT}(\.{_SEGMENT})*$")
_SEXTETS = {
    char: format(value, "06b")
    for value, char in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}
_LETTERS = re.compile(r"^[A-Z]{2}$")
_EPOCH = datetime(1970, 1, 1)
TCF_VERSION = 2
MIN_TCF_POLICY_VERSION = 4  # TCF 2.2
SEGMENT_DISCLOSED_VENDORS = 1
# Publisher restriction types: 0 not allowed, 1 require consent, 2 require legitimate interests.
RESTRICTION_REQUIRE_CONSENT = 1


@dataclass(frozen=True)
class VendorIds:
    """GVL vendor ids as inclusive ranges (one range entry names up to 65535 ids in 33 bits)."""

    ranges: tuple[tuple[int, int], ...] = ()

    def __contains__(self, vendor_id: object) -> bool:
        return isinstance(vendor_id, int) and any(
            start <= vendor_id <= end for start, end in self.ranges
        )


@dataclass(frozen=True)
class PublisherRestriction:
    purpose: int
    restriction_type: int
    vendors: VendorIds


@dataclass(frozen=True)
class TcConsent:
    """What a TC string says, as far as the CDP uses it."""

    tcf_policy_version: int
    cmp_id: int
    cmp_version: int
    vendor_list_version: int
    consent_language: str
    publisher_cc: str
    created: datetime
    last_updated: datetime
    purposes_consented: frozenset[int]
    purposes_legitimate_interests: frozenset[int]
    special_features_optin: frozenset[int]
    is_service_specific: bool
    vendors_consented: VendorIds
    vendors_legitimate_interests: VendorIds
    publisher_restrictions: tuple[PublisherRestriction, ...]
    vendors_disclosed: VendorIds


class _Reader:
    """Reads one segment's fields in order; past its end, the string is refused."""

    def __init__(self, segment: str) -> None:
        self._bits = "".join(_SEXTETS[char] for char in segment)
        self._position = 0

    def _take(self, width: int) -> str:
        end = self._position + width
        if end > len(self._bits):
            raise TcStringInvalid("The TC string is truncated.")
        bits = self._bits[self._position : end]
        self._position = end
        return bits

    def number(self, width: int) -> int:
        return int(self._take(width), 2)

    def flag(self) -> bool:
        return self._take(1) == "1"

    def bitfield(self, width: int) -> frozenset[int]:
        return frozenset(i for i, bit in enumerate(self._take(width), start=1) if bit == "1")

    def letters(self) -> str:
        return "".join(chr(ord("A") + self.number(6)) for _ in range(2))

    def time(self) -> datetime:
        return _EPOCH + timedelta(seconds=self.number(36) // 10)  # deciseconds, UTC

    def ranges(self) -> VendorIds:
        entries = []
        for _ in range(self.number(12)):  # each entry reads at least 17 bits
            is_range = self.flag()
            start = self.number(16)
            entries.append((start, self.number(16) if is_range else start))
        return VendorIds(tuple(entries))

    def restrictions(self) -> tuple[PublisherRestriction, ...]:
        found = []
        for _ in range(self.number(12)):  # each restriction reads at least 20 bits
            purpose, restriction_type = self.number(6), self.number(2)
            found.append(PublisherRestriction(purpose, restriction_type, self.ranges()))
        return tuple(found)

    def vendors(self) -> VendorIds:
        """A vendor section: MaxVendorId, then a bitfield of that many bits or ranges."""
        max_vendor_id = self.number(16)
        if self.flag():
            return self.ranges()
        return VendorIds(tuple((i, i) for i in sorted(self.bitfield(max_vendor_id))))


def tc_string_decode(tc_string: str) -> TcConsent:
    """Decode a TCF v2 string (core and Disclosed Vendors segments); `TcStringInvalid` for a
    malformed one and for one the TCF no longer holds valid."""
    text = tc_string.strip() if isinstance(tc_string, str) else ""
    if not text or len(text) > MAX_TC_STRING_LENGTH or not _TC_STRING_RE.match(text):
        raise TcStringInvalid()
    core, *optional = text.split(".")
    reader = _Reader(core)
    if reader.number(6) != TCF_VERSION:
        raise TcStringInvalid(f"Only TCF v{TCF_VERSION} strings are accepted.")
    created, last_updated = reader.time(), reader.time()
    cmp_id, cmp_version, _consent_screen = reader.number(12), reader.number(12), reader.number(6)
    language = reader.letters()
    vendor_list_version, policy_version = reader.number(12), reader.number(6)
    is_service_specific, _non_standard_texts = reader.flag(), reader.flag()
    special_features = reader.bitfield(12)
    purposes_consented, purposes_li = reader.bitfield(24), reader.bitfield(24)
    _purpose_one_treatment = reader.flag()
    country = reader.letters()
    vendors_consented, vendors_li = reader.vendors(), reader.vendors()
    restrictions = reader.restrictions()
    if not _LETTERS.match(language) or not _LETTERS.match(country):
        raise TcStringInvalid()
    if policy_version < MIN_TCF_POLICY_VERSION:
        raise TcStringInvalid(
            f"TC strings of a TCF policy version below {MIN_TCF_POLICY_VERSION} (TCF 2.2) are "
            "no longer valid; consent has to be asked again."
        )
    if not is_service_specific:
        raise TcStringInvalid("Only service-specific TC strings are accepted.")
    disclosed = None
    for segment in optional:
        segment_reader = _Reader(segment)
        if segment_reader.number(3) == SEGMENT_DISCLOSED_VENDORS:
            disclosed = segment_reader.vendors()
            break
    if disclosed is None:
        raise TcStringInvalid("The TC string has no Disclosed Vendors segment (TCF 2.3).")
    return TcConsent(
        tcf_policy_version=policy_version,
        cmp_id=cmp_id,
        cmp_version=cmp_version,
        vendor_list_version=vendor_list_version,
        consent_language=language,
        publisher_cc=country,
        created=created,
        last_updated=last_updated,
        purposes_consented=purposes_consented,
        purposes_legitimate_interests=purposes_li,
        special_features_optin=special_features,
        is_service_specific=is_service_specific,
        vendors_consented=vendors_consented,
        vendors_legitimate_interests=vendors_li,
        publisher_restrictions=restrictions,
        vendors_disclosed=disclosed,
    )


def _vendor_consented(tc: TcConsent, *, vendor: int, purposes: set[int]) -> bool:
    """The vendor was disclosed, has consent, and no publisher restriction on one of `purposes`
    forbids it or limits it to legitimate interests."""
    if vendor not in tc.vendors_consented or vendor not in tc.vendors_disclosed:
        return False
    return not any(
        restriction.purpose in purposes
        and vendor in restriction.vendors
        and restriction.restriction_type != RESTRICTION_REQUIRE_CONSENT
        for restriction in tc.publisher_restrictions
    )


def tcf_decisions(*, tc: TcConsent, purposes: Iterable[Any]) -> dict[str, str]:
    """Our consent-based purposes that name TCF purposes: granted when the string consents to
    every one of them, denied when any is missing. A sale/share purpose also needs every vendor
    it names (`tcf_vendors`) to pass `_vendor_consented`; one naming no vendor is granted by no
    string (the string says nothing about who would receive the data) but is still denied when
    the person refused one of its TCF purposes: a refusal needs no vendor. Purposes on another
    legal basis are left out."""
    decisions: dict[str, str] = {}
    for purpose in purposes:
        wanted = {int(p) for p in purpose.tcf_purposes or ()}
        if not wanted or purpose.legal_basis != LegalBasis.CONSENT:
            continue
        vendors = {int(v) for v in purpose.tcf_vendors or ()}
        consented = wanted <= tc.purposes_consented
        if consented and purpose.sale_or_share and not vendors:
            continue  # neither a grant nor a refusal the person never made
        if consented and purpose.sale_or_share:
            consented = all(_vendor_consented(tc, vendor=v, purposes=wanted) for v in vendors)
        decisions[purpose.key] = Decision.GRANTED if consented else Decision.DENIED
    return decisions
