import logging

from celery import shared_task

from matching import services
from matching.exceptions import MatchRunInProgress
from profiles import selectors as profile_selectors

logger = logging.getLogger(__name__)


@shared_task(name="matching.tasks.match_run", acks_late=True)
def match_run(workspace_id: int, full: bool = False) -> dict[str, object]:
    """Run probabilistic matching for a workspace (ids in; the run decrypts in this worker's
    memory only). A run already in progress is reported, not retried."""
    workspace = profile_selectors.workspace_get_by_id(workspace_id=workspace_id)
    try:
        result = services.match_run(workspace=workspace, full=full)
    except MatchRunInProgress:
        logger.info("matching of workspace %s is running already", workspace_id)
        return {"run": None, "skipped": "in_progress"}
    run = result.run
    return {"run": run.pk, "kind": run.kind, "proposed": run.proposed, "merged": run.auto_merged}


@shared_task(name="matching.tasks.match_runs_due")
def match_runs_due() -> dict[str, int]:
    """Scheduled (CELERY_BEAT_SCHEDULE): queue a run for every workspace that has set up
    matching (has match settings), so new and changed profiles reach the review queue without
    a steward starting a run: incremental, or full once the last full run is older than
    MATCHING_FULL_RUN_DAYS (the parameters are estimated again on the grown population and
    every profile's match keys made again). A workspace whose run is still going skips it."""
    due = services.match_runs_planned()
    for workspace_id, full in due:
        match_run.delay(workspace_id, full=full)
    return {"queued": len(due), "full": sum(1 for _, full in due if full)}
