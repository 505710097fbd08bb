"""Which parts of an event are personal data, sealed under the person's key at ingestion, and
how the sealed parts go back into the plain ones when a steward or the person reads them.

An event is stored as plain `properties` and `context` (what audiences, computed traits and
timelines use) plus one sealed document `{"properties": ..., "context": ...}` holding what was
taken out of them, in the same shape: a sealed object holds only the keys taken out of the
plain object at the same place, and a sealed list runs parallel to the plain one (`None` where
an element gave nothing up). `merge_sealed` puts them back together, at any depth.

What is taken out:
- **properties**, at any depth: the value of a personal-data key (the built-in ones below, and
  the workspace's trait keys not classified as plain attributes), compared without case,
  spaces, dashes or underscores (`Phone Number`, `phone_number` and `phoneNumber` alike); any
  string (value or key) holding an email address, percent-encoded any number of times included
  (`jane%40example.com`, `jane%2540example.com`); and the
  query string and fragment of URL values (keys such as `url`, `page_url`, `referrer`,
  `href`: the plain value keeps the address without them; `search` goes whole), where forms
  and links put names, emails and tokens;
- **context**: the full IP address (the plain context keeps its /24 or /48), the device and
  advertising ids and push token (they are identifiers: their blind-indexed identities are the
  lookup), precise coordinates, any string holding an email, and the query strings of the
  page's and referrer's URLs. Context keys are not matched against the personal-data keys:
  there `name` is a library's, an app's or an operating system's.
- Traits and external ids in the context are dropped: they are stored as traits and
  identities."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, unquote_plus

# Event property keys sealed whatever the trait schema says (compared as `_folded` keys).
PII_PROPERTY_KEYS = frozenset(
    {
        "email", "emailaddress", "phone", "phonenumber", "mobile", "mobilenumber",
        "mobilephone", "telephone", "name", "firstname", "lastname", "fullname", "givenname",
        "familyname", "surname", "middlename", "address", "streetaddress", "street",
        "address1", "address2", "addressline1", "addressline2", "postalcode", "postcode",
        "zip", "zipcode", "birthday", "birthdate", "dateofbirth", "dob", "ip", "ipaddress",
        "username", "ssn", "socialsecuritynumber", "nationalid", "passportnumber", "taxid",
        "iban", "cardnumber", "creditcardnumber", "password",
    }
)  # fmt: skip
# An email address, also percent-encoded (`jane%40example.com`, as browsers put form fields
# in URLs).
# Bounded like the parts of an address (64 before the "@", 253 after): unbounded, a long
# string with an "@" near its end took seconds to search.
EMAIL_IN_TEXT = re.compile(
    r"[^@\s/?&=#]{1,64}(?:@|%40)[^@\s/?&=#]{1,253}\.[A-Za-z]{2,63}", re.IGNORECASE
)
EMAIL_MASK = "[email]"
_QUERY_KEYS = frozenset({"search"})
_CONTEXT_DROP = frozenset({"traits", "externalIds", "ip"})
# Context values that are identifiers or a precise location, by object and key.
_CONTEXT_SEALED = {
    "device": frozenset({"id", "advertisingId", "token"}),
    "location": frozenset({"latitude", "longitude"}),
}
# Deeper than this an object is sealed whole rather than walked (a 32 KB event can nest some
# thousands of levels; no SDK sends more than a few).
MAX_DEPTH = 16
_NOTHING: Any = object()  # "no part": distinct from a JSON null


@functools.lru_cache(maxsize=4096)
def _folded(key: str) -> str:
    return "".join(c for c in key.lower() if c.isalnum())


class SealedKeys:
    """The property keys sealed in a workspace: `key in keys` compares folded keys."""

    __slots__ = ("_folded",)

    def __init__(self, workspace_keys: Iterable[str] = ()) -> None:
        self._folded = PII_PROPERTY_KEYS | frozenset(_folded(k) for k in workspace_keys)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _folded(key) in self._folded

    def __repr__(self) -> str:
        return f"SealedKeys({sorted(self._folded)!r})"


@functools.lru_cache(maxsize=4096)
def _is_url_key(key: str) -> bool:
    """`url`, `URL`, `page_url`, `canonicalUrl`, `referrer`, `initial_referrer`, `href`, `link`."""
    folded = _folded(key)
    return folded.endswith(("url", "referrer")) or folded in ("href", "link")


# An "@" percent-encoded any number of times: %40, %2540, %252540, ...
_ENCODED_AT = re.compile(r"%(?:25)*40")
# Rounds of percent-decoding at most (a link in a link in a link ...).
_MAX_DECODES = 8


def _may_hold_email(text: str) -> bool:
    """Whether `text` has an "@", plain or percent-encoded however many times: else no
    email."""
    return "@" in text or ("%" in text and _ENCODED_AT.search(text) is not None)


def _decoded(text: str, unquote_text: Callable[[str], str] = unquote_plus) -> str:
    """`text` percent-decoded until nothing more decodes (as often as it was encoded, up to
    _MAX_DECODES rounds: %252540 is an "@" too). Query strings and form values read "+" as a
    space (the default); a URL's path keeps it (`unquote`)."""
    for _ in range(_MAX_DECODES):
        if "%" not in text:
            break
        decoded = unquote_text(text)
        if decoded == text:
            break
        text = decoded
    return text


def holds_email(text: str) -> bool:
    if not _may_hold_email(text):
        return False
    return EMAIL_IN_TEXT.search(text) is not None or (
        "%" in text and EMAIL_IN_TEXT.search(_decoded(text)) is not None
    )


def _plain_url(url: str) -> str:
    """The address without its query string and fragment, emails in it masked (read decoded
    when encoded: `jane%40example%2Ecom` is an address too). Only a path segment that held an
    email is decoded; the others stay as sent (a "+" or "%2F" in them is not an email's)."""
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    address = url[:cut]
    if not _may_hold_email(address):  # most addresses: no regex scan
        return address
    return "/".join(_masked_segment(segment) for segment in address.split("/"))


def _masked_segment(segment: str) -> str:
    if not _may_hold_email(segment):
        return segment
    masked = EMAIL_IN_TEXT.sub(EMAIL_MASK, segment)
    if "%" in masked:
        # Decoded as a path ("+" is a "+"): `jane+tag%2540example.com` is one address, where a
        # form's decoding would leave "jane " plain before "[email]".
        decoded = _decoded(masked, unquote)
        if EMAIL_IN_TEXT.search(decoded) is not None:
            return EMAIL_IN_TEXT.sub(EMAIL_MASK, decoded)
    return masked


def _split_url(value: str) -> tuple[Any, Any]:
    plain = _plain_url(value)
    return (plain, value) if plain != value else (value, _NOTHING)


def _split(value: Any, keys: SealedKeys | None, depth: int) -> tuple[Any, Any]:
    """(plain part or _NOTHING, sealed part or _NOTHING) of a JSON value."""
    if isinstance(value, str):
        return (_NOTHING, value) if holds_email(value) else (value, _NOTHING)
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return _NOTHING, value
        return _split_object(value, keys, depth)
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            return _NOTHING, value
        parts = [_split(item, keys, depth + 1) for item in value]
        if all(sealed is _NOTHING for _, sealed in parts):
            return value, _NOTHING
        if any(plain is _NOTHING for plain, _ in parts):
            return _NOTHING, value  # an element goes whole: so does the list (order kept)
        return [p for p, _ in parts], [None if s is _NOTHING else s for _, s in parts]
    return value, _NOTHING


def _split_object(
    value: dict[str, Any], keys: SealedKeys | None, depth: int, extra: frozenset[str] = frozenset()
) -> tuple[Any, Any]:
    plain: dict[str, Any] = {}
    sealed: dict[str, Any] = {}
    for key, item in value.items():
        if (
            key in extra
            or (keys is not None and key in keys)
            or (_may_hold_email(key) and holds_email(key))  # an address as a key
        ):
            sealed[key] = item
            continue
        if isinstance(item, str):  # most values: one look for an email, no call
            if _is_url_key(key):
                part = _split_url(item)
            elif key in _QUERY_KEYS:
                part = (_NOTHING, item) if item.strip("?") else (item, _NOTHING)
            elif _may_hold_email(item) and holds_email(item):
                part = (_NOTHING, item)
            else:
                plain[key] = item
                continue
        elif isinstance(item, dict) and keys is None and depth == 0 and key in _CONTEXT_SEALED:
            part = _split_object(item, keys, depth + 1, _CONTEXT_SEALED[key])
        elif isinstance(item, dict | list):
            part = _split(item, keys, depth + 1)
        else:
            plain[key] = item
            continue
        if part[0] is not _NOTHING:
            plain[key] = part[0]
        if part[1] is not _NOTHING:
            sealed[key] = part[1]
    return plain, (sealed or _NOTHING)


def split_properties(
    properties: dict[str, Any], keys: SealedKeys
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain, sealed) event properties; `sealed` is empty when nothing is personal."""
    plain, sealed = _split_object(properties, keys, 0)
    return plain, ({} if sealed is _NOTHING else sealed)


def split_context(
    context: dict[str, Any], ip: str | None, truncated_ip: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain, sealed) event context; the full `ip` is sealed, its truncation kept plain."""
    kept = {k: v for k, v in context.items() if k not in _CONTEXT_DROP}
    plain, sealed = _split_object(kept, None, 0)
    sealed = {} if sealed is _NOTHING else sealed
    if ip:
        sealed["ip"] = ip
        if truncated_ip:
            plain["ip_truncated"] = truncated_ip
    return plain, sealed


def merge_sealed(plain: Any, sealed: Any) -> Any:
    """The plain value with the sealed parts put back where they were taken from (see the
    module docstring); neither argument is changed. Events stored before sealing went deeper
    than one level hold sealed objects one level deep: they merge the same way."""
    if sealed is None:
        return plain
    if isinstance(plain, dict) and isinstance(sealed, dict):
        merged = dict(plain)
        for key, part in sealed.items():
            merged[key] = merge_sealed(merged[key], part) if key in merged else part
        return merged
    if isinstance(plain, list) and isinstance(sealed, list) and len(plain) == len(sealed):
        return [p if s is None else merge_sealed(p, s) for p, s in zip(plain, sealed, strict=True)]
    return sealed
