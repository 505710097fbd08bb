"""Erasure: crypto-shredding plus deletion, through every registered personal-data handler, and
a signed certificate of what was done.

The order matters. Every identifier of the person (the identities of the profile and of every
profile merged into it, decrypted in memory) goes to the suppression list first, while the keys
can still open them; then each handler erases its store, in the registry's order, the profile
handler last, destroying the data keys. A handler that fails is reported as failed in the
certificate (the request ends partially fulfilled); the others still run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from cdp.core import audit, registry
from cdp.core.exceptions import Conflict
from cdp.core.ids import uuid7
from cdp.core.registry import ErasureReport, ErasureStatus
from consent import services as consent_services
from governance import selectors
from governance.enums import FINAL_STATES, RequestType
from governance.models import DataSubjectRequest, ErasureCertificate
from profiles import selectors as profile_selectors
from profiles import services as profile_services

CERTIFICATE_VERSION = "cdp-erasure-certificate/1"
DESTINATIONS_NOTE = (
    "No destination received this person's data according to the delivery ledger; each "
    "destination that had would get a deletion request, listed here with its status."
)


class ErasureOnLegalHold(Conflict):
    code = "legal_hold"
    default_message = "The request is on legal hold: nothing may be erased."


class ErasureCancellable(Conflict):
    code = "cancellation_window"
    default_message = "The cancellation window of this request is still open."


class ErasureNotApplicable(Conflict):
    code = "not_applicable"
    default_message = "Only an erasure request can erase."


class ErasureCertified(Conflict):
    code = "certificate_exists"
    default_message = "This request was carried out already; its certificate exists."


def _run(
    handler: registry.PersonalDataHandler, erase: Callable[[], ErasureReport]
) -> ErasureReport:
    try:
        with transaction.atomic():
            return erase()
    except Exception as exc:
        # Any failure is reported and the other handlers still run. Only the exception's
        # class is kept: a message might quote a value.
        return ErasureReport(
            store=handler.name,
            status=ErasureStatus.FAILED,
            detail=f"the handler raised {type(exc).__name__}",
        )


def _entry(handler: registry.PersonalDataHandler, report: ErasureReport) -> dict[str, Any]:
    return {
        "store": report.store,
        "handler": handler.name,
        "status": str(report.status),
        "counts": dict(report.counts),
        "detail": report.detail,
        "at": timezone.now().isoformat(),
    }


@contextmanager
def erasure_settled(*, request: DataSubjectRequest) -> Iterator[None]:
    """Wrap the transaction that runs `erasure_run` (called outside any transaction): first each
    store settles its writes in flight (`PersonalDataHandler.settle`: the intake buffer is
    drained, waiting for batches other workers hold, while the erasure holds no lock they
    could wait for); within, the handlers know when that began. Does nothing for a request
    `erasure_run` refuses anyway, or inside a transaction."""
    if connection.in_atomic_block:
        yield
        return
    current = (
        DataSubjectRequest.objects.filter(pk=request.pk)
        .values("type", "state", "legal_hold", "cancel_until")
        .first()
    )
    refused = (
        current is None
        or current["type"] != RequestType.ERASURE
        or current["state"] in FINAL_STATES
        or current["legal_hold"]
        or (current["cancel_until"] is not None and current["cancel_until"] > timezone.now())
    )
    if refused:
        yield
        return
    began = timezone.now()
    # Settling stores other people's pending messages (the intake buffer): their audit
    # entries are nobody's doing, not the steward's whose request this may run in.
    with audit.unattributed():
        for handler in registry.handlers():
            if handler.settle is not None:
                handler.settle(request.workspace_id, began)
    with registry.erasure_settled_at(began):
        yield


@transaction.atomic
def erasure_run(*, request: DataSubjectRequest) -> ErasureCertificate:
    """Erase the request's subject from every registered store, suppress every identifier of
    the person, and issue the signed certificate (see the module docstring)."""
    if request.type != RequestType.ERASURE:
        raise ErasureNotApplicable()
    if request.legal_hold:
        raise ErasureOnLegalHold()
    if request.cancel_until is not None and request.cancel_until > timezone.now():
        raise ErasureCancellable()
    if ErasureCertificate.objects.filter(request=request).exists():
        raise ErasureCertified()

    profile = selectors.request_subject_profile(request)
    if profile is None:
        # Matched at verification; the person may have become known since (or the buffer's
        # settling just stored their pending messages).
        profile = selectors.survivor_of(
            profile_selectors.profile_find_by_identifier(
                workspace=request.workspace,
                identifier_type=request.contact_type,
                value=request.contact,
            )
        )
    contact = (request.contact_type, request.contact)
    key_ids: list[Any] = []
    suppressed = {request.contact_type: 1}
    unreadable = 0
    if profile is not None:
        person = profile_services.profile_suppress(
            profile=profile, reason="erasure", also=[contact]
        )
        key_ids, suppressed, unreadable = person.data_key_ids, person.suppressed, person.unreadable
    else:
        profile_services.suppression_add(
            workspace=request.workspace, identifiers=[contact], reason="erasure"
        )

    stores: list[dict[str, Any]] = []
    destinations: list[dict[str, Any]] = []
    for handler in registry.handlers():
        if profile is not None:
            report = _run(handler, partial(handler.erase, profile))
        elif handler.erase_unmatched is not None:
            report = _run(handler, partial(handler.erase_unmatched, request.workspace))
        else:
            report = ErasureReport(
                store=handler.name,
                status=ErasureStatus.NOTHING_FOUND,
                detail="no profile matched the contact given in the request",
            )
        stores.append(_entry(handler, report))
        destinations += [
            {
                "destination": owed.recipient,
                "kind": owed.kind,
                "status": owed.status,
                "requests": owed.requests,
                "reference": owed.reference,
                "detail": owed.detail,
                "handler": handler.name,
            }
            for owed in report.deletion_requests
        ]
    # Keys of a merged profile that no handler destroyed (none should be left) go too; key rows
    # are never deleted, so afterwards every one of them is destroyed.
    profile_services.data_keys_destroy(key_ids=key_ids)

    issued_at = timezone.now()
    certificate = ErasureCertificate(id=uuid7(), request=request, issued_at=issued_at)
    body: dict[str, Any] = {
        "version": CERTIFICATE_VERSION,
        "certificate": str(certificate.id),
        "request": str(request.pk),
        "workspace": request.workspace.slug,
        "regime": request.regime,
        "type": request.type,
        "subject": str(profile.pk) if profile is not None else None,
        "issued_at": issued_at.isoformat(),
        "stores": stores,
        "destinations": destinations,
        "data_keys_destroyed": [str(pk) for pk in key_ids],
        "suppressed_identifiers": suppressed,
    }
    if not destinations:
        body["destinations_note"] = DESTINATIONS_NOTE
    if unreadable:
        body["identities_unreadable"] = unreadable
    certificate.body = body
    certificate.signature, certificate.kid = consent_services.workspace_sign(
        workspace=request.workspace, body=body
    )
    certificate.save(force_insert=True)
    return certificate
