"""Collection: validate Segment-spec messages from one source and hand the valid ones to the
profiles app for storage (dedup, identity resolution, encryption happen there)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collect.exceptions import SourceDisabled
from collect.ratelimit import rate_limit_consume
from collect.validation import MessageError, RequestMeta, validate_message
from profiles import services as profile_services
from profiles.contracts import InboundMessage, IngestOutcome

__all__ = ["CollectResult", "MessageError", "RequestMeta", "collect_messages"]


@dataclass(frozen=True)
class CollectResult:
    accepted: int
    rejected: list[MessageError]
    outcome: IngestOutcome | None  # None when nothing was valid


def collect_messages(
    *,
    source: Any,
    payloads: list[Any],
    request_meta: RequestMeta,
    enforce_rate_limit: bool = True,
) -> CollectResult:
    """Rate-limit, validate and store the messages of one request from `source` (a profiles
    Source). Invalid messages are returned as rejected; the valid ones are stored together.

    Raises `SourceDisabled` and `RateLimited` before anything is stored. Operator-run loads
    (seed data, imports from a file) pass `enforce_rate_limit=False`: the limit protects the
    public endpoint, not the operator."""
    if not source.enabled:
        raise SourceDisabled()
    if enforce_rate_limit:
        rate_limit_consume(
            source_id=source.pk, limit=source.rate_limit_per_minute, count=len(payloads)
        )
    valid: list[InboundMessage] = []
    rejected: list[MessageError] = []
    for index, raw in enumerate(payloads):
        result = validate_message(raw, index=index, meta=request_meta)
        if isinstance(result, MessageError):
            rejected.append(result)
        else:
            valid.append(result)
    outcome = None
    if valid:
        outcome = profile_services.ingest_messages(source=source, messages=valid)
    return CollectResult(accepted=len(valid), rejected=rejected, outcome=outcome)
