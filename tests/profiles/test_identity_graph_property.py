"""Property: for any sequence of messages, however it is split into batches, the profiles the
pipeline builds are exactly the clusters a simple in-memory reference model computes: the
connected components of the identifier graph, without blocked values and without the edges the
identity rules refuse (a profile never holds more identifiers of a type than its limit)."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles import services
from profiles.models import Identity, IdentityRule
from tests.profiles.ingest_helpers import msg

PRIORITY = {"user_id": 10, "email": 20, "anonymous_id": 90}
BLOCKED = {"undefined", "null", "0"}

_slugs = itertools.count()

message_strategy = st.fixed_dictionaries(
    {
        "user_id": st.none() | st.sampled_from(["u0", "u1", "u2", "undefined"]),
        "anonymous_id": st.none() | st.sampled_from(["a0", "a1", "a2", "a3", "a4", "null"]),
        "email": st.none()
        | st.sampled_from(["e0@example.com", "E1@Example.com", "e2@example.com"]),
    }
).filter(lambda m: m["user_id"] is not None or m["anonymous_id"] is not None)


def identifiers(message: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    if message["user_id"] is not None:
        found.append(("user_id", message["user_id"]))
    if message["anonymous_id"] is not None:
        found.append(("anonymous_id", message["anonymous_id"]))
    if message["email"] is not None:
        found.append(("email", message["email"].strip().lower()))
    unblocked = {(t, v) for t, v in found if v.lower() not in BLOCKED}
    return sorted(unblocked, key=lambda i: (PRIORITY[i[0]], i[0]))


def reference_clusters(
    messages: list[dict[str, Any]], limits: dict[str, int | None]
) -> set[frozenset[tuple[str, str]]]:
    """Greedy, in arrival order, strongest identifier first; a cluster joins only within limits."""
    cluster_of: dict[tuple[str, str], int] = {}
    members: dict[int, set[tuple[str, str]]] = {}
    fresh = itertools.count()

    def within(counts: Counter[str]) -> bool:
        return all(limits.get(t) is None or c <= limits[t] for t, c in counts.items())  # type: ignore[operator]

    for message in messages:
        joined: list[int] = []
        counts: Counter[str] = Counter()
        attach: list[tuple[str, str]] = []
        for ident in identifiers(message):
            cluster = cluster_of.get(ident)
            if cluster is None:
                trial = counts + Counter({ident[0]: 1})
                if within(trial):
                    counts = trial
                    attach.append(ident)
            elif cluster not in joined:
                trial = counts + Counter(t for t, _ in members[cluster])
                if within(trial):
                    counts = trial
                    joined.append(cluster)
        target = joined[0] if joined else next(fresh) + 1_000_000
        members.setdefault(target, set())
        for other in joined[1:]:
            for ident in members.pop(other):
                cluster_of[ident] = target
                members[target].add(ident)
        for ident in attach:
            cluster_of[ident] = target
            members[target].add(ident)
    return {frozenset(m) for m in members.values() if m}


def stored_clusters(workspace: Any) -> set[frozenset[tuple[str, str]]]:
    by_profile: dict[Any, set[tuple[str, str]]] = {}
    for identity in Identity.objects.filter(workspace=workspace):
        by_profile.setdefault(identity.profile_id, set()).add(
            (identity.identifier_type, identity.value)
        )
    return {frozenset(m) for m in by_profile.values()}


def ingest_in_batches(workspace: Any, messages: list[dict[str, Any]], cuts: list[int]) -> None:
    source = services.source_create(workspace=workspace, name="Web")
    inbound = [
        msg(
            user_id=m["user_id"],
            anonymous_id=m["anonymous_id"],
            traits={"email": m["email"]} if m["email"] is not None else {},
        )
        for m in messages
    ]
    bounds = sorted({0, len(inbound), *(c % (len(inbound) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        services.ingest_messages(source=source, messages=inbound[start:end])


@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    messages=st.lists(message_strategy, min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=12), max_size=4),
)
def test_profiles_are_the_components_without_limits(
    messages: list[dict[str, Any]], cuts: list[int]
) -> None:
    # given: no limits at all, so every edge between unblocked identifiers is accepted
    workspace = services.workspace_create(slug=f"prop-a-{next(_slugs)}", name="Property")
    IdentityRule.objects.filter(workspace=workspace).update(max_per_profile=None)
    # when
    ingest_in_batches(workspace, messages, cuts)
    # then
    limits = dict.fromkeys(PRIORITY)
    assert stored_clusters(workspace) == reference_clusters(messages, limits)


@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    messages=st.lists(message_strategy, min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=12), max_size=4),
)
def test_profiles_follow_the_reference_model_under_limits(
    messages: list[dict[str, Any]], cuts: list[int]
) -> None:
    # given: one user id and two emails per profile
    workspace = services.workspace_create(slug=f"prop-b-{next(_slugs)}", name="Property")
    IdentityRule.objects.filter(workspace=workspace, identifier_type="email").update(
        max_per_profile=2
    )
    # when
    ingest_in_batches(workspace, messages, cuts)
    # then
    clusters = stored_clusters(workspace)
    assert clusters == reference_clusters(
        messages, {"user_id": 1, "email": 2, "anonymous_id": None}
    )
    for cluster in clusters:
        counts = Counter(t for t, _ in cluster)
        assert counts["user_id"] <= 1
        assert counts["email"] <= 2
