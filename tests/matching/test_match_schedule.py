"""The scheduled matching run: every workspace that has set up matching gets an incremental run
(the first one full), others none."""

from __future__ import annotations

from typing import Any

from django.conf import settings

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
    assert first == second == {"queued": 1}
    runs = list(MatchRun.objects.order_by("started_at").values_list("workspace", "kind", "status"))
    assert runs == [
        (workspace.pk, RunKind.FULL, RunStatus.FINISHED),
        (workspace.pk, RunKind.INCREMENTAL, RunStatus.FINISHED),
    ]


def test_the_schedule_lists_the_task() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["matching-runs-due"]
    assert entry["task"] == tasks.match_runs_due.name
