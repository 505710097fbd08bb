"""match_run: candidates stored with their comparison vectors, reviewed pairs never proposed
again, incremental runs, auto-merge (off by default), the audit of decryption, and no
personal value in candidates, runs or logs."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.forms.models import model_to_dict

from cdp.core.exceptions import InvalidInput
from matching import engine, services
from matching.enums import CandidateStatus, RunKind, RunStatus
from matching.exceptions import MatchRunInProgress
from matching.models import MatchCandidate, MatchRun, MatchSettings
from profiles import services as profile_services
from profiles.enums import ProfileStatus
from profiles.models import Merge, Profile
from tests.matching.helpers import add_people, add_person, crm_source

LogEntry = get_logentry_model()


@pytest.fixture
def source(workspace: Any) -> Any:
    return crm_source(workspace)


@pytest.fixture
def people(source: Any) -> list[Profile]:
    return add_people(source)


def add_margaret_again(source: Any) -> Profile:
    """Margaret Holloway again: a nickname, a typo in the surname, the same address written
    differently."""
    return add_person(
        source,
        first_name="Maggie",
        last_name="Hollowey",
        birthday="1970-03-14",
        postcode="94107",
        city="san francisco",
        address="12 Oak St",
    )


def add_robert_again(source: Any) -> Profile:
    return add_person(
        source,
        first_name="Bob",
        last_name="Fairbanks",
        birthday="1982-02-11",  # day and month swapped
        postcode="10001",
        city="New York",
        address="400 Pine Ave",
    )


def test_a_full_run_stores_the_duplicate_with_its_comparison_vector(
    workspace: Any, source: Any, people: list[Profile]
) -> None:
    # given
    again = add_margaret_again(source)

    # when
    result = services.match_run(workspace=workspace)

    # then
    run = result.run
    assert (run.status, run.kind) == (RunStatus.FINISHED, RunKind.FULL)
    assert (run.profiles_considered, run.profiles_changed, run.profiles_decrypted) == (7, 7, 7)
    candidate = MatchCandidate.objects.get(workspace=workspace)
    assert (candidate.profile_a_id, candidate.profile_b_id) == tuple(
        sorted((people[0].pk, again.pk))
    )
    assert candidate.status == CandidateStatus.PROPOSED
    assert candidate.probability >= 0.99
    vector = candidate.comparison
    assert {name: entry["label"] for name, entry in vector.items()} == {
        "first_name": "nickname",
        "last_name": "jaro-winkler >= 0.92",
        "birthday": "exact",
        "email": "missing",
        "phone": "missing",
        "address": "jaro-winkler >= 0.9",
        "city": "exact",
        "postcode": "exact",
    }
    assert vector["email"]["weight"] == 0
    assert vector["birthday"]["weight"] > 5
    assert vector["postcode"]["group"] == "location"
    assert vector["postcode"]["weight"] == vector["city"]["weight"] == vector["address"]["weight"]
    assert [p.candidate_id for p in result.proposals] == [candidate.pk]
    assert run.stats["pairs_per_rule"]
    assert run.parameters["prior"] > 0


def test_distinct_people_give_no_candidate(workspace: Any, people: list[Profile]) -> None:
    # when
    result = services.match_run(workspace=workspace)

    # then
    assert result.proposals == []
    assert not MatchCandidate.objects.exists()


def test_a_rejected_pair_is_never_proposed_again(
    workspace: Any, owner: Any, source: Any, people: list[Profile]
) -> None:
    # given
    add_margaret_again(source)
    services.match_run(workspace=workspace)
    candidate = MatchCandidate.objects.get()
    services.candidate_reject(candidate=candidate, actor=owner)

    # when
    result = services.match_run(workspace=workspace, full=True)

    # then
    assert result.proposals == []
    candidate.refresh_from_db()
    assert candidate.status == CandidateStatus.REJECTED
    assert candidate.reviewer == owner
    assert MatchCandidate.objects.count() == 1


def test_a_rejected_pair_stays_rejected_after_one_side_is_merged_into_another(
    workspace: Any, owner: Any, source: Any
) -> None:
    # given: an older Margaret (no birthday), then Margaret and Maggie
    oldest = add_person(
        source, first_name="Margaret", last_name="Holloway", postcode="94107",
        city="San Francisco", address="12 Oak Street",
    )  # fmt: skip
    margaret = add_people(source)[0]
    maggie = add_margaret_again(source)
    services.match_run(workspace=workspace)
    pair = tuple(sorted((margaret.pk, maggie.pk)))
    services.candidate_reject(
        candidate=MatchCandidate.objects.get(profile_a_id=pair[0], profile_b_id=pair[1]),
        actor=owner,
    )
    profile_services.profiles_merge(
        workspace=workspace, profile_ids=(oldest.pk, margaret.pk), rule="test", actor=owner,
        evidence={},
    )  # fmt: skip

    # when
    result = services.match_run(workspace=workspace, full=True)

    # then: the oldest now holds Margaret, whom a steward said is not Maggie
    assert Profile.objects.get(pk=margaret.pk).merged_into_id == oldest.pk
    assert result.proposals == []
    assert not MatchCandidate.objects.filter(status=CandidateStatus.PROPOSED).exists()


def test_an_incremental_run_compares_only_new_or_changed_profiles(
    workspace: Any, source: Any, people: list[Profile]
) -> None:
    # given
    add_margaret_again(source)
    first = services.match_run(workspace=workspace).run
    margaret_pair = MatchCandidate.objects.get()
    bob = add_robert_again(source)

    # when
    result = services.match_run(workspace=workspace)

    # then
    run = result.run
    assert run.kind == RunKind.INCREMENTAL
    assert run.since == first.watermark
    assert (run.profiles_considered, run.profiles_changed) == (8, 1)
    assert [(p.profile_a, p.profile_b) for p in result.proposals] == [
        tuple(sorted((people[1].pk, bob.pk)))
    ]
    robert = MatchCandidate.objects.exclude(pk=margaret_pair.pk).get()
    assert robert.comparison["first_name"]["label"] == "nickname"
    assert robert.comparison["birthday"]["label"] == "day and month swapped"
    margaret_pair.refresh_from_db()
    assert margaret_pair.run_id == first.pk  # untouched: neither profile changed


def test_an_incremental_run_without_changes_compares_nothing(
    workspace: Any, source: Any, people: list[Profile]
) -> None:
    # given
    add_margaret_again(source)
    services.match_run(workspace=workspace)

    # when
    run = services.match_run(workspace=workspace).run

    # then
    assert (run.kind, run.profiles_changed, run.candidate_pairs, run.profiles_decrypted) == (
        RunKind.INCREMENTAL, 0, 0, 0,
    )  # fmt: skip
    assert MatchCandidate.objects.filter(status=CandidateStatus.PROPOSED).count() == 1


def test_auto_merge_is_off_by_default(workspace: Any, source: Any, people: list[Profile]) -> None:
    # given
    add_margaret_again(source)

    # when
    services.match_run(workspace=workspace)

    # then
    assert MatchSettings.objects.get(workspace=workspace).auto_merge_threshold is None
    assert not Merge.objects.exists()
    assert MatchCandidate.objects.get().status == CandidateStatus.PROPOSED
    assert Profile.objects.filter(status=ProfileStatus.ACTIVE).count() == 7


def test_auto_merge_merges_pairs_above_its_threshold_through_the_merge_service(
    workspace: Any, source: Any, people: list[Profile]
) -> None:
    # given
    again = add_margaret_again(source)
    settings = services.match_settings_ensure(workspace=workspace)
    services.match_settings_update(settings=settings, auto_merge_threshold=0.95)

    # when
    result = services.match_run(workspace=workspace)

    # then
    candidate = MatchCandidate.objects.get()
    assert candidate.status == CandidateStatus.MERGED
    assert candidate.merge_id is not None
    merge = Merge.objects.get(pk=candidate.merge_id)
    assert (merge.survivor_id, merge.absorbed_id) == (people[0].pk, again.pk)
    assert merge.rule == services.AUTO_RULE
    assert merge.evidence["match_candidate"] == candidate.pk
    assert Profile.objects.get(pk=again.pk).status == ProfileStatus.MERGED
    assert result.run.auto_merged == 1
    assert [p.status for p in result.proposals] == [CandidateStatus.MERGED]


def test_a_run_audits_how_many_profiles_it_decrypted_not_each_value(
    workspace: Any, source: Any, people: list[Profile]
) -> None:
    # given
    add_margaret_again(source)
    before = LogEntry.objects.filter(action=LogEntry.Action.ACCESS).count()

    # when
    run = services.match_run(workspace=workspace).run

    # then
    entries = LogEntry.objects.filter(action=LogEntry.Action.ACCESS)
    assert entries.count() == before + 1
    entry = entries.latest("pk")
    assert (entry.content_type.model, entry.object_pk) == ("matchrun", str(run.pk))
    assert entry.additional_data["profiles_decrypted"] == 7
    assert entry.additional_data["reason"] == "probabilistic matching run"
    assert "trait:first_name" in entry.additional_data["fields"]


SENTINELS = ("Quillonova", "Zephyrine", "sentinel.quill@example.com", "4155550147", "Xanthorpe")


def test_no_personal_value_reaches_candidates_runs_audit_or_logs(
    workspace: Any, source: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given: two records of one person carrying sentinel values
    for first in ("Zephyrine", "Zephyrina"):
        add_person(
            source, first_name=first, last_name="Quillonova", birthday="1980-01-02",
            email="sentinel.quill@example.com" if first == "Zephyrine" else None,
            phone="(415) 555-0147", city="Xanthorpe", postcode="99999", address="1 Sentinel Way",
        )  # fmt: skip
    add_people(source)
    caplog.set_level(logging.DEBUG)

    # when
    result = services.match_run(workspace=workspace)

    # then
    assert len(result.proposals) == 1
    stored = json.dumps(
        [model_to_dict(c) for c in MatchCandidate.objects.all()]
        + [model_to_dict(r) for r in MatchRun.objects.all()]
        + [
            {"changes": e.changes, "data": e.additional_data, "repr": e.object_repr}
            for e in LogEntry.objects.all()
        ],
        default=str,
    )
    for sentinel in SENTINELS:
        assert sentinel not in stored, sentinel
        assert sentinel.lower() not in stored.lower(), sentinel
        assert sentinel not in caplog.text, sentinel


def test_a_second_run_is_refused_while_one_is_running(
    workspace: Any, people: list[Profile]
) -> None:
    # given
    services.match_run(workspace=workspace)
    running = MatchRun.objects.get()
    MatchRun.objects.filter(pk=running.pk).update(status=RunStatus.RUNNING)

    # when / then
    with pytest.raises(MatchRunInProgress):
        services.match_run(workspace=workspace)
    assert MatchRun.objects.count() == 1


def test_a_bad_threshold_is_refused_before_anything_runs(
    workspace: Any, people: list[Profile]
) -> None:
    # when / then
    with pytest.raises(InvalidInput) as caught:
        services.match_run(workspace=workspace, threshold=1.5)
    assert caught.value.code == "invalid_threshold"
    assert not MatchRun.objects.exists()


def test_a_failing_run_is_marked_failed_with_the_error_class_only(
    workspace: Any, people: list[Profile], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Margaret Holloway")

    monkeypatch.setattr(engine, "run", broken)

    # when
    with pytest.raises(RuntimeError):
        services.match_run(workspace=workspace)

    # then
    run = MatchRun.objects.get()
    assert (run.status, run.error) == (RunStatus.FAILED, "RuntimeError")
    assert run.finished_at is not None
