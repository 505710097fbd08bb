"""The personal-data handler for governance's own records: a person's data-subject requests,
their history, exports and erasure certificates (see cdp.core.registry)."""

from __future__ import annotations

from typing import Any

from cdp.core.registry import ErasureReport, ErasureStatus, PersonalDataHandler
from governance.models import DataSubjectRequest, ExportArchive
from profiles import selectors as profile_selectors
from profiles import services as profile_services

RETENTION_DETAIL = (
    "request records are kept as the record of the request (24 months, CCPA §7101); "
    "the contact is sealed under the request's own key"
)


def _requests(profile: Any) -> Any:
    people = [profile.pk, *profile_selectors.profile_absorbed_ids(profile=profile)]
    return DataSubjectRequest.objects.filter(profile_id__in=people)


def _at(value: Any) -> str | None:
    return value.isoformat() if value else None


def export_requests(profile: Any) -> dict[str, Any]:
    """The person's requests: type, state and dates (not the contact, not the tokens)."""
    return {
        "requests": [
            {
                "id": str(r.pk),
                "type": r.type,
                "regime": r.regime,
                "state": r.state,
                "received_at": _at(r.received_at),
                "verified_at": _at(r.verified_at),
                "due_at": _at(r.effective_due_at),
                "closed_at": _at(r.closed_at),
            }
            for r in _requests(profile).order_by("received_at", "pk")
        ]
    }


def erase_requests(profile: Any) -> ErasureReport:
    """Requests are kept (the record of the request); the exports of earlier access requests
    hold a copy of the person's data under keys of their own, so those keys are destroyed and
    the archives deleted."""
    request_ids = list(_requests(profile).values_list("pk", flat=True))
    exports = list(
        ExportArchive.objects.filter(request_id__in=request_ids).values_list("pk", "data_key_id")
    )
    if exports:
        ExportArchive.objects.filter(pk__in=[pk for pk, _ in exports]).delete()
        profile_services.data_keys_destroy(key_ids=[key for _, key in exports])
    return ErasureReport(
        store="governance.requests",
        status=ErasureStatus.RETAINED if request_ids else ErasureStatus.NOTHING_FOUND,
        counts={"requests_kept": len(request_ids), "exports_destroyed": len(exports)},
        detail=RETENTION_DETAIL if request_ids else "",
    )


REQUESTS_HANDLER = PersonalDataHandler(
    name="governance.requests",
    models=(
        "governance.DataSubjectRequest",
        "governance.RequestEvent",
        "governance.ExportArchive",
        "governance.ErasureCertificate",
        # Who a request is assigned to: kept, and deleted, with the request.
        "governance.RequestUserObjectPermission",
        "governance.RequestGroupObjectPermission",
    ),
    export=export_requests,
    erase=erase_requests,
)
