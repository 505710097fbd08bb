"""Building inbound messages for ingestion tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from profiles.contracts import InboundMessage

_counter = itertools.count(1)
BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def msg(
    type: str = "track",
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    message_id: str | None = None,
    minutes: int | None = None,
    **fields: Any,
) -> InboundMessage:
    n = next(_counter)
    at = BASE_TIME + timedelta(minutes=n if minutes is None else minutes)
    return InboundMessage(
        type=type,
        message_id=message_id or f"msg-{n}",
        received_at=at,
        timestamp=at,
        user_id=user_id,
        anonymous_id=anonymous_id,
        **fields,
    )
