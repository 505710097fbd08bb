"""Who may be sent to a destination, evaluated at send time for one batch of profiles.

A profile is sent only if it is active (not merged away or erased), not restricted, and the
consent gate allows it for every purpose the destination declares, with a basis the ledger
can name: the granting consent record, or the purpose's legal basis (see
consent.selectors.consent_gate_basis). Each excluded profile gets one reason, the first that
applies: `not_active`, `restricted`, then `no_consent:<purpose>` in purpose-key order; so
the counts of a run add up to the profiles it excluded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from activation.enums import RemovalReason
from consent import selectors as consent_selectors
from profiles import selectors as profile_selectors

NOT_ACTIVE = "not_active"
RESTRICTED = "restricted"
NO_CONSENT = "no_consent"


@dataclass
class Verdict:
    allowed: dict[Any, dict[str, str]] = field(default_factory=dict)  # id -> purpose -> basis
    excluded: dict[Any, str] = field(default_factory=dict)  # id -> reason


def evaluate(*, workspace: Any, purposes: Sequence[Any], profile_ids: Iterable[Any]) -> Verdict:
    """The verdict on each of `profile_ids` for a destination serving `purposes`, now."""
    ids = list(dict.fromkeys(profile_ids))
    verdict = Verdict()
    if not ids:
        return verdict
    restricted = dict(
        profile_selectors.profile_list(workspace=workspace)
        .filter(pk__in=ids)
        .order_by()
        .values_list("pk", "restricted")
    )
    remaining = []
    for pk in ids:
        if pk not in restricted:
            verdict.excluded[pk] = NOT_ACTIVE
        elif restricted[pk]:
            verdict.excluded[pk] = RESTRICTED
        else:
            remaining.append(pk)
    basis: dict[Any, dict[str, str]] = {pk: {} for pk in remaining}
    for purpose in sorted(purposes, key=lambda p: p.key):
        if not remaining:
            break
        allowed = consent_selectors.consent_gate_basis(
            workspace=workspace, purpose=purpose, profile_ids=remaining
        )
        for pk in remaining:
            if pk in allowed:
                basis[pk][purpose.key] = allowed[pk]
            else:
                verdict.excluded[pk] = f"{NO_CONSENT}:{purpose.key}"
        remaining = [pk for pk in remaining if pk in allowed]
    verdict.allowed = {pk: basis[pk] for pk in remaining}
    return verdict


def removal_reason(exclusion: str) -> str:
    """Why a person excluded for `exclusion` is taken back from a destination holding them."""
    if exclusion == RESTRICTED:
        return RemovalReason.RESTRICTED
    if exclusion.startswith(NO_CONSENT):
        return RemovalReason.CONSENT_WITHDRAWN
    return RemovalReason.EXITED
