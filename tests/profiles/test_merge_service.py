"""profiles.services.profiles_merge: a steward's merge of two profiles outside ingestion."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from auditlog import get_logentry_model

from cdp.core import hooks
from cdp.core.exceptions import InvalidInput
from profiles import services
from profiles.enums import ProfileStatus
from profiles.exceptions import MergeRefused, ProfileNotFound
from profiles.models import DataKey, Event, Identity, IdentityPolicy, Merge, Profile, Trait
from tests.profiles.ingest_helpers import msg


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Web")


def person(source: Any, anon: str, **traits: Any) -> Profile:
    outcome = services.ingest_messages(
        source=source, messages=[msg("identify", anonymous_id=anon, traits=traits)]
    )
    return Profile.objects.get(pk=outcome.profile_ids[0])


EVIDENCE = {"probability": 0.97, "fields": {"last_name": 2, "postcode": 1}}


def test_merge_moves_rows_and_keys_into_the_older_profile_and_records_evidence(
    source: Any, owner: Any
) -> None:
    # given: two profiles of one person, written by two systems
    older = person(source, "crm-1", plan="gold", email="ann@example.com")
    newer = person(source, "pos-1", country="FR")
    newer_keys = set(DataKey.objects.filter(profile=newer).values_list("pk", flat=True))
    # when: a steward accepts the match (newer first: the order given does not decide)
    merge = services.profiles_merge(
        workspace=source.workspace,
        profile_ids=(newer.pk, older.pk),
        rule="probabilistic: steward accepted",
        actor=owner,
        evidence=EVIDENCE,
    )
    # then
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (merge.survivor_id, merge.absorbed_id) == (older.pk, newer.pk)
    assert (merge.rule, merge.evidence) == ("probabilistic: steward accepted", EVIDENCE)
    assert merge.identity_id is None and merge.unmerged_at is None
    assert set(merge.data_key_ids) == {str(k) for k in newer_keys}
    assert (newer.status, newer.merged_into_id) == (ProfileStatus.MERGED, older.pk)
    assert older.merge_count == 1
    for model in (Identity, Trait, Event):
        assert not model.objects.filter(profile=newer).exists()
        assert model.objects.filter(profile=older, origin_profile_id=newer.pk).exists()
    assert set(DataKey.objects.filter(profile=older).values_list("pk", flat=True)) >= newer_keys
    assert older.attributes == {"country": "FR", "plan": "gold"}
    log = get_logentry_model()
    entry = log.objects.get_for_object(merge).get(action=log.Action.CREATE)
    assert entry.actor == owner
    assert entry.additional_data["evidence"] == EVIDENCE


def test_merge_runs_the_merge_hooks_inside_the_merge(source: Any) -> None:
    # given
    a, b = person(source, "a-1"), person(source, "b-1")
    seen: list[Any] = []
    hooks.register_merge_hook("test-spy", lambda ws, merges: seen.append((ws, list(merges))))
    try:
        # when
        services.profiles_merge(
            workspace=source.workspace, profile_ids=(a.pk, b.pk), rule="admin", actor=None,
            evidence={},
        )  # fmt: skip
    finally:
        hooks._merge_hooks.pop("test-spy")
    # then
    assert seen == [(source.workspace.pk, [(a.pk, b.pk)])]


def test_merged_profile_is_found_by_the_absorbed_identifiers_afterwards(source: Any) -> None:
    # given
    a, b = person(source, "a-1"), person(source, "b-1")
    services.profiles_merge(
        workspace=source.workspace, profile_ids=(a.pk, b.pk), rule="admin", actor=None,
        evidence={},
    )  # fmt: skip
    # when: the absorbed profile's identifier comes back
    outcome = services.ingest_messages(source=source, messages=[msg(anonymous_id="b-1")])
    # then
    assert outcome.profile_ids == [a.pk]


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ("same", "same_profile"),
        ("merged", "profile_not_active"),
        ("user_ids", "identifier_limit"),
        ("merge_cap", "merge_cap"),
        ("identity_cap", "identity_cap"),
    ],
)
def test_merge_refuses_what_the_rules_refuse(source: Any, setup: str, code: str) -> None:
    # given
    ws = source.workspace
    a, b = person(source, "a-1"), person(source, "b-1")
    ids = (a.pk, b.pk)
    if setup == "same":
        ids = (a.pk, a.pk)
    elif setup == "merged":
        c = person(source, "c-1")
        services.profiles_merge(
            workspace=ws, profile_ids=(a.pk, c.pk), rule="admin", actor=None, evidence={}
        )
        ids = (c.pk, b.pk)
    elif setup == "user_ids":  # two accounts: user_id is limited to one per profile
        services.ingest_messages(source=source, messages=[msg(user_id="u-1", anonymous_id="a-1")])
        services.ingest_messages(source=source, messages=[msg(user_id="u-2", anonymous_id="b-1")])
    elif setup == "merge_cap":
        IdentityPolicy.objects.filter(workspace=ws).update(max_merges_per_profile=0)
    elif setup == "identity_cap":
        IdentityPolicy.objects.filter(workspace=ws).update(max_identities_per_profile=1)
    services.ingest._config_cache.clear()
    before = Merge.objects.count()
    # when / then
    with pytest.raises(MergeRefused) as refused:
        services.profiles_merge(
            workspace=ws, profile_ids=ids, rule="admin", actor=None, evidence={}
        )
    assert refused.value.code == code
    assert refused.value.status == 409
    assert Merge.objects.count() == before
    assert Profile.objects.get(pk=b.pk).status == ProfileStatus.ACTIVE


def test_merge_of_a_profile_of_another_workspace_is_not_found(
    source: Any, other_workspace: Any
) -> None:
    # given
    a = person(source, "a-1")
    other = person(services.source_create(workspace=other_workspace, name="Web"), "x-1")
    # when / then
    with pytest.raises(ProfileNotFound):
        services.profiles_merge(
            workspace=source.workspace, profile_ids=(a.pk, other.pk), rule="admin", actor=None,
            evidence={},
        )  # fmt: skip
    with pytest.raises(ProfileNotFound):
        services.profiles_merge(
            workspace=source.workspace, profile_ids=(a.pk, uuid.uuid4()), rule="admin",
            actor=None, evidence={},
        )  # fmt: skip
    assert Profile.objects.get(pk=other.pk).status == ProfileStatus.ACTIVE


@pytest.mark.parametrize(
    ("rule", "evidence", "code"),
    [
        ("  ", {}, "rule_required"),
        ("x" * 201, {}, "rule_too_long"),
        ("admin", ["not", "an", "object"], "invalid_evidence"),
        ("admin", {"when": object()}, "invalid_evidence"),
        ("admin", {"p": float("nan")}, "invalid_evidence"),
    ],
)
def test_merge_rejects_bad_input(source: Any, rule: str, evidence: Any, code: str) -> None:
    a, b = person(source, "a-1"), person(source, "b-1")
    with pytest.raises(InvalidInput) as invalid:
        services.profiles_merge(
            workspace=source.workspace, profile_ids=(a.pk, b.pk), rule=rule, actor=None,
            evidence=evidence,
        )  # fmt: skip
    assert invalid.value.code == code
    assert not Merge.objects.exists()
