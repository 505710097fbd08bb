"""Per-client limits on the public request routes (API and portal): submissions, code checks
and status reads, counted per client IP in hour-long windows. The IP itself never reaches the
cache: the key is a keyed hash of it."""

from __future__ import annotations

from typing import Any

from cdp.core.crypto import keyed_hash
from cdp.core.exceptions import RateLimited
from cdp.core.ratelimit import rate_limit_consume

HOUR = 3600
LIMITS = {"submit": 10, "verify": 20, "status": 120}


class RequestRateLimited(RateLimited):
    def __init__(self, *, retry_after: int) -> None:
        super().__init__(retry_after=retry_after)
        self.message = f"Too many requests from this address; retry in {retry_after} s."


def client_limit_consume(*, http_request: Any, scope: str) -> None:
    """Count one `scope` action against the client's address, or raise RequestRateLimited."""
    ip = http_request.META.get("REMOTE_ADDR") or "unknown"
    key = keyed_hash("ratelimit", "dsr", scope, ip).hex()[:32]
    try:
        rate_limit_consume(
            source_id=f"dsr-{scope}:{key}", limit=LIMITS[scope], count=1, window_seconds=HOUR
        )
    except RateLimited as exc:
        raise RequestRateLimited(retry_after=exc.retry_after) from None
