"""Reads for probabilistic matching, always scoped by workspace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from matching.enums import CandidateStatus, RunStatus
from matching.exceptions import MatchCandidateNotFound
from matching.models import MatchCandidate, MatchRun, MatchSettings
from profiles import selectors as profile_selectors


def match_settings_get(*, workspace: Any) -> MatchSettings | None:
    return MatchSettings.objects.filter(workspace=workspace).first()


def match_run_last(*, workspace: Any) -> MatchRun | None:
    """The latest finished run (the watermark of the next incremental one)."""
    return (
        MatchRun.objects.filter(workspace=workspace, status=RunStatus.FINISHED)
        .order_by("-started_at")
        .first()
    )


def candidate_queue(*, workspace: Any) -> QuerySet[MatchCandidate]:
    """Proposed candidates, most probable first: what stewards review."""
    return MatchCandidate.objects.filter(
        workspace=workspace, status=CandidateStatus.PROPOSED
    ).order_by("-probability", "pk")


def candidate_get(*, workspace: Any, candidate_id: Any) -> MatchCandidate:
    try:
        return MatchCandidate.objects.select_related("workspace").get(
            workspace=workspace, pk=candidate_id
        )
    except (MatchCandidate.DoesNotExist, ValueError, TypeError):
        raise MatchCandidateNotFound() from None


@dataclass(frozen=True)
class ComparisonRow:
    """One comparison field of a candidate, side by side: the values as the steward may see
    them (masked personal data unless revealed), the level and the evidence in bits."""

    field: str
    source: str  # "trait:first_name", "identifier:email"
    left: Any
    right: Any
    level: str
    weight: float | None
    group: str | None


def candidate_comparison(
    *, candidate: MatchCandidate, revealed: list[Any] | None = None
) -> list[ComparisonRow]:
    """The candidate's comparison vector with both profiles' values: masked (plain only for
    attribute traits) unless `revealed` (from services.candidate_reveal, audited)."""
    settings = match_settings_get(workspace=candidate.workspace)
    specs = {f.get("name"): f for f in (settings.fields if settings else [])}
    sides = []
    for position, profile_id in enumerate((candidate.profile_a_id, candidate.profile_b_id)):
        if revealed is not None:
            traits, identities = revealed[position].traits, revealed[position].identities
        else:
            profile = profile_selectors.profile_get(
                workspace=candidate.workspace, profile_id=profile_id
            )
            traits = profile_selectors.profile_traits(
                workspace=candidate.workspace, profile=profile
            )
            identities = profile_selectors.profile_identities(
                workspace=candidate.workspace, profile=profile
            )
        by_key = {t.key: t.value for t in traits}
        by_type: dict[str, list[Any]] = {}
        for identity in identities:
            by_type.setdefault(identity.type, []).append(identity.value)
        sides.append((by_key, by_type))
    rows = []
    for name, entry in (candidate.comparison or {}).items():
        spec = specs.get(name, {})
        source, key = spec.get("source", "trait"), str(spec.get("key", name))
        values = []
        for by_key, by_type in sides:
            if source == "identifier":
                found = by_type.get(key)
                values.append(", ".join(str(v) for v in found) if found else None)
            else:
                head, _, rest = key.partition(".")
                value = by_key.get(head)
                for part in rest.split(".") if rest else ():
                    value = (
                        value.get(part)
                        if isinstance(value, dict)
                        else (profile_selectors.MASK if value == profile_selectors.MASK else None)
                    )
                values.append(value)
        rows.append(
            ComparisonRow(
                field=name,
                source=f"{source}:{key}",
                left=values[0],
                right=values[1],
                level=str(entry.get("label", "")),
                weight=entry.get("weight"),
                group=entry.get("group"),
            )
        )
    return rows
