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
EMAIL_MASK = "[email redacted]"
PHONE_MASK = "[phone redacted]"


def redact(text: str) -> str:
    """Replace emails and phone numbers in `text`."""
    if "@" in text:
        text = EMAIL_RE.sub(EMAIL_MASK, text)
    return PHONE_RE.sub(PHONE_MASK, text)


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
