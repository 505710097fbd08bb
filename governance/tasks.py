import logging

from celery import shared_task

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
