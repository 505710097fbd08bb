"""Who may be sent to a destination, evaluated at send time for one batch of profiles.

A profile is sent only if it is active (not merged away or erased), not restricted, and the
consent gate allows it for every purpose the destination declares, with a basis the ledger
can name: the granting consent record, or the purpose's legal basis (see
consent.selectors.consent_gate_basis). Each excluded profile gets one reason, the first that
applies: `not_active`, `restricted`, then `no_consent:<purpose>` in purpose-key order; so
the counts of a run add up to the profiles it excluded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from activation.enums import RemovalReason
from consent import selectors as consent_selectors
from consent.enums import Decision
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


def removal_reasons(*, workspace: Any, excluded: Mapping[Any, str]) -> dict[Any, str]:
    """Why each person excluded for `excluded[id]` is taken back from a destination holding
    them: restricted; consent expired when the refused purpose's current decision is
    `expired` (its validity elapsed: the person withdrew nothing); consent withdrawn for any
    other refusal; else exited. Reads the consent states only when a refusal is among them."""
    refused = [pk for pk, exclusion in excluded.items() if exclusion.startswith(NO_CONSENT)]
    states = (
        consent_selectors.consent_states_for_profiles(workspace=workspace, profile_ids=refused)
        if refused
        else {}
    )
    reasons: dict[Any, str] = {}
    for pk, exclusion in excluded.items():
        if exclusion == RESTRICTED:
            reasons[pk] = RemovalReason.RESTRICTED
        elif exclusion.startswith(NO_CONSENT):
            key = exclusion.partition(":")[2]
            decision = states.get(pk, {}).get(key, {}).get("decision")
            reasons[pk] = _consent_reason([decision])
        else:
            reasons[pk] = RemovalReason.EXITED
    return reasons


def consent_refusal_reasons(
    *, workspace: Any, profile_ids: Sequence[Any], purpose_keys: Iterable[str]
) -> dict[Any, str]:
    """The removal reason of each profile whose consent for `purpose_keys` stopped allowing
    processing (the consent-change hook): consent expired when every one of those decisions
    that refuses is an expiry, else consent withdrawn (a withdrawal or denial among them is
    what the person said, and it is the stronger word)."""
    keys = set(purpose_keys)
    states = consent_selectors.consent_states_for_profiles(
        workspace=workspace, profile_ids=list(profile_ids)
    )
    return {
        pk: _consent_reason(
            [
                state["decision"]
                for key, state in states.get(pk, {}).items()
                if key in keys and state["decision"] != Decision.GRANTED
            ]
        )
        for pk in profile_ids
    }


def _consent_reason(decisions: Sequence[Any]) -> str:
    if decisions and all(decision == Decision.EXPIRED for decision in decisions):
        return RemovalReason.CONSENT_EXPIRED
    return RemovalReason.CONSENT_WITHDRAWN
