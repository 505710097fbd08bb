"""The request state machine: which transitions are legal. Anything else is refused."""

from __future__ import annotations

from governance.enums import FINAL_STATES, RequestState

S = RequestState
TRANSITIONS: dict[str, frozenset[str]] = {
    S.RECEIVED: frozenset({S.AWAITING_VERIFICATION, S.VERIFIED, S.DENIED, S.REVOKED, S.ERROR}),
    S.AWAITING_VERIFICATION: frozenset({S.VERIFIED, S.EXPIRED, S.REVOKED, S.DENIED, S.ERROR}),
    S.VERIFIED: frozenset({S.IN_PROGRESS, S.DENIED, S.REVOKED, S.ERROR}),
    # Revoked from work in progress only through governance.services.request_cancel: an
    # erasure whose cancellation window is still open.
    S.IN_PROGRESS: frozenset(
        {S.AWAITING_REVIEW, S.FULFILLED, S.PARTIALLY_FULFILLED, S.DENIED, S.REVOKED, S.ERROR}
    ),
    S.AWAITING_REVIEW: frozenset(
        {S.IN_PROGRESS, S.FULFILLED, S.PARTIALLY_FULFILLED, S.DENIED, S.REVOKED, S.ERROR}
    ),
    S.ERROR: frozenset({S.IN_PROGRESS, S.DENIED}),
    **{state: frozenset() for state in FINAL_STATES},
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())
