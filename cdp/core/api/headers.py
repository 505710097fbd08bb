"""Request headers several APIs read the same way."""

from __future__ import annotations

from typing import Any


def sec_gpc(headers: Any) -> bool:
    """Whether the request carries a Global Privacy Control signal, `Sec-GPC: 1`. A header
    sent twice reaches Django joined with a comma ("1, 1", as a proxy may pass it on): any
    value "1" counts."""
    return any(part.strip() == "1" for part in str(headers.get("Sec-GPC", "")).split(","))
