"""Helpers shared by management commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError


def command_json_file(path: str, what: str) -> Any:
    """The JSON document in the file at `path`, for a management command: a file that cannot
    be read or is not JSON is a CommandError naming it as `what` ("receipt", "keys")."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"Cannot read the {what} file {path}: {exc.strerror}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CommandError(f"The {what} file {path} is not JSON.") from None
