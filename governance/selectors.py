"""Reads of data-subject requests, always scoped: by the request's status token (the subject)
or by the workspace (stewards and their API tokens)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from cdp.core.exceptions import NotFound
from cdp.core.registry import ErasureStatus
from consent import selectors as consent_selectors
from governance.enums import FINAL_STATES, RequestState, RequestType
from governance.models import DataSubjectRequest, ErasureCertificate, ExportArchive
from profiles import selectors as profile_selectors

# The request event that records a restriction lifted (governance.services.restriction_lift).
RESTRICTION_LIFTED = "restriction_lifted"


class RequestNotFound(NotFound):
    code = "request_not_found"
    default_message = "No such request."


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def request_get_for_subject(*, request_id: Any, token: str | None) -> DataSubjectRequest | None:
    """The request whose status token is `token`; None for an unknown id or a wrong token
    (the two are indistinguishable to the caller)."""
    pk = _uuid(request_id)
    if pk is None or not token:
        return None
    request = DataSubjectRequest.objects.select_related("workspace").filter(pk=pk).first()
    given = hashlib.sha256(token.encode()).hexdigest()
    if request is None or not hmac.compare_digest(request.status_token_hash, given):
        return None
    return request


def request_get(*, workspace: Any, request_id: Any) -> DataSubjectRequest:
    """A request of the workspace; one of another workspace answers like an unknown one."""
    pk = _uuid(request_id)
    request = (
        DataSubjectRequest.objects.select_related("workspace")
        .filter(workspace=workspace, pk=pk)
        .first()
        if pk
        else None
    )
    if request is None:
        raise RequestNotFound()
    return request


def request_list(*, workspace: Any, state: str | None = None) -> QuerySet[DataSubjectRequest]:
    """The workspace's requests, soonest deadline first."""
    qs = DataSubjectRequest.objects.filter(workspace=workspace)
    if state:
        qs = qs.filter(state=state)
    return qs.order_by("due_at", "id")


def restriction_requests_for_profile(*, workspace: Any, profile: Any) -> list[DataSubjectRequest]:
    """The fulfilled restriction requests that restricted `profile`, or a profile merged into
    it since, and whose restriction has not been lifted yet, oldest first: the subjects to
    inform before the restriction is lifted (GDPR Art. 18(3))."""
    people = [profile.pk, *profile_selectors.profile_absorbed_ids(profile=profile)]
    return list(
        DataSubjectRequest.objects.select_related("workspace")
        .filter(
            workspace=workspace,
            type=RequestType.RESTRICTION,
            state=RequestState.FULFILLED,
            profile_id__in=people,
        )
        # A lift closes a request for good: a later restriction (another request) being
        # lifted is not that subject's to be told of again.
        .exclude(events__action=RESTRICTION_LIFTED)
        .order_by("received_at", "id")
    )


def restriction_requests_open(*, workspace: Any, profile: Any) -> list[DataSubjectRequest]:
    """The restriction requests of `profile`, or of a profile merged into it, not yet closed
    (neither fulfilled, denied, cancelled nor expired), oldest first: a lift would undo what
    they ask for before a steward has decided them."""
    people = [profile.pk, *profile_selectors.profile_absorbed_ids(profile=profile)]
    return list(
        DataSubjectRequest.objects.filter(
            workspace=workspace, type=RequestType.RESTRICTION, profile_id__in=people
        )
        .exclude(state__in=FINAL_STATES)
        .order_by("received_at", "id")
    )


def request_export_ready(*, request: DataSubjectRequest) -> ExportArchive | None:
    """The newest export of the request whose download has not expired."""
    return (
        ExportArchive.objects.filter(request=request, expires_at__gt=timezone.now())
        .order_by("-created_at")
        .first()
    )


def request_days_left(*, request: DataSubjectRequest, now: datetime | None = None) -> int:
    """Whole days until the (possibly extended) deadline; negative once overdue."""
    delta = request.effective_due_at - (now or timezone.now())
    return delta.days


def request_subject_profile(request: DataSubjectRequest) -> Any:
    """The request's profile (matched at verification), followed to the profile it was merged
    into since; None when it had none."""
    return survivor_of(request.profile)


def survivor_of(profile: Any) -> Any:
    """The profile a merged one lives on in (itself when not merged); None for None."""
    if profile is None:
        return None
    return profile_selectors.profile_get(workspace=profile.workspace, profile_id=profile.pk)


def request_pending_fulfilment(
    request: DataSubjectRequest, *, now: datetime | None = None
) -> tuple[str, datetime] | None:
    """How a worker will carry the open request out without another "fulfil": ("scheduled",
    the end of its cancellation window) or ("queued", since when); None when it will not."""
    if request.fulfil_after is None or request.state in FINAL_STATES:
        return None
    if request.fulfil_after == request.cancel_until and request.fulfil_after > (
        now or timezone.now()
    ):
        return "scheduled", request.fulfil_after
    return "queued", request.fulfil_after


# --- erasure certificates --------------------------------------------------------------------


class CertificateNotFound(NotFound):
    code = "certificate_not_found"
    default_message = "This request has no erasure certificate."


def certificate_of(request: DataSubjectRequest) -> ErasureCertificate | None:
    """The erasure certificate of a request, if it has one (scoped by the request's lookup)."""
    return ErasureCertificate.objects.filter(request=request).first()


def certificate_get(*, request: DataSubjectRequest) -> ErasureCertificate:
    found = certificate_of(request)
    if found is None:
        raise CertificateNotFound()
    return found


def certificate_entries(certificate: ErasureCertificate, part: str) -> list[dict[str, Any]]:
    """The entries of a list in the certificate's body (`stores`, `destinations`), objects
    only: a body changed after signing (shown as such) must not break the pages reading it."""
    found = certificate.body.get(part) if isinstance(certificate.body, dict) else None
    return [entry for entry in found if isinstance(entry, dict)] if isinstance(found, list) else []


def certificate_failed_stores(certificate: ErasureCertificate) -> list[str]:
    """The stores that failed to erase (the request then ended partially fulfilled)."""
    return [
        str(entry.get("store", ""))
        for entry in certificate_entries(certificate, "stores")
        if entry.get("status") == ErasureStatus.FAILED
    ]


def certificate_document(certificate: ErasureCertificate) -> dict[str, Any]:
    """The certificate as it is handed out and verified: its body, the Ed25519 signature over
    the body's canonical JSON, and the id of the workspace key that made it (published at
    /.well-known/cdp-receipt-keys.json?workspace=<slug>, the key that signs consent receipts)."""
    return {
        "id": str(certificate.pk),
        "alg": consent_selectors.RECEIPT_ALG,
        "kid": certificate.kid,
        "signature": certificate.signature,
        "body": certificate.body,
    }


def certificate_verify(*, document: dict[str, Any], keys: Any) -> consent_selectors.ReceiptCheck:
    """Verify a certificate document (`certificate_document`) against published keys: the
    signature, the id its body names, and the key's workspace (a key of another workspace
    does not vouch for this one's certificates)."""
    check = consent_selectors.signed_document_verify(
        document=document, keys=keys, id_field="certificate", what="certificate"
    )
    if not check.valid:
        return check
    body = document["body"]
    key = next(k for k in keys if isinstance(k, dict) and k.get("kid") == check.kid)
    if "workspace" not in key:
        return consent_selectors.ReceiptCheck(
            False, check.kid, f"key {check.kid!r} names no workspace (use the published keys)"
        )
    if key["workspace"] != body.get("workspace"):
        return consent_selectors.ReceiptCheck(
            False, check.kid, f"key {check.kid!r} belongs to another workspace"
        )
    return check


def certificate_keys(*, workspace_ids: Any) -> dict[str, list[dict[str, Any]]]:
    """The published keys of several workspaces, read once: workspace slug -> keys (the
    admin's list checks a page of certificates with them)."""
    found: dict[str, list[dict[str, Any]]] = {}
    if workspace_ids:
        for key in consent_selectors.receipt_public_keys(workspace_ids=list(workspace_ids)):
            found.setdefault(key["workspace"], []).append(key)
    return found


def certificate_check(
    certificate: ErasureCertificate, *, keys: Any = None
) -> consent_selectors.ReceiptCheck:
    """`certificate_verify` of a stored certificate, against its workspace's keys as published
    (`keys`, else read here): the admin's and the API's check that its row was not changed
    since it was signed."""
    if keys is None:
        keys = consent_selectors.receipt_public_keys(workspace=certificate.request.workspace)
    return certificate_verify(document=certificate_document(certificate), keys=keys)
