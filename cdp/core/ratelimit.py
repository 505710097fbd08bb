"""Per-source rate limit (collection and consent APIs): a fixed one-minute window, counted in
messages, in Django's cache.

Only `add`, `incr` and `decr` are used, which are atomic on Redis and per process on locmem; a
fixed window is coarse (a burst can straddle two windows) but needs one cache key per source
and minute and no clock agreement beyond the minute."""

from __future__ import annotations

import contextlib
import math
import time

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache

from cdp.core.exceptions import RateLimited

WINDOW_SECONDS = 60


def _cache() -> BaseCache:
    return caches[getattr(settings, "COLLECT_CACHE_ALIAS", "default")]


def rate_limit_consume(
    *, source_id: object, limit: int, count: int, window_seconds: int = WINDOW_SECONDS
) -> None:
    """Count `count` messages against the source's current window, or raise `RateLimited`
    (with the seconds until the window ends) and count nothing. `source_id` may be any
    stable key (the data-subject request endpoints pass a keyed hash of the client IP, with
    an hour-long `window_seconds`)."""
    if count <= 0:
        return
    now = time.time()
    window = int(now // window_seconds)
    key = f"collect:ratelimit:{source_id}:{window_seconds}:{window}"
    cache = _cache()
    # Kept for two windows so a slow request near the boundary still finds its key.
    cache.add(key, 0, timeout=2 * window_seconds)
    try:
        used = cache.incr(key, count)
    except ValueError:  # expired between add and incr
        cache.set(key, count, timeout=2 * window_seconds)
        used = count
    if used > limit:
        # A refused request takes nothing from the window, so a smaller batch may still fit.
        with contextlib.suppress(ValueError):  # the window just ended: nothing to give back
            cache.decr(key, count)
        retry_after = max(1, math.ceil((window + 1) * window_seconds - now))
        raise RateLimited(retry_after=retry_after)
