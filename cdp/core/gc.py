"""Garbage-collector tuning for long-running server processes (Celery workers, gunicorn
workers), applied once a process has imported the application.

CPython's cyclic collector runs every 700 net allocations and, every so often, walks every
tracked object the process holds. A worker holds a few hundred thousand of them from importing
Django, the apps and their dependencies, none of which ever becomes garbage; the drain, which
allocates a dictionary or two per message, paid 16 % of its CPU to the collector walking them
(py-spy, docs/benchmarks.md). `gc.freeze()` moves everything allocated so far into a permanent
generation the collector skips (what Instagram and gunicorn's own docs recommend for forked
workers), and a larger first threshold makes the young collections fewer; reference counting
still frees almost everything the moment it is dropped, and cycles are still collected."""

from __future__ import annotations

import gc

__all__ = ["gc_tune"]

# Allocations between young collections (CPython's default is 700). Objects of one request or
# one drain round mostly die young by reference counting; at 700 the collector ran many times
# per round and promoted the round's live messages into the older generations.
_YOUNG_THRESHOLD = 50_000


def gc_tune() -> None:
    """Freeze what the process holds now and space out the young collections."""
    gc.collect()  # garbage from start-up is freed, not frozen
    gc.freeze()
    _young, older, oldest = gc.get_threshold()
    gc.set_threshold(_YOUNG_THRESHOLD, older, oldest)
