"""The Celery task (ids in) and the personal-data handlers of candidates and match keys."""

from __future__ import annotations

from typing import Any

from matching import services, tasks
from matching.handlers import CANDIDATES_HANDLER, KEYS_HANDLER
from matching.models import MatchCandidate, MatchKeys, MatchRun
from tests.matching.helpers import add_people, add_person, crm_source


def _pair(workspace: Any) -> Any:
    source = crm_source(workspace)
    people = add_people(source)
    add_person(source, first_name="Maggie", last_name="Holloway", birthday="1970-03-14",
               postcode="94107", city="San Francisco", address="12 Oak Street")  # fmt: skip
    return people


def test_the_task_runs_matching_for_a_workspace_id(workspace: Any) -> None:
    # given
    _pair(workspace)

    # when
    outcome = tasks.match_run.delay(workspace.pk, full=True).get()

    # then
    run = MatchRun.objects.get()
    assert outcome == {"run": run.pk, "kind": "full", "proposed": 1, "merged": 0}


def test_the_handler_exports_and_erases_the_candidates_of_a_profile(workspace: Any) -> None:
    # given
    people = _pair(workspace)
    services.match_run(workspace=workspace)
    candidate = MatchCandidate.objects.get()

    # when
    exported = CANDIDATES_HANDLER.export(people[0])
    report = CANDIDATES_HANDLER.erase(people[0])

    # then
    assert [c["id"] for c in exported["match_candidates"]] == [candidate.pk]
    assert exported["match_candidates"][0]["comparison"] == candidate.comparison
    assert report.counts == {"candidates": 1}
    assert not MatchCandidate.objects.exists()


def test_the_handler_leaves_other_profiles_candidates(workspace: Any) -> None:
    # given
    people = _pair(workspace)
    services.match_run(workspace=workspace)

    # when
    report = CANDIDATES_HANDLER.erase(people[1])

    # then
    assert report.counts == {"candidates": 0}
    assert MatchCandidate.objects.count() == 1


def test_the_keys_handler_exports_counts_and_erases_only_the_persons_keys(workspace: Any) -> None:
    # given: a run stored every profile's match keys
    people = _pair(workspace)
    services.match_run(workspace=workspace)
    stored = MatchKeys.objects.count()
    assert stored == 7

    # when
    exported = KEYS_HANDLER.export(people[0])
    report = KEYS_HANDLER.erase(people[0])
    again = KEYS_HANDLER.erase(people[0])

    # then: counts and times only (the hashes mean nothing to the person), then gone
    (entry,) = exported["match_keys"]
    assert entry["profile"] == str(people[0].pk)
    assert entry["keyed_hashes"] > 0 and entry["computed_at"]
    assert (report.status, report.counts) == ("erased", {"profiles": 1})
    assert again.status == "nothing_found"
    assert not MatchKeys.objects.filter(profile_id=people[0].pk).exists()
    assert MatchKeys.objects.count() == stored - 1
