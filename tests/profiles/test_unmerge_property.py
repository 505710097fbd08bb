"""Property: however people are merged (by messages linking their identifiers, in any batching,
or by a steward), undoing the merges one by one, most recent first, gives every person back
exactly their profile: identities, traits, events, data keys, attributes, seen times and
consent state, plus what their own identifiers carried while they were merged.

Phase 1 builds 2-4 separate people (anonymous ids, maybe an email, traits, events, consent;
GPC over a grant too). Phase 2 links them at random (alias anon<->anon, or one person's
anonymous id seen with another's email), by steward merges, and sends more data carried by one
person's identifiers (new traits, a new identifier, consent decisions). The reference model
says whose each phase-2 message is: the owner of its strongest identifier."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import services as consent_services
from consent.enums import Decision, Method
from consent.models import ConsentState
from consent.services import Evidence, Subject
from profiles import services
from profiles.enums import ProfileStatus
from profiles.exceptions import MergeRefused, UnmergeRefused
from profiles.merging import merge_blocking_unmerge
from profiles.models import DataKey, Event, Identity, Merge, Profile, Trait
from tests.profiles.ingest_helpers import msg

_slugs = itertools.count()
PLANS = ["free", "gold", "silver"]
COUNTRIES = ["FR", "DE", "NL"]
PURPOSES = ["analytics", "marketing_email", "advertising"]
DECISIONS = [Decision.GRANTED, Decision.DENIED, Decision.WITHDRAWN]

person_strategy = st.fixed_dictionaries(
    {
        "anons": st.integers(min_value=1, max_value=2),
        "email": st.booleans(),
        "plan": st.none() | st.sampled_from(PLANS),
        "country": st.none() | st.sampled_from(COUNTRIES),
        "name": st.none() | st.sampled_from(["Ann", "Bob"]),
        "events": st.integers(min_value=0, max_value=2),
        "consent": st.dictionaries(st.sampled_from(PURPOSES), st.sampled_from(DECISIONS)),
        "gpc": st.booleans(),
    }
)

step_strategy = st.one_of(
    st.tuples(st.just("link"), st.integers(0, 3), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("steward"), st.integers(0, 3), st.integers(0, 3), st.just(False)),
    st.tuples(st.just("data"), st.integers(0, 3), st.sampled_from(PLANS), st.booleans()),
    st.tuples(st.just("consent"), st.integers(0, 3), st.sampled_from(PURPOSES),
              st.sampled_from(DECISIONS)),
)  # fmt: skip


class World:
    """The people, their identifiers, and what the reference model expects of each."""

    def __init__(self, workspace: Any, source: Any) -> None:
        self.workspace, self.source = workspace, source
        self.profile: list[Any] = []
        self.anons: list[list[str]] = []
        self.email: list[str | None] = []
        self.expected: list[dict[str, Any]] = []

    def subject(self, i: int) -> Subject:
        anon = self.anons[i][0]
        profile = Identity.objects.get(
            workspace=self.workspace,
            identifier_type="anonymous_id",
            blind_index=services.ingest.blind_index(self.workspace.pk, "anonymous_id", anon),
        ).profile_id
        return Subject("anonymous_id", anon, profile)


def state_of(world: World, i: int) -> dict[str, Any]:
    profile = Profile.objects.get(pk=world.profile[i])
    traits = {}
    for t in Trait.objects.filter(profile=profile):
        traits[t.key] = t.value_pii if t.is_pii else t.value_attribute
    return {
        "status": profile.status,
        "merged_into": profile.merged_into_id,
        "merge_count": profile.merge_count,
        "attributes": profile.attributes,
        "seen": (profile.first_seen_at, profile.last_seen_at),
        "identities": {
            (x.identifier_type, x.value) for x in Identity.objects.filter(profile=profile)
        },
        "traits": traits,
        "events": set(Event.objects.filter(profile=profile).values_list("message_id", flat=True)),
        "keys": set(DataKey.objects.filter(profile=profile).values_list("pk", flat=True)),
        "consent": {
            key: (decision, reconsent)
            for key, decision, reconsent in ConsentState.objects.filter(
                profile_id=profile.pk
            ).values_list("purpose__key", "decision", "needs_reconsent")
        },
    }


def rows_sealed_under_own_keys(profile_id: Any) -> bool:
    keys = set(DataKey.objects.filter(profile_id=profile_id).values_list("pk", flat=True))
    return all(
        set(model.objects.filter(profile_id=profile_id).values_list("data_key", flat=True)) <= keys
        for model in (Identity, Trait, Event)
    ) and all(
        set(model.objects.filter(profile_id=profile_id).values_list("origin_profile_id", flat=True))
        <= {profile_id}
        for model in (Identity, Trait, Event)
    )


def build_people(world: World, people: list[dict[str, Any]], order: list[int]) -> None:
    """Phase 1: each person alone (no merge), their messages interleaved by `order`, one
    message per batch; then their consent."""
    queues: list[list[Any]] = []
    for i, spec in enumerate(people):
        anons = [f"{world.workspace.slug}-p{i}-a{j}" for j in range(spec["anons"])]
        world.anons.append(anons)
        world.email.append(f"p{i}@{world.workspace.slug}.example" if spec["email"] else None)
        traits = {k: spec[k] for k in ("plan", "country", "name") if spec[k] is not None}
        if world.email[i]:
            traits["email"] = world.email[i]
        queue = [msg("identify", anonymous_id=anons[0], traits=traits)]
        for anon in anons[1:]:
            queue.append(msg("alias", anonymous_id=anon, previous_id=anons[0]))
        for n in range(spec["events"]):
            queue.append(msg("track", anonymous_id=anons[-1], name=f"event-{n}"))
        queues.append(queue)
    # Each person's first message comes first, so the profiles are made in the people's order.
    for queue in queues:
        [pid] = set(
            services.ingest_messages(source=world.source, messages=[queue.pop(0)]).profile_ids
        )
        world.profile.append(pid)
    picks = iter(order)
    while any(queues):
        waiting = [q for q in queues if q]
        queue = waiting[next(picks, 0) % len(waiting)]
        services.ingest_messages(source=world.source, messages=[queue.pop(0)])
    assert not Merge.objects.filter(workspace=world.workspace).exists()
    for i, spec in enumerate(people):
        if spec["consent"]:
            consent_services.consent_record(
                workspace=world.workspace, subject=world.subject(i), decisions=spec["consent"],
                evidence=Evidence(method=Method.BANNER, jurisdiction="DE"),
            )  # fmt: skip
        if spec["gpc"]:
            consent_services.consent_apply_gpc(
                workspace=world.workspace, subject=world.subject(i),
                evidence=Evidence(method=Method.GPC, jurisdiction="DE"),
            )  # fmt: skip


def expect_message(
    world: World, i: int, message: Any, new_identity: tuple[str, str] | None
) -> None:
    expected = world.expected[i]
    expected["events"].add(message.message_id)
    for key, value in (message.traits or {}).items():
        expected["traits"][key] = value
    if new_identity is not None:
        expected["identities"].add(new_identity)
    first, last = expected["seen"]
    expected["seen"] = (min(first, message.timestamp), max(last, message.timestamp))


def run_phase_two(world: World, steps: list[tuple[Any, ...]], cuts: list[int]) -> None:
    n = len(world.profile)
    pending: list[tuple[int, Any, tuple[str, str] | None]] = []
    counter = itertools.count()

    def flush() -> None:
        messages = [m for _i, m, _new in pending]
        bounds = sorted({0, len(messages), *(c % (len(messages) + 1) for c in cuts)})
        for start, end in itertools.pairwise(bounds):
            services.ingest_messages(source=world.source, messages=messages[start:end])
        for i, message, new in pending:
            expect_message(world, i, message, new)
        pending.clear()

    for kind, first, second, flag in steps:
        a = first % n
        if kind == "link":
            b = second % n
            if a == b:
                continue
            if flag and world.email[b]:
                # a's anonymous id seen with b's email: the email is stronger, so it is b's
                message = msg("identify", anonymous_id=world.anons[a][-1],
                              traits={"email": world.email[b]})  # fmt: skip
                pending.append((b, message, None))
            else:
                # an alias: the anonymousId is named first, so the message is a's
                message = msg(
                    "alias", anonymous_id=world.anons[a][0], previous_id=world.anons[b][0]
                )
                pending.append((a, message, None))
        elif kind == "data":
            new = None
            traits: dict[str, Any] = {"plan": second}
            context: dict[str, Any] = {}
            if flag:
                device = f"{world.workspace.slug}-p{a}-device-{next(counter)}"
                context = {"device": {"id": device}}
                new = ("device_id", device)
            message = msg("identify", anonymous_id=world.anons[a][-1], traits=traits,
                          context=context)  # fmt: skip
            pending.append((a, message, new))
        else:
            flush()
            if kind == "steward":
                pa, pb = (world.subject(x).profile_id for x in (a, second % n))
                if pa != pb:
                    with contextlib.suppress(MergeRefused):
                        services.profiles_merge(
                            workspace=world.workspace, profile_ids=(pa, pb),
                            rule="steward: same person", actor=None, evidence={"p": 0.9},
                        )  # fmt: skip
            else:
                record = consent_services.consent_record(
                    workspace=world.workspace, subject=world.subject(a), decisions={second: flag},
                    evidence=Evidence(method=Method.API, jurisdiction="DE"),
                )  # fmt: skip
                assert record.records
                world.expected[a]["consent"][second] = (flag, False)
    flush()


def unmerge_all(world: World) -> int:
    """Undo every merge, most recent first; an older one is refused while a later one of the
    same profile stands."""
    undone = 0
    while True:
        standing = list(
            Merge.objects.filter(workspace=world.workspace, unmerged_at__isnull=True).order_by("pk")
        )
        if not standing:
            return undone
        oldest, latest = standing[0], standing[-1]
        if merge_blocking_unmerge(merge=oldest) is not None:
            with pytest.raises(UnmergeRefused):
                services.profile_unmerge(workspace=world.workspace, merge=oldest, actor=None)
        active = Profile.objects.filter(workspace=world.workspace, status=ProfileStatus.ACTIVE)
        before = active.count()
        services.profile_unmerge(workspace=world.workspace, merge=latest, actor=None)
        assert active.count() == before + 1
        undone += 1


@pytest.mark.django_db
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    people=st.lists(person_strategy, min_size=2, max_size=4),
    order=st.lists(st.integers(min_value=0, max_value=20), max_size=10),
    steps=st.lists(step_strategy, min_size=1, max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=10), max_size=3),
)
def test_unmerging_every_merge_gives_every_person_back(
    people: list[dict[str, Any]], order: list[int], steps: list[tuple[Any, ...]], cuts: list[int]
) -> None:
    # given: separate people
    workspace = services.workspace_create(slug=f"unm-{next(_slugs)}", name="Property")
    consent_services.purposes_ensure_defaults(workspace=workspace)
    source = services.source_create(workspace=workspace, name="Web")
    world = World(workspace, source)
    build_people(world, people, order)
    world.expected = [state_of(world, i) for i in range(len(people))]
    for expected in world.expected:
        assert expected["status"] == ProfileStatus.ACTIVE
    # when: merged at random, with more data coming in meanwhile, then unmerged step by step
    run_phase_two(world, steps, cuts)
    merges = Merge.objects.filter(workspace=workspace).count()
    assert unmerge_all(world) == merges
    # then: every person is what they were, plus what their own identifiers carried
    for i, expected in enumerate(world.expected):
        actual = state_of(world, i)
        attributes = {k: v for k, v in expected["traits"].items() if k in ("plan", "country")}
        assert actual["attributes"] == attributes
        assert actual == {**expected, "attributes": attributes}
        assert rows_sealed_under_own_keys(world.profile[i])
    # and no profile was made along the way that is not one of the people
    assert set(Profile.objects.filter(workspace=workspace).values_list("pk", flat=True)) == set(
        world.profile
    )
