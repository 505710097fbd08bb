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

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import connection, transaction
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
    """Union-find over identity positions with, per cluster, the identities of each limited
    type (for the limits), its size and its merge count; plain lists and small dicts, so that a
    workspace's whole graph fits the time of a bare union-find (bench/ingest.py)."""

    def __init__(self, kinds: list[str], counted: list[bool], rules: WorkspaceRules) -> None:
        n = len(kinds)
        self.parent = list(range(n))
        # Only types with a limit are counted; the others can never refuse a union.
        self.limits = {
            kind: limit
            for kind in set(kinds)
            if (limit := rules.rule(kind).max_per_profile) is not None
        }
        limits = self.limits
        self.counts: list[dict[str, int] | None] = [
            {kind: 1} if kind in limits and counted[i] else None for i, kind in enumerate(kinds)
        ]
        self.size = [1] * n
        self.merges = [0] * n
        self.max_merges = rules.max_merges
        self.max_identities = rules.max_identities
        # Profiles an unmerge separated: each cluster's set of such profiles among its own.
        self.separated: dict[Any, set[Any]] = {}
        self.present: dict[int, set[Any]] = {}

    def separate(self, pairs: list[tuple[Any, Any]], profile_of: list[Any]) -> None:
        for left, right in pairs:
            self.separated.setdefault(left, set()).add(right)
            self.separated.setdefault(right, set()).add(left)
        if self.separated:
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

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        ca, cb = self.counts[ra], self.counts[rb]
        if ca is not None or cb is not None:
            # Every limited type of the joined cluster within its limit (as counted together).
            limits = self.limits
            for kind, count in (cb or {}).items():
                if (ca.get(kind, 0) if ca else 0) + count > limits[kind]:
                    return False
            for kind, count in (ca or {}).items():
                if (cb is None or kind not in cb) and count > limits[kind]:
                    return False
        if self.merges[ra] + self.merges[rb] + 1 > self.max_merges:
            return False
        if self.size[ra] + self.size[rb] > self.max_identities:
            return False
        if self.present and self._apart(ra, rb):
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
            ca, cb = cb, ca
        self.parent[rb] = ra
        if rb in self.present:
            self.present.setdefault(ra, set()).update(self.present.pop(rb))
        if cb is not None:
            if ca is None:
                self.counts[ra] = cb
            else:
                for kind, count in cb.items():
                    ca[kind] = ca.get(kind, 0) + count
            self.counts[rb] = None
        self.size[ra] += self.size[rb]
        self.merges[ra] += self.merges[rb] + 1
        return True


def _text_id(column: str) -> str:
    """A uuid column read as text: no UUID object is built per row (PostgreSQL keeps uuids
    natively and prints them dashed; SQLite stores the 32 hex digits)."""
    return f"{column}::text" if connection.vendor == "postgresql" else column


def _key(value: UUID) -> str:
    """The text form `_text_id` reads a uuid in."""
    return str(value) if connection.vendor == "postgresql" else value.hex


def _identities(workspace: Workspace) -> tuple[list[str], list[str], list[str]]:
    """(ids, types, profile ids) of every identity of the workspace, as text, in one query of
    just those columns."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_text_id('id')}, identifier_type, {_text_id('profile_id')} "  # noqa: S608
            f"FROM {Identity._meta.db_table} WHERE workspace_id = %s",
            [workspace.pk],
        )
        rows = cursor.fetchall()
    if not rows:
        return [], [], []
    ids, kinds, profiles = (list(column) for column in zip(*rows, strict=True))
    return ids, kinds, profiles


def _not_counted(
    workspace: Workspace, rules: WorkspaceRules, kinds: set[str], now: datetime
) -> set[str]:
    """Identities outside their type's window (a windowed limit counts only recent ones)."""
    stale: set[str] = set()
    for kind in sorted(kinds):
        rule = rules.rule(kind)
        if rule.max_per_profile is None or rule.window_days is None:
            continue
        cutoff = now - timedelta(days=rule.window_days)
        stale.update(
            _key(i)
            for i in Identity.objects.filter(
                workspace=workspace, identifier_type=kind, last_seen_at__lt=cutoff
            ).values_list("id", flat=True)
        )
    return stale


def _blocked_identities(workspace: Workspace, rules: WorkspaceRules) -> set[str]:
    """Identities whose value the current rules block (decrypting only those stored before
    their rule last changed), as `_key`s."""
    changed_at = dict(
        IdentityRule.objects.filter(workspace=workspace).values_list(
            "identifier_type", "updated_at"
        )
    )
    blocked: set[str] = set()
    for kind, changed in sorted(changed_at.items()):
        stale = list(
            Identity.objects.filter(
                workspace=workspace, identifier_type=kind, first_seen_at__lte=changed
            ).values_list("id", flat=True)
        )
        for start in range(0, len(stale), DECRYPT_BATCH):
            batch = Identity.objects.filter(pk__in=stale[start : start + DECRYPT_BATCH]).only(
                "id", "identifier_type", "value", "data_key_id"
            )
            for identity in batch:
                if rules.rule(identity.identifier_type).blocks(identity.value):
                    blocked.add(_key(identity.pk))
    return blocked


def identities_rebuild(*, workspace: Workspace, apply: bool) -> RebuildReport:
    """Replay the workspace's identifier links under the current rules; report (and unless
    `apply` is False, carry out) the merges, and record the splits for stewards."""
    rules = load_rules(workspace)
    now = timezone.now()
    ids, kinds, profiles = _identities(workspace)
    report = RebuildReport(identities=len(ids))
    blocked = _blocked_identities(workspace, rules)
    report.blocked = len(blocked)
    position = {identity_id: i for i, identity_id in enumerate(ids)}
    not_counted = _not_counted(workspace, rules, set(kinds), now)
    counted = (
        [identity_id not in not_counted for identity_id in ids]
        if not_counted
        else ([True] * len(ids))
    )
    clusters = _Clusters(kinds, counted, rules)
    clusters.separate(
        [(_key(a), _key(b)) for a, b in separated_pairs(workspace.pk, None)], profiles
    )
    # Replayed in the order ingestion stored them (it decided under per-identifier locks, in
    # that order); message timestamps can arrive out of order across workers. Streamed, in
    # chunks, with just the two ids.
    skipped = {position[b] for b in blocked if b in position}
    get, union = position.get, clusters.union
    refused = links = 0
    with connection.chunked_cursor() as cursor:
        cursor.execute(
            f"SELECT {_text_id('left_id')}, {_text_id('right_id')} "  # noqa: S608
            f"FROM {IdentityLink._meta.db_table} WHERE workspace_id = %s ORDER BY id",
            [workspace.pk],
        )
        while chunk := cursor.fetchmany(10_000):
            links += len(chunk)
            for left, right in chunk:
                a, b = get(left), get(right)
                if a is None or b is None or a in skipped or b in skipped:
                    continue
                if not union(a, b):
                    refused += 1
    report.links, report.refused_links = links, refused

    # Which profiles each cluster holds and which clusters each profile spans; only the
    # exceptions (several) are kept as sets.
    find = clusters.find
    profile_of_root: dict[int, str] = {}
    root_of_profile: dict[str, int] = {}
    more_profiles: dict[int, set[str]] = {}
    more_roots: dict[str, set[int]] = {}
    for i, profile_id in enumerate(profiles):
        root = -1 - i if i in skipped else find(i)
        first = profile_of_root.setdefault(root, profile_id)
        if first != profile_id:
            more_profiles.setdefault(root, {first}).add(profile_id)
        seen = root_of_profile.setdefault(profile_id, root)
        if seen != root:
            more_roots.setdefault(profile_id, {seen}).add(root)
    report.clusters = len(profile_of_root)
    report.profiles = len(root_of_profile)
    if more_profiles:
        involved = [UUID(p) for members in more_profiles.values() for p in members]
        created = {
            _key(pid): created_at
            for pid, created_at in Profile.objects.filter(pk__in=involved).values_list(
                "id", "created_at"
            )
        }
        for members in more_profiles.values():
            ordered = sorted(members, key=lambda p: (created[p], str(UUID(p))))
            report.merges.append((UUID(ordered[0]), [UUID(p) for p in ordered[1:]]))
    report.splits = sorted(
        ((UUID(pid), len(roots)) for pid, roots in more_roots.items()),
        key=lambda item: str(item[0]),
    )
    if apply:
        _apply(workspace, report, now)
        report.applied = True
    return report


@transaction.atomic
def _apply(workspace: Workspace, report: RebuildReport, now: object) -> None:
    plan = _Plan()
    involved = {p for survivor, absorbed in report.merges for p in (survivor, *absorbed)}
    evidence: dict[UUID, tuple[UUID, str]] = {}  # profile -> its first identity
    for profile_id, identity_id, kind in (
        Identity.objects.filter(profile_id__in=involved)
        .order_by("first_seen_at", "id")
        .values_list("profile_id", "id", "identifier_type")
    ):
        evidence.setdefault(profile_id, (identity_id, kind))
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
