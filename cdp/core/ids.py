"""Time-ordered UUIDs (version 7 layout, RFC 9562) for primary keys: generated in Python so a
row's id is known before it is saved (encrypted values bind it into their AAD), and ordered by
time so that B-tree inserts stay local. Within one millisecond a 12-bit counter (RFC 9562,
method 1) keeps ids of one process increasing, so ordering by id is ordering by creation."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Random bits come from os.urandom in blocks (one system call per 512 ids, not one per id),
# and the UUID is built without UUID.__init__'s argument checks: ingestion makes a few ids per
# event, and both showed in its profile.
_RANDOM_BLOCK = 4096
_random = b""
_random_at = 0
_MS_MASK = (1 << 48) - 1
_RAND_MASK = (1 << 62) - 1
_VERSION_VARIANT = (0x7 << 76) | (0b10 << 62)
_new_uuid = object.__new__
_set = object.__setattr__
_SAFE = uuid.SafeUUID.unknown


def _forget_random() -> None:
    """A forked process (gunicorn and Celery workers) must not reuse its parent's bits."""
    global _random, _random_at
    _random, _random_at = b"", 0


os.register_at_fork(after_in_child=_forget_random)


def uuid7() -> uuid.UUID:
    global _last_ms, _counter, _random, _random_at  # noqa: PLW0603
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        else:
            _last_ms, _counter = ms, int.from_bytes(os.urandom(2), "big") & 0x3FF
        counter = _counter
        if _random_at + 8 > len(_random):
            _random, _random_at = os.urandom(_RANDOM_BLOCK), 0
        rand = int.from_bytes(_random[_random_at : _random_at + 8], "big")
        _random_at += 8
    value = ((ms & _MS_MASK) << 80) | _VERSION_VARIANT | (counter << 64) | (rand & _RAND_MASK)
    made = _new_uuid(uuid.UUID)
    _set(made, "int", value)
    _set(made, "is_safe", _SAFE)
    return made


def integer_id(value: object) -> int | None:
    """`value` (from a URL or a request body) as a positive database integer id, or None: ASCII
    digits only (`int()` refuses other Unicode digits such as "²", which `str.isdigit` accepts),
    at most 18 of them (a bigint)."""
    text = str(value)
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None
