import logging

from auditlog.context import set_actor
from celery import shared_task

from cdp.core.exceptions import ApplicationError
from governance import services

logger = logging.getLogger(__name__)


@shared_task(name="governance.tasks.audit_chain_verify")
def audit_chain_verify() -> dict[str, object]:
    """Scheduled daily (CELERY_BEAT_SCHEDULE): verify the audit chain and log the outcome."""
    result = services.audit_chain_verify()
    if result.ok:
        logger.info("audit chain verified: %d entries", result.checked)
    else:
        assert result.first_break is not None
        logger.error(
            "audit chain broken at entry %s: %s",
            result.first_break.entry_id,
            result.first_break.reason,
        )
    return {
        "checked": result.checked,
        "ok": result.ok,
        "broken_entry": result.first_break.entry_id if result.first_break else None,
    }


@shared_task(name="governance.tasks.dsr_fulfil", acks_late=True)
def dsr_fulfil(request_id: str, actor_id: int | None = None) -> dict[str, object]:
    """Carry out an approved access, portability or erasure request (governance.fulfilment)
    on behalf of `actor_id`, or of the steward who queued or scheduled it. A refusal (legal
    hold, cancellation window, state) is recorded and reported, not retried; an unexpected
    failure moves the request to the error state for a steward, and is raised. Either way the
    request is no longer queued: a steward fulfils it again once the cause is dealt with."""
    from governance import erasure, fulfilment
    from governance.models import DataSubjectRequest

    request = DataSubjectRequest.objects.select_related("workspace").get(pk=request_id)
    actor = services.request_fulfil_actor(request=request, actor_id=actor_id)
    try:
        # Settling stores the intake buffer's pending messages, other people's and other
        # workspaces' too: their audit entries are not the steward's doing.
        with erasure.erasure_settled(request=request), set_actor(actor):
            done = fulfilment.fulfil(request=request, actor=actor)
    except ApplicationError as exc:
        logger.info("request %s not fulfilled: %s", request_id, exc.code)
        services.request_fulfil_refused(request=request, code=exc.code, message=exc.message)
        return {"request": request_id, "ok": False, "code": exc.code}
    except Exception as exc:
        services.request_fulfil_failed(request=request, error=type(exc).__name__)
        raise
    return {"request": request_id, "ok": True, "state": done.state}


@shared_task(name="governance.tasks.dsr_export", acks_late=True)
def dsr_export(request_id: str) -> dict[str, object]:
    """(Re)build the export of an access or portability request (governance.export); the
    subject receives a new download link."""
    from governance import export
    from governance.models import DataSubjectRequest

    request = DataSubjectRequest.objects.select_related("workspace").get(pk=request_id)
    archive = export.export_build(request=request)
    return {"request": request_id, "export": str(archive.pk), "size": archive.size_bytes}


@shared_task(name="governance.tasks.dsr_fulfilments_due", acks_late=True)
def dsr_fulfilments_due() -> dict[str, object]:
    """Scheduled hourly (CELERY_BEAT_SCHEDULE): carry out the erasures a steward asked to
    fulfil while their cancellation window was open, once it has closed, and any export or
    erasure queued for a worker that is still open (a lost task). A request already carried
    out is refused by `dsr_fulfil` under its row lock. Ids only go out."""
    due = services.requests_fulfilment_claim()
    for request_id in due:
        dsr_fulfil.delay(request_id)
    return {"enqueued": len(due)}


@shared_task(name="governance.tasks.dsr_erasures_due", acks_late=True)
def dsr_erasures_due() -> dict[str, object]:
    """The hourly sweep's name before it was renamed `dsr_fulfilments_due` (when it began to
    pick up lost exports too): a message queued under the old name by a beat or worker of an
    earlier release still runs the sweep instead of being rejected as unregistered."""
    return dsr_fulfilments_due()


@shared_task(name="governance.tasks.retention_apply", acks_late=True)
def retention_apply() -> dict[str, object]:
    """Scheduled daily (CELERY_BEAT_SCHEDULE): run every workspace's retention policies and
    purge expired exports; each policy's run is audited with its counts (governance.retention).
    Safe to retry: a run only removes what is past its cutoff."""
    from governance import retention

    results = retention.retention_apply_all()
    failed = [f"{r.workspace}:{run.name}" for r in results for run in r.failed]
    for name in failed:
        logger.error("retention policy failed: %s", name)
    return {
        "workspaces": len(results),
        "policies": sum(len(r.runs) for r in results),
        "exports": sum(r.exports for r in results),
        "failed": failed,
    }
