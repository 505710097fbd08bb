"""Merges outside ingestion (a steward's accepted match, an admin action) and unmerges.

Both work on the same rows as ingestion: a merge goes through `ingest.apply_merges` (the one
implementation of moving a profile's rows, keys and consent into another); an unmerge reads the
merge ledger and each row's `origin_profile_id` to give the absorbed side back (ADR 0007).
Reached through `profiles.services.profiles_merge` and `profiles.services.profile_unmerge`."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from auditlog import get_logentry_model
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from cdp.core.exceptions import InvalidInput
from cdp.core.hooks import run_unmerge_hooks
from profiles import bulk, ingest
from profiles.enums import ProfileStatus
from profiles.exceptions import MergeNotFound, MergeRefused, ProfileNotFound, UnmergeRefused
from profiles.models import DataKey, Event, Identity, Merge, Profile, Trait, Workspace

EVIDENCE_MAX_BYTES = 16_000


def _lock_profiles_identifiers(profile_ids: list[UUID]) -> None:
    """Take the advisory locks ingestion takes for every identifier of these profiles, so that
    no batch attaches data to them while their rows move (PostgreSQL; SQLite serializes)."""
    idents = {
        ingest.Ident(kind, "", bytes(index), 0)
        for kind, index in Identity.objects.filter(profile_id__in=profile_ids).values_list(
            "identifier_type", "blind_index"
        )
    }
    ingest._lock_identifiers(idents)


def _audit(merge: Merge, *, actor: Any, action: str, changes: dict, data: dict) -> None:
    entry_model = get_logentry_model()
    entry_model.objects.log_create(
        merge,
        force_log=True,
        action=getattr(entry_model.Action, action),
        changes=changes,
        actor=actor,
        additional_data=data,
    )


def _check_evidence(evidence: Any) -> dict[str, Any]:
    if not isinstance(evidence, dict):
        raise InvalidInput("Evidence must be a JSON object.", code="invalid_evidence")
    try:
        encoded = json.dumps(evidence, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidInput(
            "Evidence must hold only JSON values.", code="invalid_evidence"
        ) from None
    if len(encoded) > EVIDENCE_MAX_BYTES:
        raise InvalidInput("Evidence is too large.", code="invalid_evidence")
    loaded: dict[str, Any] = json.loads(encoded)
    return loaded


@transaction.atomic
def profiles_merge(
    *,
    workspace: Workspace,
    profile_ids: tuple[UUID, UUID],
    rule: str,
    actor: Any | None,
    evidence: dict[str, Any],
) -> Merge:
    """Merge two active profiles of `workspace` (the older survives), exactly as ingestion
    would, under the same caps and identifier limits; the ledger row keeps `rule` and
    `evidence`. Refusals raise MergeRefused with a code saying which rule refused."""
    if len(profile_ids) != 2:
        raise InvalidInput("Exactly two profiles are merged.", code="invalid_profiles")
    first, second = (UUID(str(p)) for p in profile_ids)
    if first == second:
        raise MergeRefused("A profile cannot be merged with itself.", code="same_profile")
    rule = (rule or "").strip()
    if not rule:
        raise InvalidInput("A merge needs a rule saying why.", code="rule_required")
    if len(rule) > 200:
        raise InvalidInput("The rule is at most 200 characters.", code="rule_too_long")
    evidence = _check_evidence(evidence)
    ids = [first, second]
    _lock_profiles_identifiers(ids)
    profiles = {
        p.pk: p for p in Profile.objects.select_for_update().filter(workspace=workspace, pk__in=ids)
    }
    if len(profiles) != 2:
        raise ProfileNotFound()
    for profile in profiles.values():
        if profile.status != ProfileStatus.ACTIVE:
            raise MergeRefused(
                f"Profile {profile.pk} is not active (it was merged into another).",
                code="profile_not_active",
                extra={"profile": str(profile.pk)},
            )
    if (
        DataKey.objects.filter(profile_id__in=ids, destroyed_at__isnull=True)
        .values("profile_id")
        .distinct()
        .count()
        != 2
    ):
        raise MergeRefused("A profile without a live data key cannot be merged.", code="no_key")
    rules = ingest.load_rules(workspace)
    now = timezone.now()
    plan = ingest._Plan()
    ingest._load_profiles(plan, set(ids), rules, now)
    a, b = plan.profiles[first], plan.profiles[second]
    counts = a.counts + b.counts
    if not ingest._within_limits(counts, rules):
        broken = sorted(k for k, c in counts.items() if c > ingest._limit(rules, k))
        raise MergeRefused(
            f"The merged profile would break the limit per profile of {', '.join(broken)}.",
            code="identifier_limit",
            extra={"identifier_types": broken},
        )
    if a.total + b.total > rules.max_identities:
        raise MergeRefused(
            f"The merged profile would hold more than {rules.max_identities} identities.",
            code="identity_cap",
        )
    merged_count = a.merge_count + b.merge_count + 1
    if merged_count > rules.max_merges:
        raise MergeRefused(
            f"The merged profile would pass the cap of {rules.max_merges} merges.",
            code="merge_cap",
        )
    survivor, absorbed = sorted((a, b), key=lambda p: (p.created_at, str(p.id)))
    step = ingest.MergeStep(
        survivor=survivor.id,
        absorbed=absorbed.id,
        identifier_type="",
        identity_id=None,
        message_id="",
        rule=rule,
        evidence=evidence,
    )
    ingest.apply_merges(
        workspace,
        [step],
        find=lambda p: survivor.id if p == absorbed.id else p,
        merge_counts={survivor.id: merged_count},
        now=now,
    )
    _refresh_attributes([survivor.id])
    merge = Merge.objects.filter(
        workspace=workspace, survivor_id=survivor.id, absorbed_id=absorbed.id
    ).latest("pk")
    _audit(
        merge,
        actor=actor,
        action="CREATE",
        changes={
            "survivor": ["None", str(survivor.id)],
            "absorbed": ["None", str(absorbed.id)],
            "rule": ["None", rule],
        },
        data={"rule": rule, "evidence": evidence, "via": "profiles_merge"},
    )
    return merge


def _refresh_attributes(profile_ids: list[UUID]) -> None:
    attributes = ingest.profile_attributes(profile_ids)
    bulk.update_from_values(
        Profile,
        key="id",
        names=["attributes"],
        rows=[(pid, attributes.get(pid, {})) for pid in profile_ids],
        assignments=["attributes = v.column2"],
    )


# --- unmerge ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unmerged:
    """What `profile_unmerge` gave back."""

    merge: Merge
    survivor_id: UUID
    restored_id: UUID
    profile_ids: list[UUID]  # the restored profile and those it had absorbed before
    identities: int
    traits: int
    events: int
    data_keys: int


def _subtree(root: UUID, before_id: int) -> tuple[set[UUID], list[Merge]]:
    """`root` and every profile merged into it (through merges not undone, older than
    `before_id`), with those merges: the side an unmerge gives back."""
    side = {root}
    merges: list[Merge] = []
    frontier = [root]
    while frontier:
        found = list(
            Merge.objects.filter(
                survivor_id__in=frontier, unmerged_at__isnull=True, pk__lt=before_id
            ).order_by("pk")
        )
        found = [m for m in found if m.absorbed_id not in side]
        merges += found
        frontier = [m.absorbed_id for m in found]
        side.update(frontier)
    return side, merges


def merge_blocking_unmerge(*, merge: Merge) -> Merge | None:
    """The latest later merge, still in place, of the profile `merge` made: it must be undone
    first (unmerges go most recent first). None when `merge` can be undone now."""
    survivor = Profile.objects.only("status", "merged_into_id").get(pk=merge.survivor_id)
    root = survivor.merged_into_id if survivor.status == ProfileStatus.MERGED else survivor.pk
    members = [root, *Profile.objects.filter(merged_into_id=root).values_list("pk", flat=True)]
    return (
        Merge.objects.filter(survivor_id__in=members, unmerged_at__isnull=True, pk__gt=merge.pk)
        .order_by("-pk")
        .first()
    )


@transaction.atomic
def profile_unmerge(
    *, workspace: Workspace, merge: Merge, actor: Any | None, reason: str = "", via: str = ""
) -> Unmerged:
    """Undo `merge` from the ledger (ADR 0007): the absorbed profile, and whatever it had
    absorbed before, become what they were; every identity, trait and event whose origin is on
    that side goes back with the data keys that seal it; merge counts, attributes and seen
    times are recomputed; the unmerge hooks re-separate consent and recompute derived data.
    Only the most recent merge of a profile can be undone (UnmergeRefused otherwise)."""
    try:
        merge = Merge.objects.select_for_update().get(pk=merge.pk, workspace=workspace)
    except Merge.DoesNotExist:
        raise MergeNotFound() from None
    if merge.unmerged_at is not None:
        raise UnmergeRefused("This merge was undone already.", code="already_unmerged")
    survivor_id, absorbed_id = merge.survivor_id, merge.absorbed_id
    cluster = [
        survivor_id,
        *Profile.objects.filter(merged_into_id=survivor_id).values_list("pk", flat=True),
    ]
    # Locked before the check: a batch cannot merge into the cluster between the two.
    _lock_profiles_identifiers(cluster)
    blocking = merge_blocking_unmerge(merge=merge)
    if blocking is not None:
        raise UnmergeRefused(
            f"Merge {blocking.pk} was made later on the same profile and must be undone first.",
            code="later_merge_depends",
            extra={"merge": blocking.pk},
        )
    locked = {
        p.pk: p for p in Profile.objects.select_for_update().filter(pk__in=cluster).order_by("pk")
    }
    survivor, absorbed = locked[survivor_id], locked.get(absorbed_id)
    if (
        survivor.status != ProfileStatus.ACTIVE
        or absorbed is None
        or absorbed.status != ProfileStatus.MERGED
    ):
        raise UnmergeRefused(
            "The profiles of this merge are not as the merge left them.",
            code="profile_not_active",
        )
    now = timezone.now()
    side, earlier = _subtree(absorbed_id, merge.pk)
    origins = list(side)
    moved: Counter[str] = Counter()
    for model, name in ((Identity, "identities"), (Trait, "traits"), (Event, "events")):
        moved[name] = model.objects.filter(
            profile_id=survivor_id, origin_profile_id__in=origins
        ).update(profile_id=absorbed_id)
    key_ids = {str(k) for m in (merge, *earlier) for k in m.data_key_ids}
    moved["data_keys"] = DataKey.objects.filter(pk__in=key_ids, profile_id=survivor_id).update(
        profile_id=absorbed_id
    )
    absorbed_count = len(earlier)
    Profile.objects.filter(pk__in=side - {absorbed_id}).update(
        merged_into_id=absorbed_id, updated_at=now
    )
    Profile.objects.filter(pk=absorbed_id).update(
        status=ProfileStatus.ACTIVE, merged_into=None, merge_count=absorbed_count, updated_at=now
    )
    Profile.objects.filter(pk=survivor_id).update(
        merge_count=max(0, survivor.merge_count - absorbed_count - 1), updated_at=now
    )
    # A conditional update, not save(): the audit entry below is the one that names the actor.
    Merge.objects.filter(pk=merge.pk).update(unmerged_at=now)
    merge.unmerged_at = now
    pair = [survivor_id, absorbed_id]
    _refresh_attributes(pair)
    _refresh_seen(pair)
    run_unmerge_hooks(workspace.pk, [(survivor_id, absorbed_id)])
    _audit(
        merge,
        actor=actor,
        action="UPDATE",
        changes={"unmerged_at": ["None", str(now)]},
        data={
            "reason": (reason or "").strip()[:500],
            "restored": str(absorbed_id),
            "profiles": sorted(str(p) for p in side),
            **dict(moved),
            "via": via or "profile_unmerge",
        },
    )
    return Unmerged(
        merge=merge,
        survivor_id=survivor_id,
        restored_id=absorbed_id,
        profile_ids=sorted(side, key=str),
        identities=moved["identities"],
        traits=moved["traits"],
        events=moved["events"],
        data_keys=moved["data_keys"],
    )


def _refresh_seen(profile_ids: list[UUID]) -> None:
    """First and last seen from each profile's own events (None when it has none)."""
    spans = {
        row["profile_id"]: (row["first"], row["last"])
        for row in Event.objects.filter(profile_id__in=profile_ids)
        .values("profile_id")
        .annotate(first=Min("timestamp"), last=Max("timestamp"))
    }
    bulk.update_from_values(
        Profile,
        key="id",
        names=["first_seen_at", "last_seen_at"],
        rows=[(pid, *spans.get(pid, (None, None))) for pid in profile_ids],
        assignments=["first_seen_at = v.column2", "last_seen_at = v.column3"],
    )
