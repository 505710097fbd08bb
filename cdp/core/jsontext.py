"""Facts about JSON text, for readers that take orjson's fast path where it is exact."""

from __future__ import annotations

# Byte by byte: every ASCII digit to "0", every other byte to " ". A run of 19 zeros then marks
# 19 digits in a row, which every integer beyond 64 bits has (in a string too: such documents
# merely take the slower way).
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def has_long_digit_run(raw: bytes) -> bool:
    """Whether 19 digits follow each other somewhere in `raw`: where orjson may have read an
    integer beyond 64 bits as a float, and the standard library must decide."""
    return _LONG_RUN in raw.translate(_DIGITS)
