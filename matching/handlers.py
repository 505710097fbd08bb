"""Personal-data handlers for matching. The candidate pairs naming a profile hold no personal
value (levels and weights only), but they link the person to another profile, so an access
export lists them and an erasure deletes them. The match keys are keyed hashes derived from
the person's values (pseudonymous, like blind indexes): the export says how many there are
and when they were computed, an erasure deletes them."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from cdp.core.registry import ErasureReport, ErasureStatus, PersonalDataHandler
from matching.models import MatchCandidate, MatchKeys


def _people(profile: Any) -> list[Any]:
    from profiles import selectors

    return [profile.pk, *selectors.profile_absorbed_ids(profile=profile)]


def _candidates(profile: Any) -> Any:
    people = _people(profile)
    return MatchCandidate.objects.filter(Q(profile_a_id__in=people) | Q(profile_b_id__in=people))


def export_candidates(profile: Any) -> dict[str, Any]:
    return {
        "match_candidates": [
            {
                "id": c.pk,
                "profiles": [str(c.profile_a_id), str(c.profile_b_id)],
                "probability": c.probability,
                "match_weight": c.match_weight,
                "comparison": c.comparison,
                "status": c.status,
                "reviewed_at": c.reviewed_at.isoformat() if c.reviewed_at else None,
                "created_at": c.created_at.isoformat(),
            }
            for c in _candidates(profile).order_by("created_at", "pk")
        ]
    }


def _deleted(store: str, counted: str, rows: Any) -> ErasureReport:
    deleted, _ = rows.delete()
    return ErasureReport(
        store=store,
        status=ErasureStatus.ERASED if deleted else ErasureStatus.NOTHING_FOUND,
        counts={counted: deleted},
    )


def erase_candidates(profile: Any) -> ErasureReport:
    return _deleted("matching.candidates", "candidates", _candidates(profile))


CANDIDATES_HANDLER = PersonalDataHandler(
    name="matching.candidates",
    models=("matching.MatchCandidate",),
    export=export_candidates,
    erase=erase_candidates,
)


def export_keys(profile: Any) -> dict[str, Any]:
    return {
        "match_keys": [
            {
                "profile": str(pk),
                "keyed_hashes": len(bytes(keys)) // 8,
                "computed_at": computed_at.isoformat(),
            }
            for pk, keys, computed_at in MatchKeys.objects.filter(
                profile_id__in=_people(profile)
            ).values_list("profile_id", "keys", "computed_at")
        ]
    }


def erase_keys(profile: Any) -> ErasureReport:
    return _deleted(
        "matching.keys", "profiles", MatchKeys.objects.filter(profile_id__in=_people(profile))
    )


KEYS_HANDLER = PersonalDataHandler(
    name="matching.keys",
    models=("matching.MatchKeys",),
    export=export_keys,
    erase=erase_keys,
)
