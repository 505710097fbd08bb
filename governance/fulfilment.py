"""Carrying out an approved access, portability or erasure request: the export or the erasure,
then the request's final state, each step recorded as a RequestEvent. Opt-out, restriction and
objection are carried out by governance.services itself; rectification is not done here."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from cdp.core.exceptions import ApplicationError
from governance import erasure, export
from governance.enums import RequestState, RequestType
from governance.models import DataSubjectRequest

EXPORT_TYPES = frozenset({RequestType.ACCESS, RequestType.PORTABILITY})


class FulfilmentNotApplicable(ApplicationError):
    code = "not_applicable"
    status = 409
    default_message = "This type of request is not carried out by the fulfilment service."


@transaction.atomic
def fulfil(*, request: DataSubjectRequest, actor: Any = None, note: str = "") -> DataSubjectRequest:
    """Carry out an approved (in progress or awaiting review) access, portability or erasure
    request and close it: fulfilled once the export is built; for an erasure fulfilled, or
    partially fulfilled when a store failed. Refusals (legal hold, cancellation window) change
    nothing."""
    from governance import services  # governance.services calls this module

    if request.type not in EXPORT_TYPES and request.type != RequestType.ERASURE:
        raise FulfilmentNotApplicable()
    # Under the row lock, so a concurrent fulfilment sees this one's state.
    DataSubjectRequest.objects.select_for_update().filter(pk=request.pk).values("pk").first()
    request.refresh_from_db()
    if request.state not in services.FULFILMENT_STATES:
        raise services.IllegalTransition(
            f"A request in state {request.state!r} cannot be fulfilled.",
            extra={"state": request.state, "to_state": RequestState.FULFILLED},
        )
    if request.type in EXPORT_TYPES:
        archive = export.export_build(request=request)
        outcome = (
            f"Export {archive.pk} built ({archive.size_bytes} bytes, sealed); the download "
            f"link expires at {archive.expires_at:%Y-%m-%d %H:%M} UTC."
        )
        to_state = RequestState.FULFILLED
    else:
        certificate = erasure.erasure_run(request=request)
        stores = certificate.body["stores"]
        failed = [s["store"] for s in stores if s["status"] == "failed"]
        outcome = (
            f"Erasure certificate {certificate.pk} issued: {len(stores)} stores, "
            f"{len(certificate.body['data_keys_destroyed'])} data keys destroyed"
            + (f"; failed: {', '.join(failed)}." if failed else ".")
        )
        to_state = RequestState.PARTIALLY_FULFILLED if failed else RequestState.FULFILLED
    return services.request_transition(
        request=request,
        to_state=to_state,
        actor=actor,
        note=f"{note}\n{outcome}".strip(),
        action="fulfilled",
    )


def fulfil_enqueue(*, request: DataSubjectRequest, actor: Any = None) -> None:
    """Carry the request out in a worker once the current transaction commits, on behalf of
    `actor` (its id goes to the task, never anything else of it)."""
    from governance import tasks

    request_id = str(request.pk)
    actor_id = getattr(actor, "pk", None)
    transaction.on_commit(lambda: tasks.dsr_fulfil.delay(request_id, actor_id))
