"""Property: the rebuild (profiles.rebuild, which reads ids as text, counts only limited types and
streams the links) reports what the plain algorithm it replaced reports: every stored link
replayed in order through a union-find with a Counter of types per cluster, the limits, the
merge and identity caps, blocked values re-checked after a rule change, and unmerged pairs kept
apart. The plain algorithm is kept here as the reference."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles import services
from profiles.ingest import load_rules, separated_pairs
from profiles.models import (
    Identity,
    IdentityLink,
    IdentityPolicy,
    IdentityRule,
    Merge,
    Profile,
)
from tests.profiles.ingest_helpers import msg

_slugs = itertools.count()

message_strategy = st.fixed_dictionaries(
    {
        "user_id": st.none() | st.sampled_from(["u0", "u1", "u2"]),
        "anonymous_id": st.none() | st.sampled_from(["a0", "a1", "a2", "a3"]),
        "email": st.none() | st.sampled_from(["e0@example.com", "e1@example.com", "e2@x.org"]),
    }
).filter(lambda m: m["user_id"] is not None or m["anonymous_id"] is not None)


def reference_rebuild(workspace: Any) -> dict[str, Any]:
    """The former implementation, as plainly as it was written."""
    rules = load_rules(workspace)
    now = timezone.now()
    rows = list(
        Identity.objects.filter(workspace=workspace)
        .order_by("first_seen_at", "id")
        .values_list("id", "identifier_type", "profile_id", "first_seen_at", "last_seen_at")
    )
    changed_at = dict(
        IdentityRule.objects.filter(workspace=workspace).values_list(
            "identifier_type", "updated_at"
        )
    )
    blocked = {
        identity.pk
        for identity in Identity.objects.filter(
            pk__in=[r[0] for r in rows if r[1] in changed_at and r[3] <= changed_at[r[1]]]
        )
        if rules.rule(identity.identifier_type).blocks(identity.value)
    }
    position = {row[0]: i for i, row in enumerate(rows)}
    limits = {
        kind: limit
        for kind in {r[1] for r in rows}
        if (limit := rules.rule(kind).max_per_profile) is not None
    }
    parent = list(range(len(rows)))
    counts: list[Counter[str]] = []
    for _id, kind, _profile, _first, last in rows:
        window = rules.rule(kind).window_days
        counted = window is None or last >= now - timedelta(days=window)
        counts.append(Counter({kind: 1}) if counted and kind in limits else Counter())
    size = [1] * len(rows)
    merges = [0] * len(rows)
    apart: dict[Any, set[Any]] = defaultdict(set)
    for left, right in separated_pairs(workspace.pk, None):
        apart[left].add(right)
        apart[right].add(left)
    present = {i: {row[2]} for i, row in enumerate(rows) if row[2] in apart}

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    refused = links = 0
    for left, right in (
        IdentityLink.objects.filter(workspace=workspace)
        .order_by("id")
        .values_list("left_id", "right_id")
    ):
        links += 1
        if left in blocked or right in blocked or left not in position or right not in position:
            continue
        ra, rb = find(position[left]), find(position[right])
        if ra == rb:
            continue
        combined = counts[ra] + counts[rb]
        if (
            any(c > limits.get(k, c) for k, c in combined.items())
            or merges[ra] + merges[rb] + 1 > rules.max_merges
            or size[ra] + size[rb] > rules.max_identities
            or any(apart[p] & present.get(rb, set()) for p in present.get(ra, set()))
        ):
            refused += 1
            continue
        parent[rb] = ra
        present.setdefault(ra, set()).update(present.pop(rb, set()))
        counts[ra], size[ra], merges[ra] = (
            combined,
            size[ra] + size[rb],
            merges[ra] + merges[rb] + 1,
        )
    profiles_of: dict[int, set[Any]] = defaultdict(set)
    roots_of: dict[Any, set[int]] = defaultdict(set)
    for i, (identity_id, _kind, profile_id, _f, _l) in enumerate(rows):
        root = -1 - i if identity_id in blocked else find(i)
        profiles_of[root].add(profile_id)
        roots_of[profile_id].add(root)
    created = dict(Profile.objects.values_list("id", "created_at"))
    return {
        "identities": len(rows),
        "links": links,
        "refused": refused,
        "blocked": len(blocked),
        "clusters": len(profiles_of),
        "profiles": len(roots_of),
        "merges": sorted(
            (ordered[0], ordered[1:])
            for members in profiles_of.values()
            if len(members) > 1
            for ordered in [sorted(members, key=lambda p: (created[p], str(p)))]
        ),
        "splits": sorted((p, len(r)) for p, r in roots_of.items() if len(r) > 1),
    }


def reported(report: Any) -> dict[str, Any]:
    return {
        "identities": report.identities,
        "links": report.links,
        "refused": report.refused_links,
        "blocked": report.blocked,
        "clusters": report.clusters,
        "profiles": report.profiles,
        "merges": sorted((s, list(a)) for s, a in report.merges),
        "splits": sorted(report.splits),
    }


@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    messages=st.lists(message_strategy, min_size=1, max_size=14),
    email_limit=st.sampled_from([None, 1, 2]),
    relax=st.sampled_from(["none", "user_id", "email", "all"]),
    block=st.sampled_from([None, "a1", "e0@example.com", "u1"]),
    caps=st.sampled_from([(100, 500), (2, 500), (100, 3)]),
    unmerge=st.booleans(),
)
def test_the_rebuild_reports_what_the_plain_algorithm_reports(
    messages: list[dict[str, Any]],
    email_limit: int | None,
    relax: str,
    block: str | None,
    caps: tuple[int, int],
    unmerge: bool,
) -> None:
    # given: profiles built under some limits
    workspace = services.workspace_create(slug=f"rebuild-ref-{next(_slugs)}", name="Rebuild")
    IdentityRule.objects.filter(workspace=workspace, identifier_type="email").update(
        max_per_profile=email_limit
    )
    source = services.source_create(workspace=workspace, name="Web")
    services.ingest_messages(
        source=source,
        messages=[
            msg(
                user_id=m["user_id"],
                anonymous_id=m["anonymous_id"],
                traits={"email": m["email"]} if m["email"] is not None else {},
            )
            for m in messages
        ],
    )
    if unmerge:  # the latest merge undone: its two sides are kept apart from then on
        step = (
            Merge.objects.filter(workspace=workspace, unmerged_at__isnull=True)
            .order_by("-created_at", "-id")
            .first()
        )
        if step is not None:
            services.profile_unmerge(workspace=workspace, merge=step, actor=None, reason="test")
    # when: the rules change afterwards (limits relaxed, a value blocked, caps lowered)
    if relax in ("user_id", "all"):
        IdentityRule.objects.filter(workspace=workspace, identifier_type="user_id").update(
            max_per_profile=None, updated_at=timezone.now()
        )
    if relax in ("email", "all"):
        IdentityRule.objects.filter(workspace=workspace, identifier_type="email").update(
            max_per_profile=None, updated_at=timezone.now()
        )
    if block is not None:
        kind = {"a": "anonymous_id", "e": "email", "u": "user_id"}[block[0]]
        rule = IdentityRule.objects.get(workspace=workspace, identifier_type=kind)
        rule.blocked_values = [*rule.blocked_values, block]
        rule.save()
    IdentityPolicy.objects.update_or_create(
        workspace=workspace,
        defaults={"max_merges_per_profile": caps[0], "max_identities_per_profile": caps[1]},
    )
    from profiles import ingest

    ingest._config_cache.clear()
    # then
    expected = reference_rebuild(workspace)
    report = services.identities_rebuild(workspace=workspace, apply=False)
    assert reported(report) == expected


def test_reports_name_profiles_by_uuid(workspace: Any) -> None:
    # given: two profiles a relaxed limit would join
    source = services.source_create(workspace=workspace, name="Web")
    services.ingest_messages(
        source=source,
        messages=[
            msg(user_id="u-1", anonymous_id="a-1"),
            msg(user_id="u-2", anonymous_id="a-1"),
        ],
    )
    IdentityRule.objects.filter(workspace=workspace, identifier_type="user_id").update(
        max_per_profile=None, updated_at=timezone.now()
    )
    from profiles import ingest

    ingest._config_cache.clear()
    # when
    report = services.identities_rebuild(workspace=workspace, apply=False)
    # then
    [(survivor, absorbed)] = report.merges
    assert isinstance(survivor, UUID)
    assert all(isinstance(p, UUID) for p in absorbed)
    assert reported(report) == reference_rebuild(workspace)
