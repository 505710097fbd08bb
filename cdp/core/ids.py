"""Time-ordered UUIDs (version 7 layout, RFC 9562) for primary keys: generated in Python so a
row's id is known before it is saved (encrypted values bind it into their AAD), and ordered by
time so that B-tree inserts stay local."""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)
