"""What the ingestion pipeline hands to the profiles app: one validated, normalized message.
collect builds these from Segment-spec payloads (or import rows); profiles resolves identities
and stores events and traits from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class InboundMessage:
    type: str  # profiles.enums.EventType value
    message_id: str
    received_at: datetime
    timestamp: datetime  # corrected for clock skew: received_at - (sent_at - original)
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    previous_id: str | None = None  # alias
    group_id: str | None = None
    name: str = ""  # track event name, page/screen name
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)  # identify traits (+ context.traits)
    context: dict[str, Any] = field(default_factory=dict)
    ip: str | None = None  # context.ip, else the request's address
    gpc: bool = False  # the request carried `Sec-GPC: 1` (a Global Privacy Control opt-out)
    # False for a collected message on a source that verifies identities which did not prove
    # its userId (`context.userHash`): it then claims no identity, and only the identifiers a
    # browser holds of its own (anonymousId, device ids) resolve it (`profiles.ingest`).
    # True by default: server loads, imports and intake rows sealed before the field existed.
    identity_verified: bool = True
    # The index of the message in its request, so errors can name it.
    index: int = 0


@dataclass(frozen=True)
class IngestOutcome:
    """What storing a batch did: per-message profile ids (None for a dropped duplicate or a
    suppressed subject) and counters."""

    profile_ids: list[Any]
    stored: int
    duplicates: int
    profiles_created: int
    merges: int
    conflicts: int
    dropped: int = 0
    # With `postpone_contended`: the messages left for later because another transaction held
    # one of their identifiers (not stored, not marked as seen; their profile id is None).
    postponed: list[InboundMessage] = field(default_factory=list)
