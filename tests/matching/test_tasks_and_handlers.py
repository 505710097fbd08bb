"""The Celery task (ids in) and the personal-data handler of candidates."""

from __future__ import annotations

from typing import Any

from matching import services, tasks
from matching.handlers import CANDIDATES_HANDLER
from matching.models import MatchCandidate, MatchRun
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
