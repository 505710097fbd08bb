"""Personal-data handlers for consent: records, current state and receipts of a profile."""

from __future__ import annotations

from typing import Any

from cdp.core.registry import ErasureReport, ErasureStatus, PersonalDataHandler
from consent.models import ConsentRecord, ConsentState, Receipt
from consent.services import consent_cache_invalidate


def _people(profile: Any) -> list[Any]:
    from profiles import selectors

    return [profile.pk, *selectors.profile_absorbed_ids(profile=profile)]


def export_consent(profile: Any) -> dict[str, Any]:
    people = _people(profile)
    records = (
        ConsentRecord.objects.filter(profile_id__in=people)
        .select_related("purpose", "notice_version__notice")
        .order_by("server_time", "id")
    )
    return {
        "consent_records": [
            {
                "id": str(r.id),
                "purpose": r.purpose.key,
                "decision": r.decision,
                "method": r.method,
                "jurisdiction": r.jurisdiction,
                "notice": (
                    f"{r.notice_version.notice.key} v{r.notice_version.version}"
                    if r.notice_version
                    else None
                ),
                "server_time": r.server_time.isoformat(),
                "client_time": r.client_time.isoformat() if r.client_time else None,
                "signals": r.signals,
                "record_hash": r.record_hash,
            }
            for r in records
        ],
        "consent_state": {
            s.purpose.key: s.decision
            for s in ConsentState.objects.filter(profile_id__in=people).select_related("purpose")
        },
        "consent_receipts": [
            {"id": str(r.id), "body": r.body, "signature": r.signature, "kid": r.kid}
            for r in Receipt.objects.filter(profile_id__in=people).order_by("created_at")
        ],
    }


def erase_consent(profile: Any) -> ErasureReport:
    people = _people(profile)
    states, _ = ConsentState.objects.filter(profile_id__in=people).delete()
    consent_cache_invalidate(profile_ids=people)
    receipts, _ = Receipt.objects.filter(profile_id__in=people).delete()
    records, _ = ConsentRecord.objects.filter(profile_id__in=people).delete()
    total = states + receipts + records
    return ErasureReport(
        store="consent.ledger",
        status=ErasureStatus.ERASED if total else ErasureStatus.NOTHING_FOUND,
        counts={"records": records, "states": states, "receipts": receipts},
    )


CONSENT_HANDLER = PersonalDataHandler(
    name="consent.ledger",
    models=("consent.ConsentRecord", "consent.ConsentState", "consent.Receipt"),
    export=export_consent,
    erase=erase_consent,
)
