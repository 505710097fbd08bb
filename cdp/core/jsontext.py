"""Facts about JSON text, for readers that take orjson's fast path where it is exact, and the
JSON file reader of the verification commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

# Byte by byte: every ASCII digit to "0", every other byte to " ". A run of 19 zeros then marks
# 19 digits in a row, which every integer beyond 64 bits has (in a string too: such documents
# merely take the slower way).
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def has_long_digit_run(raw: bytes) -> bool:
    """Whether 19 digits follow each other somewhere in `raw`: where orjson may have read an
    integer beyond 64 bits as a float, and the standard library must decide."""
    return _LONG_RUN in raw.translate(_DIGITS)


def command_json_file(path: str, what: str) -> Any:
    """The JSON document in the file at `path`, for a management command: a file that cannot
    be read or is not JSON is a CommandError naming it as `what` ("receipt", "keys")."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"Cannot read the {what} file {path}: {exc.strerror}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CommandError(f"The {what} file {path} is not JSON.") from None
