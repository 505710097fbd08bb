"""CSV cells a spreadsheet will not run as formulas (CSV injection): a cell starting with
= + - @ (or a tab or carriage return) gets a leading apostrophe. Every CSV the product writes
for people to open (import error files, compliance reports, destination files, match pairs)
goes through it."""

from __future__ import annotations

import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A number or a phone number ("+44 20 7183 8750", "-3.5"): plainly not a formula.
_NUMBER_LIKE = re.compile(r"^[+-]?[\d\s().-]*\d[\d\s().-]*$")


def spreadsheet_safe(text: str, *, keep_numbers: bool = False) -> str:
    """`text` as a cell no spreadsheet runs; with `keep_numbers`, number-like text (a phone
    number an ad platform must read as is) stays unquoted."""
    if not text.startswith(FORMULA_START):
        return text
    if keep_numbers and _NUMBER_LIKE.match(text):
        return text
    return "'" + text
