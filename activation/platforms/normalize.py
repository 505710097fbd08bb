"""Normalization and SHA-256 hashing of match keys, exactly as each ad platform documents them.

Google Customer Match and Meta Custom Audiences both match on SHA-256 digests (lowercase hex,
UTF-8 input) of *normalized* values, and they normalize differently. A value normalized the
other platform's way hashes to a digest that matches nobody, silently. The rules and their
sources are in docs/destinations.md; the short version:

| field      | Google Customer Match                      | Meta Custom Audiences               |
|------------|--------------------------------------------|-------------------------------------|
| email      | trim all whitespace, lowercase; gmail.com / | trim, lowercase                     |
|            | googlemail.com: drop dots and `+tag`        |                                     |
| phone      | E.164 with `+` (`+16505551212`)             | digits with country code, no `+`    |
| first/last | lowercase, no punctuation, trimmed, no      | lowercase, no punctuation, no       |
|  name      | prefix (Mrs.) or suffix (Jr.)               | spaces; UTF-8 letters kept (valéry) |
| country    | ISO-3166-1 alpha-2, **not hashed** (`US`)   | lowercase alpha-2, hashed (`us`)    |
| postcode   | trimmed, **not hashed**                     | lowercase, no spaces or dashes, US  |
|            |                                            | first 5 digits, hashed              |

Every normalizer takes one raw value and returns the normalized text, or None when the value
is empty or cannot be normalized (an email without `@`, a phone without a country code and no
default region). None means "leave the field out": an empty string is never hashed.

A value of a hashed key that already is a SHA-256 digest (64 hex digits, as a source that
hashes before sending gives it) is passed through, lowercased, by its normalizer; `digest`
then leaves it as it is instead of hashing it twice. Keys sent in clear (Google's country and
postcode, Meta's MADID and EXTERN_ID) are never read as digests.

This module is pure (no Django models, no I/O) so that the sync code and the tests can call it
anywhere; it never logs the values it sees.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import phonenumbers
from phonenumbers.geodata.locale import LOCALE_DATA

__all__ = [
    "MetaDateOfBirth",
    "country_code",
    "digest",
    "google_country",
    "google_email",
    "google_name",
    "google_phone",
    "google_postal_code",
    "is_sha256_hex",
    "meta_city",
    "meta_country",
    "meta_date_of_birth",
    "meta_email",
    "meta_external_id",
    "meta_first_initial",
    "meta_gender",
    "meta_mobile_advertiser_id",
    "meta_name",
    "meta_phone",
    "meta_state",
    "meta_zip",
    "sha256_hex",
]

MAX_VALUE_LENGTH = 256
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
# What Meta's SDK trims from both ends of an email: whitespace, NUL and dots.
_META_EMAIL_TRIM = " \t\r\n\0\x0b."

# Google: "Don't include prefixes such as Mrs." / "Don't include suffixes such as Jr."
# (Data Manager API, Format user data). Matched as whole tokens after punctuation is removed,
# and only when another token remains, so that a person whose name *is* "Miss" keeps it.
_NAME_PREFIXES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame"})
_NAME_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq"})

_US_ZIP_RE = re.compile(r"^(\d{5})(?:-?\d{4})?$")
# Google: a US ZIP+4 may come as 94025-1234, 94025 1234 or 940251234; groups: ZIP, extension.
_US_ZIP_PLUS4_RE = re.compile(r"^(\d{5})(?:[-\s]?(\d{4}))?$")
_SHA256_HEX_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_ISO_DATE_RE = re.compile(r"^(\d{4})[-/.]?(\d{2})[-/.]?(\d{2})$")

# FIPS/ANSI two-letter codes of the US states, DC and the inhabited territories (Meta: "Use the
# 2-character ANSI abbreviation code in lowercase").
US_STATES: dict[str, str] = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca",
    "colorado": "co", "connecticut": "ct", "delaware": "de", "district of columbia": "dc",
    "florida": "fl", "georgia": "ga", "hawaii": "hi", "idaho": "id", "illinois": "il",
    "indiana": "in", "iowa": "ia", "kansas": "ks", "kentucky": "ky", "louisiana": "la",
    "maine": "me", "maryland": "md", "massachusetts": "ma", "michigan": "mi", "minnesota": "mn",
    "mississippi": "ms", "missouri": "mo", "montana": "mt", "nebraska": "ne", "nevada": "nv",
    "new hampshire": "nh", "new jersey": "nj", "new mexico": "nm", "new york": "ny",
    "north carolina": "nc", "north dakota": "nd", "ohio": "oh", "oklahoma": "ok", "oregon": "or",
    "pennsylvania": "pa", "rhode island": "ri", "south carolina": "sc", "south dakota": "sd",
    "tennessee": "tn", "texas": "tx", "utah": "ut", "vermont": "vt", "virginia": "va",
    "washington": "wa", "west virginia": "wv", "wisconsin": "wi", "wyoming": "wy",
    "american samoa": "as", "guam": "gu", "northern mariana islands": "mp",
    "puerto rico": "pr", "us virgin islands": "vi", "united states virgin islands": "vi",
}  # fmt: skip
_US_STATE_CODES = frozenset(US_STATES.values())

# Common English names and abbreviations that are not ISO codes or names in phonenumbers' data.
_COUNTRY_ALIASES = {
    "usa": "US", "us of a": "US", "united states of america": "US", "america": "US",
    "uk": "GB", "great britain": "GB", "england": "GB", "scotland": "GB", "wales": "GB",
    "northern ireland": "GB",
}  # fmt: skip
# Region codes in phonenumbers' data that are not ISO 3166-1 alpha-2 country codes.
_NOT_ISO_REGIONS = frozenset({"AC", "TA", "AN", "001"})


def sha256_hex(value: str) -> str:
    """SHA-256 of the UTF-8 bytes, as the 64 lowercase hex digits both platforms expect."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """Whether `value` looks like a SHA-256 digest: 64 hex digits, in either case."""
    return bool(_SHA256_HEX_RE.match(value))


def digest(value: str) -> str:
    """What a hashed key carries for a normalized `value`: its SHA-256, or the value itself
    when a normalizer passed it through as already hashed. (No normalized form of a real
    email, phone, name, place, date or gender is 64 hex digits.)"""
    return value if is_sha256_hex(value) else sha256_hex(value)


# --- shared helpers -----------------------------------------------------------------------


def _text(raw: object) -> str | None:
    """The raw value as NFC text, or None for missing, empty or oversized values.

    NFC first, so that a decomposed "e" + combining acute and a precomposed "é" hash alike."""
    if raw is None or isinstance(raw, bool):
        return None
    text = unicodedata.normalize("NFC", str(raw)).strip()
    if not text or len(text) > MAX_VALUE_LENGTH:
        return None
    return text


def _prehashed(raw: object) -> str | None:
    """The value, lowercased, when it already is a SHA-256 digest; None otherwise.

    A source that hashed an email before sending it cannot have it normalized, or hashed,
    again; Segment's hashing helpers pass such values through the same way."""
    text = _text(raw)
    return text.lower() if text is not None and is_sha256_hex(text) else None


def _letters_only(text: str, *, keep_digits: bool = False, keep_spaces: bool = False) -> str:
    """Letters (any script, with their combining marks); optionally digits and single spaces.

    Removes punctuation, symbols and, unless kept, whitespace: the "no punctuation, no special
    characters, no spaces" of Meta's city/state rules and the "no punctuation" of both
    platforms' name rules, without dropping accented or non-Latin letters."""
    out: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if category[0] in "LM" or (keep_digits and category[0] == "N"):
            out.append(ch)
        elif keep_spaces and ch.isspace():
            out.append(" ")
    result = "".join(out)
    if keep_spaces:
        result = " ".join(result.split())
    return result


def _fold(text: str) -> str:
    """A comparison key for country and state names: no accents, case or punctuation."""
    decomposed = unicodedata.normalize("NFKD", text.lower()).replace("-", " ")
    kept = [
        ch if unicodedata.category(ch)[0] == "L" else " " if ch.isspace() else ""
        for ch in decomposed
    ]
    return " ".join("".join(kept).split())


@cache
def _country_tables() -> tuple[frozenset[str], dict[str, str]]:
    """ISO alpha-2 codes, and country names in every language phonenumbers knows -> code."""
    codes = (set(LOCALE_DATA) | set(phonenumbers.SUPPORTED_REGIONS)) - _NOT_ISO_REGIONS
    names: dict[str, str | None] = {}
    for code in codes:
        for value in LOCALE_DATA.get(code, {}).values():
            name = value
            if value.startswith("*"):  # a reference to another language's entry
                name = LOCALE_DATA[code].get(value[1:], "")
            key = _fold(name)
            if not key:
                continue
            # A name shared by two countries in different languages is ambiguous: drop it.
            names[key] = None if names.get(key, code) != code else code
    table = {key: code for key, code in names.items() if code}
    for alias, code in _COUNTRY_ALIASES.items():
        table[alias] = code
    return frozenset(codes), table


def country_code(raw: object) -> str | None:
    """ISO 3166-1 alpha-2 code, uppercase, from a code (`us`, `GB`) or a name (`United States`,
    `Deutschland`); None when neither."""
    text = _text(raw)
    if text is None:
        return None
    codes, names = _country_tables()
    if len(text) == 2 and text.isascii() and text.upper() in codes:
        return text.upper()
    return names.get(_fold(text))


def _e164(raw: object, default_region: str | None) -> str | None:
    """E.164 (`+16505551212`) from any common phone spelling.

    With a default region, national numbers (`(650) 555-1212`) and the region's international
    prefix (`0049 …` in DE) are understood. Without one, a number must carry its country code:
    either after `+`, or as digits, which are read as country code + number once leading zeros
    are removed (Meta's rule: "Remove symbols, letters, and any leading zeros")."""
    text = _text(raw)
    if text is None:
        return None
    region = default_region.upper() if default_region else None
    candidates = [text]
    if region is None and not text.startswith("+"):
        digits = re.sub(r"\D", "", text).lstrip("0")
        if not digits:
            return None
        candidates = [f"+{digits}"]
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


# --- Google Customer Match ------------------------------------------------------------------


def google_email(raw: object, *, canonicalize_gmail: bool = True) -> str | None:
    """Google: lowercase; trim leading, trailing and intermediate whitespace; for gmail.com and
    googlemail.com remove every `.` and the `+tag` before the `@`.

    `cloudy.sanfrancisco+shopping@gmail.com` -> `cloudysanfrancisco@gmail.com`;
    `user.name+NYC@Example.com` -> `user.name+nyc@example.com` (other domains keep both).
    `canonicalize_gmail=False` gives the classic Customer Match rule (trim and lowercase only).
    """
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    text = _text(raw)
    if text is None:
        return None
    value = "".join(text.split()).lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or "@" in local:
        return None
    if canonicalize_gmail and domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return None
    return f"{local}@{domain}"


def google_phone(raw: object, *, default_region: str | None = None) -> str | None:
    """Google: E.164 with the leading `+` and the country code (`(800)555-0100` in the US ->
    `+18005550100`)."""
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    return _e164(raw, default_region)


def google_name(raw: object) -> str | None:
    """Google: lowercase, no punctuation, no leading or trailing whitespace, no prefix (Mrs.)
    or suffix (Jr.). Accents are kept (Google's own template spells `zoë`, `pérez`)."""
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    text = _text(raw)
    if text is None:
        return None
    tokens = _letters_only(text.lower(), keep_spaces=True).split()
    if len(tokens) > 1 and tokens[0] in _NAME_PREFIXES:
        tokens = tokens[1:]
    if len(tokens) > 1 and tokens[-1] in _NAME_SUFFIXES:
        tokens = tokens[:-1]
    return " ".join(tokens) or None


def google_country(raw: object) -> str | None:
    """Google: ISO-3166-1 alpha-2 (`US`). Sent in clear: Google does not hash country codes."""
    return country_code(raw)


def google_postal_code(raw: object, *, country: str | None = None) -> str | None:
    """Google: trimmed; for the US, 5 digits or ZIP+4, the extension written after a dash
    (`94025 1234` -> `94025-1234`). Sent in clear, never hashed."""
    text = _text(raw)
    if text is None:
        return None
    value = " ".join(text.split())
    if country_code(country) == "US":
        match = _US_ZIP_PLUS4_RE.match(value)
        if not match:
            return None
        return f"{match[1]}-{match[2]}" if match[2] else match[1]
    return value


# --- Meta Custom Audiences --------------------------------------------------------------------


def meta_email(raw: object) -> str | None:
    """Meta: "Trim any leading and trailing spaces. Convert all characters to lowercase."
    Like Meta's SDK, a `.` at either end goes too (`a@b.com.` -> `a@b.com`). No gmail
    rewriting: Meta documents none, and its SDK does none."""
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    text = _text(raw)
    if text is None:
        return None
    value = text.strip(_META_EMAIL_TRIM).lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return None
    return value


def meta_phone(raw: object, *, default_region: str | None = None) -> str | None:
    """Meta: digits only, country code included, no `+`, no leading zeros
    (US `(650)555-1212` -> `16505551212`)."""
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    e164 = _e164(raw, default_region)
    return e164[1:] if e164 else None


def meta_name(raw: object) -> str | None:
    """Meta FN/LN: lowercase, no punctuation (and no spaces); letters of any script kept as
    UTF-8 (`Valéry` -> `valéry`, `정` -> `정`), as Meta's documented examples show.

    Meta's Python SDK instead keeps a-z only (`Zoë` -> `zo`); the documentation wins here
    because its published digests are the ones Meta matches against."""
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    text = _text(raw)
    if text is None:
        return None
    return _letters_only(text.lower()) or None


def meta_first_initial(raw: object) -> str | None:
    """Meta FI: the first letter of the normalized first name; none from a name that came
    already hashed."""
    name = meta_name(raw)
    return name[0] if name and not is_sha256_hex(name) else None


def meta_city(raw: object) -> str | None:
    """Meta CT: lowercase, no punctuation, no special characters, no spaces
    (`New York` -> `newyork`)."""
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    text = _text(raw)
    if text is None:
        return None
    return _letters_only(text.lower()) or None


def meta_state(raw: object, *, country: str | None = None) -> str | None:
    """Meta ST: for the US the 2-letter ANSI code in lowercase (`California`, `CA` -> `ca`);
    elsewhere lowercase with no punctuation, special characters or spaces.

    Without a country, a value that is a US state name or code is taken as one."""
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    text = _text(raw)
    if text is None:
        return None
    iso = country_code(country)
    folded = _fold(text)
    us_code = US_STATES.get(folded) or (folded if folded in _US_STATE_CODES else None)
    if iso == "US":
        return us_code
    if iso is None and us_code:
        return us_code
    return _letters_only(text.lower(), keep_digits=True) or None


def meta_zip(raw: object, *, country: str | None = None) -> str | None:
    """Meta ZIP: lowercase, no spaces, no dash; US: the first 5 digits only (`94025-1234` ->
    `94025`); UK: area, district and sector (`M1 1AE` -> `m11ae`)."""
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    text = _text(raw)
    if text is None:
        return None
    iso = country_code(country)
    match = _US_ZIP_RE.match(text.replace(" ", ""))
    if iso == "US":
        return match.group(1) if match else None
    if iso is None and match and "-" in text:
        return match.group(1)  # ZIP+4 spelling, country unknown: the SDK keeps the first part
    value = re.sub(r"[\s\-]+", "", text.lower())
    return value or None


def meta_country(raw: object) -> str | None:
    """Meta COUNTRY: lowercase ISO 3166-1 alpha-2 (`United States` -> `us`), hashed."""
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    code = country_code(raw)
    return code.lower() if code else None


def meta_gender(raw: object) -> str | None:
    """Meta GEN: `m` or `f` (punctuation aside: `M.` -> `m`); anything else is left out."""
    if (hashed := _prehashed(raw)) is not None:
        return hashed
    text = _text(raw)
    if text is None:
        return None
    value = _letters_only(text.lower())
    if value in {"m", "male", "man"}:
        return "m"
    if value in {"f", "female", "woman"}:
        return "f"
    return None


@dataclass(frozen=True)
class MetaDateOfBirth:
    year: str  # DOBY, "1997"
    month: str  # DOBM, "02"
    day: str  # DOBD, "16"

    @property
    def yyyymmdd(self) -> str:
        """The single-field form of Meta's `db` parameter: `19970216`."""
        return f"{self.year}{self.month}{self.day}"

    def __repr__(self) -> str:  # a birth date is personal data: never in logs or reprs
        return "MetaDateOfBirth(<redacted>)"


def meta_date_of_birth(raw: object, *, today: dt.date | None = None) -> MetaDateOfBirth | None:
    """Meta DOBY/DOBM/DOBD: `YYYY` (1900 to the current year), `MM`, `DD`.

    Accepts a date, a datetime, or a year-first string (`1997-02-16`, `1997/02/16`,
    `19970216`). Day-month orders such as `2/16/1997` are ambiguous and refused."""
    if isinstance(raw, dt.datetime):
        value = raw.date()
    elif isinstance(raw, dt.date):
        value = raw
    else:
        text = _text(raw)
        if text is None:
            return None
        match = _ISO_DATE_RE.match(text)
        if not match:
            return None
        try:
            value = dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return None
    current_year = (today or dt.date.today()).year
    if not 1900 <= value.year <= current_year:
        return None
    return MetaDateOfBirth(f"{value.year:04d}", f"{value.month:02d}", f"{value.day:02d}")


def meta_external_id(raw: object) -> str | None:
    """Meta EXTERN_ID: the advertiser's own id, trimmed; sent unhashed, so it must be a
    pseudonymous id (never an email or a phone number)."""
    return _text(raw)


def meta_mobile_advertiser_id(raw: object) -> str | None:
    """Meta MADID: IDFA or AAID, lowercase with its hyphens; sent unhashed."""
    text = _text(raw)
    return text.lower() if text else None
