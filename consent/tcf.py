"""IAB TCF v2 consent strings: decode with `iab-tcf`, map purpose consents onto our purposes.

The CDP consumes TC strings (stores them with the consent, derives decisions from them); it is
not a CMP and never encodes one. Quirks of `iab-tcf` 0.2.x this module guards against:

- it reads past the end of a truncated string without complaint (a missing bit reads as 1,
  a missing number as 0), so the reader's position is checked against the bits it had;
- base64 decoding ignores characters outside the alphabet, so the alphabet is checked first;
- consent language and publisher country come back as bytes (`b'EN'`);
- its reading of the optional segments (disclosed/allowed vendors, publisher TC) builds vendor
  ranges by copying dicts, quadratic in the range count: a small crafted string costs seconds
  of CPU. Only the core segment carries the purpose consents we use, so only it is decoded;
  the other segments are checked for their alphabet and kept, as received, in the signals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from iab_tcf import ConsentV2, base64_decode

from consent.enums import Decision, LegalBasis
from consent.exceptions import TcStringInvalid

# A TC string with a full vendor bitfield is a few hundred characters; publisher restrictions
# and the optional segments add more. Far above anything a CMP sends, far below a cost.
MAX_TC_STRING_LENGTH = 8192
_SEGMENT = r"[A-Za-z0-9_-]+"
_TC_STRING_RE = re.compile(rf"^{_SEGMENT}(\.{_SEGMENT})*$")
_LETTERS = re.compile(r"^[A-Z]{2}$")
TCF_VERSION = 2


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


def _set_bits(bitfield: dict[int, bool]) -> frozenset[int]:
    return frozenset(position for position, value in bitfield.items() if value)


def _text(value: bytes) -> str:
    return value.decode("ascii", errors="replace")


def tc_string_decode(tc_string: str) -> TcConsent:
    """Decode the core segment of a TCF v2 string; `TcStringInvalid` for anything else."""
    text = tc_string.strip() if isinstance(tc_string, str) else ""
    if not text or len(text) > MAX_TC_STRING_LENGTH or not _TC_STRING_RE.match(text):
        raise TcStringInvalid()
    try:
        core = base64_decode(text.split(".", 1)[0])
        decoded: Any = ConsentV2(core)
    except Exception:  # the library raises bare Exception, ValueError, IndexError, ...
        raise TcStringInvalid() from None
    reader = decoded._reader
    if decoded.version != TCF_VERSION:
        raise TcStringInvalid(f"Only TCF v{TCF_VERSION} strings are accepted.")
    if reader._pointer > len(reader._consent):
        raise TcStringInvalid("The TC string is truncated.")
    language = _text(decoded.consent_language)
    country = _text(decoded.publisher_cc)
    if not _LETTERS.match(language) or not _LETTERS.match(country):
        raise TcStringInvalid()
    return TcConsent(
        tcf_policy_version=decoded.tcf_policy_version,
        cmp_id=decoded.cmp_id,
        cmp_version=decoded.cmp_version,
        vendor_list_version=decoded.vendor_list_version,
        consent_language=language,
        publisher_cc=country,
        created=decoded.created,
        last_updated=decoded.last_updated,
        purposes_consented=_set_bits(decoded.purposes_consent),
        purposes_legitimate_interests=_set_bits(decoded.purposes_legitimate_interests),
        special_features_optin=_set_bits(decoded.special_features_optin),
        is_service_specific=bool(decoded.is_service_specific),
    )


def tcf_decisions(*, tc: TcConsent, purposes: Iterable[Any]) -> dict[str, str]:
    """Our consent-based purposes that name TCF purposes: granted when the string consents to
    every one of them, denied when any is missing. Purposes on another legal basis are not
    decided by consent bits (TCF signals legitimate interests separately) and are left out."""
    decisions: dict[str, str] = {}
    for purpose in purposes:
        wanted = {int(p) for p in purpose.tcf_purposes or ()}
        if not wanted or purpose.legal_basis != LegalBasis.CONSENT:
            continue
        consented = wanted <= tc.purposes_consented
        decisions[purpose.key] = Decision.GRANTED if consented else Decision.DENIED
    return decisions
