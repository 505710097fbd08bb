"""Helpers shared by management commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError
from rest_framework.exceptions import ParseError

from cdp.core.api.parsers import NulCharacter, loads


def command_json_file(path: str, what: str) -> Any:
    """The JSON document in the file at `path`, for a management command: a file that cannot
    be read or is not JSON is a CommandError naming it as `what` ("receipt", "keys"). Read as
    the APIs read bodies (`cdp.core.api.parsers.loads`): a document nested beyond reason, or
    holding NaN or a NUL, is refused like any other, not a traceback."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"Cannot read the {what} file {path}: {exc.strerror}.") from None
    try:
        return loads(raw)
    except (ParseError, NulCharacter):
        raise CommandError(f"The {what} file {path} is not JSON.") from None


def command_signed_document(path: str, what: str) -> dict[str, Any]:
    """A signed document (a consent receipt, an erasure certificate) read from `path`."""
    document = command_json_file(path, what)
    if not isinstance(document, dict):
        raise CommandError(f"The {what} file does not hold a {what} object.")
    return document


def command_published_keys(path: str | None, stored: Callable[[], list[dict[str, Any]]]) -> Any:
    """The signing keys to verify with: the `keys` list of a copy of
    /.well-known/cdp-receipt-keys.json?workspace=<slug> (or ?kid=<kid>) at `path` (an offline
    check that trusts nothing in the database), else `stored()`, the keys in the database."""
    if not path:
        return stored()
    published = command_json_file(path, "keys")
    keys = published.get("keys") if isinstance(published, dict) else None
    if not isinstance(keys, list):
        raise CommandError('The keys file holds no "keys" list.')
    return keys
