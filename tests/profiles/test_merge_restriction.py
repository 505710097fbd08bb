"""A restriction of processing (GDPR Art. 18) follows the person through a merge: the survivor
of a restricted profile is restricted, and the restriction hooks take it out of audiences and
destinations. Before, a merge silently lifted it."""

from __future__ import annotations

from typing import Any

import pytest
from auditlog import get_logentry_model

from cdp.core import hooks
from profiles import services
from profiles.models import Profile
from tests.profiles.ingest_helpers import msg

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Web")


@pytest.fixture
def restricted_hook_calls() -> Any:
    calls: list[tuple[int, list[Any]]] = []
    hooks.register_restriction_hook("test-spy", lambda ws, ids: calls.append((ws, list(ids))))
    yield calls
    hooks._restriction_hooks.pop("test-spy")


def person(source: Any, anon: str) -> Profile:
    outcome = services.ingest_messages(source=source, messages=[msg(anonymous_id=anon)])
    return Profile.objects.get(pk=outcome.profile_ids[0])


def test_ingestion_merging_a_restricted_profile_restricts_the_survivor(
    source: Any, restricted_hook_calls: list[Any]
) -> None:
    # given: the person's older profile (laptop) and a newer, restricted one (phone)
    laptop = person(source, "laptop-1")
    phone = services.profile_restrict(profile=person(source, "phone-1"), restricted=True)
    restricted_hook_calls.clear()
    # when: they sign in on both devices, which merges the profiles into the older one
    services.ingest_messages(
        source=source,
        messages=[
            msg("identify", anonymous_id="laptop-1", user_id="u-1"),
            msg("identify", anonymous_id="phone-1", user_id="u-1"),
        ],
    )
    # then: the survivor is restricted, with an audit entry saying why, and the hooks ran
    laptop.refresh_from_db()
    phone.refresh_from_db()
    assert phone.merged_into_id == laptop.pk
    assert laptop.restricted is True
    assert restricted_hook_calls == [(source.workspace.pk, [laptop.pk])]
    log = get_logentry_model()
    entry = log.objects.get_for_object(laptop).get(action=log.Action.UPDATE)
    assert entry.changes_dict["restricted"] == ["False", "True"]
    assert entry.additional_data["via"] == "merge"
    assert entry.additional_data["absorbed"] == [str(phone.pk)]
    assert "restricted profile" in entry.additional_data["reason"]


def test_a_steward_merge_into_a_restricted_survivor_runs_no_hook_again(
    source: Any, restricted_hook_calls: list[Any]
) -> None:
    # given: the older profile restricted, the newer one not
    older = services.profile_restrict(profile=person(source, "a-1"), restricted=True)
    newer = person(source, "b-1")
    restricted_hook_calls.clear()
    # when
    services.profiles_merge(
        workspace=source.workspace, profile_ids=(older.pk, newer.pk), rule="admin", actor=None,
        evidence={},
    )  # fmt: skip
    # then: still restricted; it was out of audiences and destinations already
    older.refresh_from_db()
    assert older.restricted is True
    assert restricted_hook_calls == []


def test_a_merge_of_unrestricted_profiles_restricts_nothing(
    source: Any, restricted_hook_calls: list[Any]
) -> None:
    # given
    a, b = person(source, "a-1"), person(source, "b-1")
    # when
    services.profiles_merge(
        workspace=source.workspace, profile_ids=(a.pk, b.pk), rule="admin", actor=None,
        evidence={},
    )  # fmt: skip
    # then
    a.refresh_from_db()
    assert a.restricted is False
    assert restricted_hook_calls == []


def test_restricting_a_person_audits_the_profiles_merged_into_them(
    source: Any, restricted_hook_calls: list[Any]
) -> None:
    # given: a person whose newer profile was merged into the older one
    older, newer = person(source, "a-1"), person(source, "b-1")
    services.profiles_merge(
        workspace=source.workspace, profile_ids=(older.pk, newer.pk), rule="admin", actor=None,
        evidence={},
    )  # fmt: skip
    log = get_logentry_model()
    # when: restricted, then lifted, the merged profile alike
    services.profile_restrict(profile=older, restricted=True, merged=[newer.pk])
    services.profile_restrict(profile=older, restricted=False, merged=[newer.pk])
    # then: each change of the merged profile is in the audit trail; the hooks ran once each,
    # for the active profile only
    changes = [
        e.changes_dict["restricted"]
        for e in log.objects.get_for_object(newer).filter(action=log.Action.UPDATE).order_by("pk")
        if "restricted" in e.changes_dict
    ]
    assert changes == [["False", "True"], ["True", "False"]]
    assert restricted_hook_calls == [(source.workspace.pk, [older.pk])]
