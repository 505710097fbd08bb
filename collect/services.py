"""Collection: validate Segment-spec messages from one source and hand the valid ones to the
profiles app for storage (dedup, identity resolution, encryption happen there)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from cdp.core import audit, dbstats
from cdp.core.ratelimit import rate_limit_consume
from collect import intake
from collect.consent_signals import consent_signals_apply
from collect.exceptions import SourceDisabled
from collect.validation import MessageError, RequestMeta, max_event_bytes, validate_message
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.contracts import InboundMessage, IngestOutcome

__all__ = ["CollectResult", "MessageError", "RequestMeta", "collect_messages"]


@dataclass(frozen=True)
class CollectResult:
    accepted: int
    rejected: list[MessageError]
    # None when nothing was valid, or when the messages went to the asynchronous intake
    outcome: IngestOutcome | None


def collect_messages(
    *,
    source: Any,
    payloads: list[Any],
    request_meta: RequestMeta,
    enforce_rate_limit: bool = True,
) -> CollectResult:
    """Rate-limit, validate and store the messages of one request from `source` (a profiles
    Source). Invalid messages are returned as rejected; the valid ones are stored together,
    with the consent signals they carry (`collect.consent_signals`). Where the source verifies
    identities, a message without the `context.userHash` of its userId is stored claiming no
    identity when it names a browser or device, and refused otherwise (see
    `collect.validation`).

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
    limit = max_event_bytes()
    # Read once for the request (one query where the source verifies identities, none else).
    user_hash_check = profile_selectors.source_user_hash_checker(source=source)
    for index, raw in enumerate(payloads):
        result = validate_message(
            raw, index=index, meta=request_meta, max_bytes=limit, user_hash_check=user_hash_check
        )
        if isinstance(result, MessageError):
            rejected.append(result)
        else:
            valid.append(result)
    outcome = None
    if valid and settings.COLLECT_ASYNC_INTAKE:
        intake.intake_store(source=source, messages=valid)
    elif valid:
        # One transaction: a failure leaves no event claimed as seen without its consent, so
        # the client's retry stores both.
        # Audit entries go in at the end (see collect.intake), then stale planner statistics
        # of the growing tables are refreshed when due (cdp.core.dbstats).
        with transaction.atomic(), audit.deferred_entries():
            outcome = profile_services.ingest_messages(source=source, messages=valid)
            consent_signals_apply(source=source, messages=valid, profile_ids=outcome.profile_ids)
        dbstats.refresh_statistics()
    return CollectResult(accepted=len(valid), rejected=rejected, outcome=outcome)
