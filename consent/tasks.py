"""Celery entry points of consent: no personal data in arguments or results."""

from __future__ import annotations

from celery import shared_task

from consent import services


@shared_task(name="consent.tasks.consent_grants_expire", acks_late=True)
def consent_grants_expire() -> dict[str, object]:
    """Scheduled daily (CELERY_BEAT_SCHEDULE): record as expired, in every workspace, the
    consent grants older than their purpose's validity. Safe to retry: an expired grant is no
    longer a grant, so a second run records nothing."""
    results = services.consent_grants_expire_all()  # it logs each workspace that failed
    return {
        "workspaces": len(results),
        "expired": sum(r.expired for r in results),
        "failed": [r.workspace for r in results if r.error],
    }
