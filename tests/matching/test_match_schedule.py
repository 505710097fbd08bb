"""The scheduled matching run: every workspace that has set up matching gets an incremental run
(the first one full, and a full one again once the last is MATCHING_FULL_RUN_DAYS old), others
none."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from matching import services, tasks
from matching.enums import RunKind, RunStatus
from matching.models import MatchRun
from tests.matching.helpers import add_people, crm_source


def test_workspaces_with_match_settings_get_a_run_and_others_none(
    workspace: Any, other_workspace: Any
) -> None:
    # given: matching set up in one workspace only
    add_people(crm_source(workspace))
    add_people(crm_source(other_workspace))
    services.match_settings_ensure(workspace=workspace)
    # when: the schedule fires twice (tasks run eagerly here)
    first = tasks.match_runs_due()
    second = tasks.match_runs_due()
    # then
    assert (first, second) == ({"queued": 1, "full": 1}, {"queued": 1, "full": 0})
    runs = list(MatchRun.objects.order_by("started_at").values_list("workspace", "kind", "status"))
    assert runs == [
        (workspace.pk, RunKind.FULL, RunStatus.FINISHED),
        (workspace.pk, RunKind.INCREMENTAL, RunStatus.FINISHED),
    ]


def test_the_schedule_lists_the_task() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["matching-runs-due"]
    assert entry["task"] == tasks.match_runs_due.name


@pytest.mark.parametrize(
    ("days", "kind"), [(7, RunKind.FULL), (0, RunKind.INCREMENTAL), (-1, RunKind.INCREMENTAL)]
)
def test_a_full_run_comes_again_once_the_last_is_a_week_old(
    workspace: Any, settings: Any, days: int, kind: str
) -> None:
    # given: matching ran (full) a week ago, a few minutes after the beat fired then
    settings.MATCHING_FULL_RUN_DAYS = days
    add_people(crm_source(workspace))
    services.match_run(workspace=workspace)
    MatchRun.objects.update(started_at=timezone.now() - timedelta(days=7) + timedelta(minutes=5))
    # when
    planned = services.match_runs_planned()
    outcome = tasks.match_runs_due()
    # then
    assert planned == [(workspace.pk, kind == RunKind.FULL)]
    assert outcome == {"queued": 1, "full": int(kind == RunKind.FULL)}
    assert MatchRun.objects.order_by("-started_at").values_list("kind", flat=True)[0] == kind


def test_a_recent_full_run_is_followed_by_incremental_ones(workspace: Any) -> None:
    # given
    add_people(crm_source(workspace))
    services.match_run(workspace=workspace, full=True)
    MatchRun.objects.update(started_at=timezone.now() - timedelta(days=6))
    # then
    assert services.match_runs_planned() == [(workspace.pk, False)]


def test_a_full_run_that_failed_is_not_retried_every_day(workspace: Any) -> None:
    # given: the last full run, two days ago, failed (too big for the worker, say)
    add_people(crm_source(workspace))
    services.match_run(workspace=workspace, full=True)
    MatchRun.objects.create(
        workspace=workspace, kind=RunKind.FULL, status=RunStatus.FAILED,
        started_at=timezone.now() - timedelta(days=2), watermark=timezone.now(), threshold=0.5,
    )  # fmt: skip
    MatchRun.objects.filter(status=RunStatus.FINISHED).update(
        started_at=timezone.now() - timedelta(days=9)
    )
    # then: incremental until a period has passed since the attempt
    assert services.match_runs_planned() == [(workspace.pk, False)]
