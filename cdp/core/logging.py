"""A logging filter that redacts email addresses and phone numbers from every record: the
message, its arguments, the formatted exception and the stack. Installed on every handler in
settings (LOGGING); it is the last line of defence, not a licence to log personal data."""

from __future__ import annotations

import logging
import re
import traceback

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
# A phone number: an optional "+", then 8 to 15 digits with spaces, dots, dashes or brackets
# between them. ISO dates and times (2026-11-28, 14:36:42) are left alone.
PHONE_RE = re.compile(
    r"(?<![\w.:-])(?!\d{4}-\d{2}-\d{2})\+?\(?\d(?:[\s().\-]{0,2}\d){7,14}(?![\w:])"
)
# UUIDs and ISO dates/times are digit runs too: they are set aside before phone numbers are
# looked for, so that neither a UUID whose first group is all digits ("12345678-1234-...") nor a
# number written before a date ("batch 7 2026-11-28") is taken for a phone number.
KEEP_RE = re.compile(
    r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b"
    r"|\b(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|\b(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:[.,]\d{1,9})?"
)
EMAIL_MASK = "[email redacted]"
PHONE_MASK = "[phone redacted]"


def _redact_phones(text: str) -> str:
    parts: list[str] = []
    start = 0
    for kept in KEEP_RE.finditer(text):
        parts.append(PHONE_RE.sub(PHONE_MASK, text[start : kept.start()]))
        parts.append(kept.group())
        start = kept.end()
    parts.append(PHONE_RE.sub(PHONE_MASK, text[start:]))
    return "".join(parts)


def redact(text: str) -> str:
    """Replace emails and phone numbers in `text`."""
    if "@" in text:
        text = EMAIL_RE.sub(EMAIL_MASK, text)
    return _redact_phones(text)


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
