"""A logging filter that redacts email addresses and phone numbers from every record, and cuts
IP addresses to the prefix the events keep in plain (IPv4 /24, IPv6 /48; loopback left as it
is): the message, its arguments, the formatted exception and the stack. Installed on every
handler in settings (LOGGING) and on gunicorn's (cdp.core.gunicorn_logging); it is the last line of
defence, not a licence to log personal data.

Request lines (runserver's and gunicorn's access logs, referers) carry identifiers in their
query strings, percent-encoded (`?email=jane%40example.com`, `?phone=%2B1415...`) or not
looking like an email or a phone at all (`?userId=cust-123`): the values of identifier and
credential parameters are masked whatever they hold, and the others are looked at decoded."""

from __future__ import annotations

import ipaddress
import logging
import re
import traceback
from urllib.parse import unquote_plus

# "@" itself, or percent-encoded once or twice (%40, %2540) as in a URL. A match starts only
# where a run of local-part characters does: tried from every position of a long run (any
# client can send an 8 KB Referer), the search took time quadratic in the run's length.
EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+(?:@|%(?:25)?40)[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"
)
# A phone number: an optional "+" (or "%2B", its URL encoding), then 8 to 15 digits with spaces,
# dots, dashes or brackets between them. ISO dates and times (2026-11-28, 14:36:42) are left
# alone.
PHONE_RE = re.compile(
    r"(?<![\w.:-])(?!\d{4}-\d{2}-\d{2})(?:\+|%2[Bb])?\(?\d(?:[\s().\-]{0,2}\d){7,14}(?![\w:])"
)
# A URL's query string: from "?" to the end of the URL (white space, a quote, a fragment).
QUERY_RE = re.compile(r"\?([^\s\"'<>#]+)")
# Query parameters whose values are masked whatever they hold, compared without case, "_" or
# "-" (user_id, userId and user-id alike): the built-in identifier types (profiles.enums
# .IdentifierType, which a test keeps in step), and the credentials a URL may carry (an access
# export's download token, a source's write key).
MASKED_PARAMS = frozenset(
    {"userid", "anonymousid", "email", "phone", "deviceid", "advertisingid", "token", "writekey"}
)
# ...and any parameter named like an id (crm_id, customerId, id; not "paid" or "valid"): a
# workspace's own identifier types are looked up by their names (?crm_id=C-001).
ID_PARAM_RE = re.compile(r"(?:^|[_-])[iI][dD]$|[a-z0-9]I[dD]$")
# The profile lookup (/api/v1/profiles/?TYPE=VALUE) takes any identifier type by name: there,
# every parameter but the paging ones is masked.
PROFILE_LOOKUP_PATHS = ("/profiles/", "/profiles")
PAGING_PARAMS = frozenset({"cursor", "pagesize"})
PARAM_MASK = "[redacted]"
MAX_URL_DEPTH = 2
# UUIDs and ISO dates/times are digit runs too: they are set aside before phone numbers are
# looked for, so that neither a UUID whose first group is all digits ("12345678-1234-...") nor a
# number written before a date ("batch 7 2026-11-28") is taken for a phone number.
KEEP_RE = re.compile(
    r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b"
    r"|\b(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|\b(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:[.,]\d{1,9})?"
)
# IP addresses (a client's, in every access log line) are personal data: cut to the prefix the
# events keep in plain (profiles.ingest.truncate_ip). Candidates here, checked by `ipaddress`:
# an IPv4 address (not part of a longer dotted run such as a version 1.2.3.4.5), or hex groups
# and colons holding "::" or eight groups (a time such as 14:36:42 is neither; the IPv4 part of
# ::ffff:203.0.113.9 is cut as IPv4).
IP_RE = re.compile(
    r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"
    r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:.])"
    r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?::"
    r"(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?(?![\w:.])"
)
EMAIL_MASK = "[email redacted]"
PHONE_MASK = "[phone redacted]"


def _truncated_ip(match: re.Match[str]) -> str:
    found = match.group()
    try:
        address = ipaddress.ip_address(found)
    except ValueError:
        return found
    if address.is_loopback or address.is_unspecified:
        return found
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def _redact_phones(text: str) -> str:
    """Phone numbers masked, IP addresses cut (see IP_RE); UUIDs, ISO dates and times left as
    they are."""
    parts: list[str] = []
    start = 0
    for kept in KEEP_RE.finditer(text):
        parts.append(_redact_digits(text[start : kept.start()]))
        parts.append(kept.group())
        start = kept.end()
    parts.append(_redact_digits(text[start:]))
    return "".join(parts)


def _redact_digits(text: str) -> str:
    if "." not in text and ":" not in text:
        return PHONE_RE.sub(PHONE_MASK, text)
    parts: list[str] = []
    start = 0
    for ip in IP_RE.finditer(text):
        parts.append(PHONE_RE.sub(PHONE_MASK, text[start : ip.start()]))
        parts.append(_truncated_ip(ip))
        start = ip.end()
    parts.append(PHONE_RE.sub(PHONE_MASK, text[start:]))
    return "".join(parts)


def _redact_query(match: re.Match[str], depth: int) -> str:
    lookup = match.string.endswith(PROFILE_LOOKUP_PATHS, 0, match.start())
    parts = match.group(1).split("&")
    for index, part in enumerate(parts):
        name, sep, value = part.partition("=")
        if not value:
            continue
        key = unquote_plus(name)
        normalized = key.lower().replace("_", "").replace("-", "")
        if (
            normalized in MASKED_PARAMS
            or ID_PARAM_RE.search(key)
            or (lookup and normalized not in PAGING_PARAMS)
        ):
            parts[index] = f"{name}{sep}{PARAM_MASK}"
        elif "%" in value or "+" in value:
            # Decoded, a value may be an email, a phone, or a URL with a query string of its
            # own (?next=...), looked into a few levels deep, no more: this runs on every record.
            decoded = unquote_plus(value)
            if depth < MAX_URL_DEPTH:
                cleaned = _redact(decoded, depth + 1)
            else:
                cleaned = _redact_text(decoded)
            if cleaned != decoded:
                parts[index] = f"{name}{sep}{cleaned}"
    return "?" + "&".join(parts)


def _redact_text(text: str) -> str:
    if "@" in text or "%40" in text or "%2540" in text:
        text = EMAIL_RE.sub(EMAIL_MASK, text)
    return _redact_phones(text)


def _redact(text: str, depth: int) -> str:
    if "?" in text and "=" in text:
        text = QUERY_RE.sub(lambda match: _redact_query(match, depth), text)
    return _redact_text(text)


def redact(text: str) -> str:
    """Replace emails and phone numbers in `text`, and the values of identifier parameters in
    its URLs' query strings."""
    return _redact(text, 0)


class PiiRedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
