"""Recompute identity clusters from the stored identifier links, under the current rules.

After a steward changes the identity rules (a new blocked value, a stricter limit), the
existing profiles may no longer be what the rules would build. The rebuild replays every
stored link (two identifiers seen in one message) in the order they were seen, joining clusters
only when every identifier type stays within its limit and the merge cap holds — the same
semantics as ingestion — and compares the result with the current profiles:

- a cluster spread over several profiles would MERGE (applied unless dry-run, into the oldest
  profile, through the merge ledger, so it can be undone);
- a profile spread over several clusters would SPLIT (recorded as a merge conflict for
  stewards: splitting a profile is an unmerge, decided per case).

Two profiles an unmerge separated are never joined again by the replay (ADR 0007), as in
ingestion: a steward's unmerge is not undone by a rebuild.

Only identities first seen before their rule last changed are decrypted (in bounded batches,
in worker memory) to re-check blocked values; newer ones were checked at ingest.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from profiles import bulk
from profiles.ingest import (
    Ident,
    WorkspaceRules,
    _apply_merges,
    _Plan,
    _ProfileState,
    load_rules,
    separated_pairs,
)
from profiles.models import (
    DataKey,
    Identity,
    IdentityLink,
    IdentityRule,
    MergeConflict,
    Profile,
    Workspace,
)

DECRYPT_BATCH = 2000


@dataclass
class RebuildReport:
    identities: int = 0
    links: int = 0
    clusters: int = 0
    profiles: int = 0
    blocked: int = 0
    refused_links: int = 0
    merges: list[tuple[UUID, list[UUID]]] = field(default_factory=list)  # survivor, absorbed
    splits: list[tuple[UUID, int]] = field(default_factory=list)  # profile, clusters
    applied: bool = False


class _Clusters:
    """Union-find over identity positions with per-cluster type counts (for the limits)."""

    def __init__(self, types: list[str], counted: list[bool], rules: WorkspaceRules) -> None:
        n = len(types)
        self.parent = list(range(n))
        # Only types with a limit are counted; the others can never refuse a union.
        self.limits = {
            kind: limit
            for kind in set(types)
            if (limit := rules.rule(kind).max_per_profile) is not None
        }
        self.counts: list[Counter[str] | None] = [
            Counter({types[i]: 1}) if counted[i] and types[i] in self.limits else Counter()
            for i in range(n)
        ]
        self.size = [1] * n
        self.merges = [0] * n
        # Profiles an unmerge separated: each cluster's set of such profiles among its own.
        self.separated: dict[UUID, set[UUID]] = {}
        self.present: dict[int, set[UUID]] = {}

    def separate(self, pairs: list[tuple[UUID, UUID]], profile_of: list[UUID]) -> None:
        for left, right in pairs:
            self.separated.setdefault(left, set()).add(right)
            self.separated.setdefault(right, set()).add(left)
        for i, profile_id in enumerate(profile_of):
            if profile_id in self.separated:
                self.present[i] = {profile_id}

    def _apart(self, ra: int, rb: int) -> bool:
        here, there = self.present.get(ra), self.present.get(rb)
        if not here or not there:
            return False
        return any(self.separated[p] & there for p in here)

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def union(self, a: int, b: int, rules: WorkspaceRules) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        ca, cb = self.counts[ra], self.counts[rb]
        assert ca is not None and cb is not None
        combined = ca + cb if ca and cb else (ca or cb)
        for kind, count in combined.items():
            if count > self.limits.get(kind, count):
                return False
        if self.merges[ra] + self.merges[rb] + 1 > rules.max_merges:
            return False
        if self.size[ra] + self.size[rb] > rules.max_identities:
            return False
        if self._apart(ra, rb):
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        if rb in self.present:
            self.present.setdefault(ra, set()).update(self.present.pop(rb))
        self.counts[ra], self.counts[rb] = combined, None
        self.size[ra] += self.size[rb]
        self.merges[ra] += self.merges[rb] + 1
        return True


def _blocked_identities(
    workspace: Workspace,
    rows: list[tuple[UUID, str, UUID, datetime, datetime]],
    rules: WorkspaceRules,
) -> set[UUID]:
    """Identities whose value the current rules block (decrypting only those stored before
    their rule last changed)."""
    changed_at = dict(
        IdentityRule.objects.filter(workspace=workspace).values_list(
            "identifier_type", "updated_at"
        )
    )
    stale = [
        identity_id
        for identity_id, kind, _profile, first_seen, _last in rows
        if kind in changed_at and first_seen <= changed_at[kind]
    ]
    blocked: set[UUID] = set()
    for start in range(0, len(stale), DECRYPT_BATCH):
        batch = Identity.objects.filter(pk__in=stale[start : start + DECRYPT_BATCH]).only(
            "id", "identifier_type", "value", "data_key_id"
        )
        for identity in batch:
            if rules.rule(identity.identifier_type).blocks(identity.value):
                blocked.add(identity.pk)
    return blocked


def identities_rebuild(*, workspace: Workspace, apply: bool) -> RebuildReport:
    """Replay the workspace's identifier links under the current rules; report (and unless
    `apply` is False, carry out) the merges, and record the splits for stewards."""
    rules = load_rules(workspace)
    now = timezone.now()
    rows = list(
        Identity.objects.filter(workspace=workspace)
        .order_by("first_seen_at", "id")
        .values_list("id", "identifier_type", "profile_id", "first_seen_at", "last_seen_at")
    )
    report = RebuildReport(identities=len(rows))
    blocked = _blocked_identities(workspace, rows, rules)
    report.blocked = len(blocked)
    position = {row[0]: i for i, row in enumerate(rows)}
    types = [row[1] for row in rows]
    counted = []
    for _id, kind, _profile, _first, last_seen in rows:
        window = rules.rule(kind).window_days
        counted.append(window is None or last_seen >= now - timedelta(days=window))
    clusters = _Clusters(types, counted, rules)
    clusters.separate(separated_pairs(workspace.pk, None), [row[2] for row in rows])
    # Replayed in the order ingestion stored them (it decided under per-identifier locks, in
    # that order); message timestamps can arrive out of order across workers.
    links = IdentityLink.objects.filter(workspace=workspace).order_by("id")
    for left, right in links.values_list("left_id", "right_id").iterator(chunk_size=10_000):
        report.links += 1
        if left in blocked or right in blocked:
            continue
        a, b = position.get(left), position.get(right)
        if a is None or b is None:
            continue
        if not clusters.union(a, b, rules):
            report.refused_links += 1

    profiles_of_cluster: dict[int, set[UUID]] = defaultdict(set)
    clusters_of_profile: dict[UUID, set[int]] = defaultdict(set)
    for i, (identity_id, _kind, profile_id, _first, _last) in enumerate(rows):
        root = -1 - i if identity_id in blocked else clusters.find(i)
        profiles_of_cluster[root].add(profile_id)
        clusters_of_profile[profile_id].add(root)
    report.clusters = len(profiles_of_cluster)
    report.profiles = len(clusters_of_profile)
    created = dict(
        Profile.objects.filter(pk__in=list(clusters_of_profile)).values_list("id", "created_at")
    )
    for members in profiles_of_cluster.values():
        if len(members) > 1:
            ordered = sorted(members, key=lambda p: (created[p], str(p)))
            report.merges.append((ordered[0], ordered[1:]))
    report.splits = sorted(
        ((pid, len(roots)) for pid, roots in clusters_of_profile.items() if len(roots) > 1),
        key=lambda item: str(item[0]),
    )
    if apply:
        _apply(workspace, report, rows, now)
        report.applied = True
    return report


@transaction.atomic
def _apply(
    workspace: Workspace,
    report: RebuildReport,
    rows: list[tuple[UUID, str, UUID, datetime, datetime]],
    now: object,
) -> None:
    plan = _Plan()
    evidence: dict[UUID, tuple[UUID, str]] = {}  # profile -> one of its identities
    for identity_id, kind, profile_id, _first, _last in rows:
        evidence.setdefault(profile_id, (identity_id, kind))
    involved = {p for survivor, absorbed in report.merges for p in (survivor, *absorbed)}
    keys = dict(
        DataKey.objects.filter(profile_id__in=involved, destroyed_at__isnull=True)
        .order_by("-created_at")
        .values_list("profile_id", "id")
    )
    for pid, created_at, merge_count in Profile.objects.filter(pk__in=involved).values_list(
        "id", "created_at", "merge_count"
    ):
        plan.profiles[pid] = _ProfileState(
            id=pid,
            created_at=created_at,
            counts=Counter(),
            total=0,
            merge_count=merge_count,
            data_key_id=keys[pid],
        )
    for survivor, absorbed_list in report.merges:
        for absorbed in absorbed_list:
            identity_id, kind = evidence[absorbed]
            ident = Ident(kind, "", identity_id.bytes, 0)
            plan.identity_id[ident.key] = identity_id
            plan.merges.append(
                (survivor, absorbed, ident, "", "rebuild: linked under the current rules")
            )
            plan.redirect[absorbed] = survivor
            plan.profiles[survivor].merge_count += plan.profiles[absorbed].merge_count + 1
    _apply_merges(workspace, plan, now)  # type: ignore[arg-type]
    bulk.insert(
        MergeConflict,
        [
            "workspace",
            "profile",
            "other_profile",
            "identifier_type",
            "message_id",
            "reason",
            "created_at",
        ],
        [
            (
                workspace.pk,
                pid,
                pid,
                "rebuild",
                "",
                f"rebuild: under the current rules these identities form {parts} profiles",
                now,
            )
            for pid, parts in report.splits
        ],
    )
