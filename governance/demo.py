"""The demo store's data-subject requests (called by `manage.py seed_demo` once the syncs ran),
each taken through the governance services as its subject and a steward would: an access
request fulfilled with its export, an erasure fulfilled with its signed certificate, a CCPA
opt-out and a rectification carried out, a restriction of processing carried out (stewards
may try lifting it: the profile's admin page, "Lift the restriction of processing"), an access
request awaiting its emailed code, a portability request received by letter four weeks ago
(in progress, its deadline days away) and an erasure scheduled for the end of the store's
cancellation window.

The requests name customers of their own (CUSTOMERS; `collect.demo` loads them through the web
store beforehand), so erasing one leaves the rest of the demo as it was. Their phones are on
the 628-555-01xx range, which the synthetic shoppers (415) and the matching demo do not use.
Idempotent: does nothing when the workspace has requests already."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from governance import selectors, services
from governance.enums import RequestState
from governance.models import DataSubjectRequest
from profiles import services as profile_services
from profiles.contracts import InboundMessage

# The subjects, by the part they play; the fields of an identify call's traits.
CUSTOMERS: dict[str, dict[str, str]] = {
    "access": {"user_id": "cust-9000103", "email": "amara.osei@example.com",
               "phone": "+16285550103", "first_name": "Amara", "last_name": "Osei",
               "country": "GB"},
    "erasure": {"user_id": "cust-9000104", "email": "felix.brandt@example.com",
                "phone": "+16285550104", "first_name": "Felix", "last_name": "Brandt",
                "country": "DE"},
    "opt_out": {"user_id": "cust-9000105", "email": "diego.ramos@example.com",
                "phone": "+16285550105", "first_name": "Diego", "last_name": "Ramos",
                "country": "US"},
    # signed up with a typo in her surname
    "rectification": {"user_id": "cust-9000106", "email": "ines.moreau@example.com",
                      "phone": "+16285550106", "first_name": "Ines", "last_name": "Moreu",
                      "country": "FR"},
    "portability": {"user_id": "cust-9000107", "email": "pia.jensen@example.com",
                    "phone": "+16285550107", "first_name": "Pia", "last_name": "Jensen",
                    "country": "DK"},
    "erasure_scheduled": {"user_id": "cust-9000108", "email": "tomas.varga@example.com",
                          "phone": "+16285550108", "first_name": "Tomas", "last_name": "Varga",
                          "country": "HU"},
    # contests the accuracy of her data: processing restricted while it is verified
    "restriction": {"user_id": "cust-9000109", "email": "lena.kowalski@example.com",
                    "phone": "+16285550109", "first_name": "Lena", "last_name": "Kowalski",
                    "country": "PL"},
}  # fmt: skip
# Someone who is not a customer asks what the store holds about them, and has not yet typed
# in the code emailed to them (the console email backend of the demo prints that email).
UNVERIFIED_EMAIL = "hana.sato@example.com"
CANCELLATION_HOURS = 48
CORRECTED_LAST_NAME = "Moreau"
# A letter entered by a steward: GDPR gives a month from receipt, so 0 to 3 days are left.
LETTER_RECEIVED_DAYS_AGO = 28
CALLED_BACK = "Called the customer back on the phone number of their account; identity confirmed."


def _name(role: str) -> str:
    customer = CUSTOMERS[role]
    return f"{customer['first_name']} {customer['last_name']}"


def _in_progress(
    role: str, *, workspace: Any, steward: Any, request_type: str, regime: str = "gdpr", **kw: Any
) -> DataSubjectRequest:
    """A request made by phone to customer service: the steward verifies the caller by calling
    the account's number back (no SMS codes here), then approves it."""
    request = services.request_submit(
        workspace=workspace,
        request_type=request_type,
        regime=regime,
        contact_type="phone",
        contact=CUSTOMERS[role]["phone"],
        **kw,
    ).request
    services.request_verify_manually(request=request, actor=steward, note=CALLED_BACK)
    return services.request_approve(request=request, actor=steward)


def _fulfil(request: DataSubjectRequest, *, steward: Any, note: str = "") -> DataSubjectRequest:
    """Fulfil as a steward's click does. With GOVERNANCE_FULFIL_IN_WORKER (a broker) an export
    or erasure is only queued here: the dsr worker carries it out."""
    services.request_fulfil(request=request, actor=steward, note=note)
    request.refresh_from_db()
    return request


def _outcome(request: DataSubjectRequest) -> str:
    if request.state in (RequestState.FULFILLED, RequestState.PARTIALLY_FULFILLED):
        return request.get_state_display().lower()
    state = request.get_state_display().lower()
    pending = selectors.request_pending_fulfilment(request)
    if pending is None:
        return state
    kind, at = pending
    if kind == "scheduled":
        return f"{state}, the erasure scheduled for {at:%Y-%m-%d %H:%M} UTC"
    return f"{state}, queued for the dsr worker (GOVERNANCE_FULFIL_IN_WORKER)"


def _access(workspace: Any, steward: Any) -> str:
    request = _fulfil(
        _in_progress("access", workspace=workspace, steward=steward, request_type="access"),
        steward=steward,
    )
    archive = request.exports.order_by("-created_at").first()
    built = f", export built ({archive.size_bytes} bytes, sealed)" if archive else ""
    return f"Request: access (GDPR) by {_name('access')}: {_outcome(request)}{built}"


def _erasure(workspace: Any, steward: Any) -> str:
    request = _fulfil(
        _in_progress("erasure", workspace=workspace, steward=steward, request_type="erasure"),
        steward=steward,
    )
    certificate = getattr(request, "certificate", None)
    if certificate is None:
        return f"Request: erasure (GDPR) by {_name('erasure')}: {_outcome(request)}"
    body = certificate.body
    return (
        f"Request: erasure (GDPR) by {_name('erasure')}: {_outcome(request)}, erasure "
        f"certificate {certificate.pk} signed ({len(body['stores'])} stores, "
        f"{len(body['data_keys_destroyed'])} data keys destroyed, "
        f"{len(body['destinations'])} destination deletion request(s))"
    )


def _opt_out(workspace: Any, steward: Any) -> str:
    # A CCPA opt-out needs no verification: it is verified on submission.
    request = services.request_submit(
        workspace=workspace,
        request_type="opt_out",
        regime="ccpa",
        contact_type="email",
        contact=CUSTOMERS["opt_out"]["email"],
    ).request
    services.request_approve(request=request, actor=steward)
    request = _fulfil(request, steward=steward)
    done = request.events.filter(action="fulfilled").values_list("note", flat=True).first()
    return (
        f"Request: opt-out of sale/share (CCPA) by {_name('opt_out')}: {_outcome(request)} ({done})"
    )


def _rectification(workspace: Any, steward: Any, web: Any) -> str:
    request = _in_progress(
        "rectification",
        workspace=workspace,
        steward=steward,
        request_type="rectification",
        details={"text": "My surname is misspelt on my account."},
    )
    # The steward corrects the account in the shop, which sends the corrected identify.
    now = timezone.now()
    profile_services.ingest_messages(
        source=web,
        messages=[
            InboundMessage(
                type="identify",
                message_id=f"demo-rectification-{request.pk}",
                received_at=now,
                timestamp=now,
                user_id=CUSTOMERS["rectification"]["user_id"],
                traits={"last_name": CORRECTED_LAST_NAME},
            )
        ],
    )
    request = _fulfil(request, steward=steward, note="Surname corrected in the shop's account.")
    customer = CUSTOMERS["rectification"]
    return (
        f"Request: rectification (GDPR) by {customer['first_name']} {CORRECTED_LAST_NAME}: "
        f"{_outcome(request)}, surname {customer['last_name']!r} corrected"
    )


def _restriction(workspace: Any, steward: Any) -> str:
    request = _fulfil(
        _in_progress(
            "restriction",
            workspace=workspace,
            steward=steward,
            request_type="restriction",
            details={"text": "My date of birth on my account is wrong."},
        ),
        steward=steward,
        note="Restricted while the date of birth is verified (Art. 18(1)(a)).",
    )
    return (
        f"Request: restriction (GDPR) by {_name('restriction')}: {_outcome(request)}, profile "
        f"{request.profile_id} restricted (admin: the profile's page, \"Lift the restriction of "
        'processing")'
    )


def _awaiting_verification(workspace: Any) -> str:
    request = services.request_submit(
        workspace=workspace,
        request_type="access",
        regime="gdpr",
        contact_type="email",
        contact=UNVERIFIED_EMAIL,
    ).request
    return (
        f"Request: access (GDPR) by email: {_outcome(request)} (its code was emailed; the "
        "console email backend printed the message)"
    )


def _near_deadline(workspace: Any, steward: Any) -> str:
    request = _in_progress(
        "portability",
        workspace=workspace,
        steward=steward,
        request_type="portability",
        received_at=timezone.now() - timedelta(days=LETTER_RECEIVED_DAYS_AGO),
    )
    services.request_assign(request=request, assignee=steward, actor=steward)
    days = selectors.request_days_left(request=request)
    return (
        f"Request: portability (GDPR) by letter from {_name('portability')}, received "
        f"{LETTER_RECEIVED_DAYS_AGO} days ago: {_outcome(request)}, assigned to "
        f"{steward.get_username()}, {days} day(s) left"
    )


def _scheduled_erasure(workspace: Any, steward: Any) -> str:
    request = _fulfil(
        _in_progress(
            "erasure_scheduled", workspace=workspace, steward=steward, request_type="erasure"
        ),
        steward=steward,
    )
    if request.cancel_until is None:
        return f"Request: erasure (GDPR) by {_name('erasure_scheduled')}: {_outcome(request)}"
    return (
        f"Request: erasure (GDPR) by {_name('erasure_scheduled')}: {_outcome(request)}, when "
        "its cancellation window closes (until then the customer may cancel it)"
    )


def demo_seed(*, workspace: Any, steward: Any, web: Any) -> list[str]:
    """Make the demo's requests (steward: who handles them; web: the source the shop's
    account page sends identify calls from); lines to print."""
    if selectors.request_list(workspace=workspace).exists():
        return []
    lines = [
        _access(workspace, steward),
        # Before the store's window exists: the first erasure is carried out at once.
        _erasure(workspace, steward),
        _opt_out(workspace, steward),
        _rectification(workspace, steward, web),
        _restriction(workspace, steward),
        _awaiting_verification(workspace),
        _near_deadline(workspace, steward),
    ]
    if services.erasure_cancellation_hours(workspace=workspace) == 0:
        services.erasure_cancellation_hours_set(workspace=workspace, hours=CANCELLATION_HOURS)
        lines.append(
            f"Governance settings: erasures verified from now on can be cancelled for "
            f"{CANCELLATION_HOURS} hours (admin: Governance > Governance settings)"
        )
    lines.append(_scheduled_erasure(workspace, steward))
    return lines
