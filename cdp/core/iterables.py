"""Small helpers over sequences."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["chunks"]


def chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """`items` in lists of at most `size`, in order (itertools.batched, from Python 3.12)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
