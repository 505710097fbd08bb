"""Governance writes and checks: the audit chain and data-subject requests."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from auditlog import get_logentry_model
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from cdp.core.audit import record_access, record_decision
from cdp.core.crypto import keyed_hash
from cdp.core.exceptions import ApplicationError, Conflict, InvalidInput, PermissionDenied
from consent import selectors as consent_selectors
from consent import services as consent_services
from consent.enums import Decision as ConsentDecision
from consent.enums import Method as ConsentMethod
from governance import chain, erasure, selectors
from governance.deadlines import deadlines_for, end_of_day
from governance.enums import FINAL_STATES, Regime, RequestState, RequestType
from governance.models import (
    MAX_CANCELLATION_HOURS,
    DataSubjectRequest,
    GovernanceSettings,
    RequestEvent,
)
from governance.states import can_transition
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.enums import DataKeyPurpose, ProfileStatus, WorkspaceRole
from profiles.exceptions import ProfileNotFound


def audit_chain_verify() -> chain.ChainVerification:
    """Recompute the audit chain from the first entry; report the first broken one."""
    return chain.verify(get_logentry_model())


# --- Data-subject requests -------------------------------------------------------------------
#
# A request's life: `request_submit` seals the subject's contact under a data key of the
# request's own and sends a one-time code; `request_verify` checks it (constant-time, limited
# attempts, expiring); stewards then approve, deny, extend, hold, pause, note and fulfil. Every
# step goes through `request_transition` or `_event`, so each leaves a RequestEvent (and, since
# both models are audited, an audit entry).

CONTACT_TYPES = ("email", "phone")
VERIFICATION_CODE_TTL = timedelta(minutes=30)
MAX_VERIFICATION_ATTEMPTS = 5
CCPA_EXTENSION = timedelta(days=45)
FULFILMENT_STATES = frozenset({RequestState.IN_PROGRESS, RequestState.AWAITING_REVIEW})
# Types a governance service carries out itself; the others go to governance.fulfilment.
DIRECT_TYPES = frozenset({RequestType.OPT_OUT, RequestType.RESTRICTION, RequestType.OBJECTION})
FULFILMENT_MODULE_TYPES = frozenset(
    {RequestType.ACCESS, RequestType.PORTABILITY, RequestType.ERASURE}
)
DOWNLOADABLE_STATES = frozenset({RequestState.FULFILLED, RequestState.PARTIALLY_FULFILLED})


class IllegalTransition(Conflict):
    code = "illegal_transition"
    default_message = "This request cannot move to that state from its current one."


class RequestNotAwaitingVerification(Conflict):
    code = "not_awaiting_verification"
    default_message = "This request is not awaiting verification."


class VerificationCodeInvalid(ApplicationError):
    code = "invalid_code"
    status = 400
    default_message = "The verification code is not correct."


class VerificationCodeExpired(ApplicationError):
    code = "code_expired"
    status = 400
    default_message = "The verification code has expired; please submit the request again."


class VerificationLocked(ApplicationError):
    code = "too_many_attempts"
    status = 429
    default_message = "Too many wrong codes; this request can no longer be verified online."


class ExtensionRefused(Conflict):
    code = "extension_refused"
    default_message = "This request cannot be extended."


class RequestOnLegalHold(Conflict):
    code = "legal_hold"
    default_message = "This request is under a legal hold."


class CancellationClosed(Conflict):
    code = "cannot_cancel"
    default_message = (
        "This request can no longer be cancelled: the work on it has started or it is closed."
    )


class SubmittedRequest(NamedTuple):
    request: DataSubjectRequest
    status_token: str  # shown once to the subject; only its SHA-256 is kept


def hash_status_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _code_hash(request: DataSubjectRequest, code: str) -> str:
    # Keyed (HMAC under a key derived from CDP_INDEX_KEY) and scoped to the request: a leaked
    # row does not let anyone try the million codes offline.
    return keyed_hash("request-code", request.pk, "code", code).hex()


def _new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def _required(text: str, what: str) -> str:
    text = (text or "").strip()
    if not text:
        raise InvalidInput(f"A {what} is required.", code=f"{what}_required")
    return text


def _event(
    request: DataSubjectRequest,
    *,
    action: str,
    actor: Any = None,
    note: str = "",
    from_state: str = "",
    to_state: str = "",
) -> RequestEvent:
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    return RequestEvent.objects.create(
        request=request,
        action=action,
        from_state=from_state,
        to_state=to_state,
        actor=user,
        note=note[:2000],
        at=timezone.now(),
    )


def _lock(request: DataSubjectRequest) -> DataSubjectRequest:
    """Re-read the request under a row lock, so concurrent actions see each other's state."""
    DataSubjectRequest.objects.select_for_update().filter(pk=request.pk).values("pk").first()
    request.refresh_from_db()
    return request


def _send_code(*, contact: str, code: str, request_id: Any) -> None:
    # The code travels only in the message; it is never logged (the console backend of the demo
    # prints the message itself, which is the delivery, not a log).
    minutes = int(VERIFICATION_CODE_TTL.total_seconds() // 60)
    send_mail(
        subject="Your verification code",
        message=(
            f"Someone, hopefully you, asked us about your personal data (request {request_id})."
            f"\n\nYour verification code is {code}. It expires in {minutes} minutes.\n\n"
            f"If this was not you, ignore this message."
        ),
        from_email=None,
        recipient_list=[contact],
    )


def _check_details(*, workspace: Any, request_type: str, details: Any) -> dict[str, Any] | None:
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise InvalidInput("Details must be an object.", code="invalid_details")
    if request_type == RequestType.OBJECTION:
        purposes = details.get("purposes")
        if (
            not isinstance(purposes, list)
            or not purposes
            or not all(isinstance(p, str) for p in purposes)
        ):
            raise InvalidInput(
                "An objection names the purposes objected to: details.purposes.",
                code="purposes_required",
            )
        # Compared with the workspace's keys, not looked up one by one: the keys come from the
        # public form as given (one query, and no text the database would refuse, e.g. NUL).
        known = set(
            consent_selectors.purpose_list(workspace=workspace).values_list("key", flat=True)
        )
        unknown = sorted(set(purposes) - known)
        if unknown:
            raise InvalidInput(f"Unknown purpose(s): {', '.join(unknown)}.", code="unknown_purpose")
    return details or None


@transaction.atomic
def request_submit(
    *,
    workspace: Any,
    request_type: str,
    regime: str,
    contact_type: str,
    contact: str,
    details: dict[str, Any] | None = None,
    received_at: datetime | None = None,
) -> SubmittedRequest:
    """Open a request: seal the contact under a new request data key, set the deadlines, and
    send a verification code (CCPA opt-outs need none and are verified at once).
    `received_at`: when a request that came by letter or phone reached the controller, if a
    steward enters it later; its deadlines run from then (default: now)."""
    if request_type not in RequestType.values:
        raise InvalidInput("Unknown request type.", code="unknown_type")
    if regime not in Regime.values:
        raise InvalidInput("Unknown regime.", code="unknown_regime")
    if contact_type not in CONTACT_TYPES:
        raise InvalidInput("The contact must be an email address or a phone number.")
    normalized = profile_selectors.identifier_normalize(identifier_type=contact_type, value=contact)
    if not normalized:
        raise InvalidInput(f"This is not a usable {contact_type}.", code="invalid_contact")
    details = _check_details(workspace=workspace, request_type=request_type, details=details)
    now = timezone.now()
    received = received_at or now
    if received > now:
        raise InvalidInput("A request cannot be received in the future.", code="received_later")
    deadlines = deadlines_for(regime=regime, request_type=request_type, received=received.date())
    status_token = secrets.token_urlsafe(32)
    request = DataSubjectRequest(
        workspace=workspace,
        type=request_type,
        regime=regime,
        state=RequestState.RECEIVED,
        contact_type=contact_type,
        contact_index=keyed_hash("request-contact", workspace.pk, contact_type, normalized),
        data_key_id=profile_services.data_key_create_unowned(
            workspace_id=workspace.pk, purpose=DataKeyPurpose.REQUEST
        ),
        received_at=received,
        acknowledge_by=end_of_day(deadlines.acknowledge_by) if deadlines.acknowledge_by else None,
        due_at=end_of_day(deadlines.respond_by),
        status_token_hash=hash_status_token(status_token),
    )
    request.contact = normalized
    request.details = details
    request.save()
    _event(request, action="submitted", to_state=RequestState.RECEIVED)
    if regime == Regime.CCPA and request_type == RequestType.OPT_OUT:
        # CCPA regs §7026(d): an opt-out request need not be verifiable.
        _verified(request, note="A CCPA opt-out needs no verification.")
        return SubmittedRequest(request, status_token)
    if contact_type != "email":
        request_transition(request=request, to_state=RequestState.AWAITING_VERIFICATION, actor=None)
        _event(
            request,
            action="code_not_sent",
            note="SMS is not configured: a steward verifies the subject manually.",
        )
        return SubmittedRequest(request, status_token)
    code = _new_code()
    request.verification_code_hash = _code_hash(request, code)
    request.verification_expires_at = now + VERIFICATION_CODE_TTL
    request.save(update_fields=["verification_code_hash", "verification_expires_at"])
    request_transition(request=request, to_state=RequestState.AWAITING_VERIFICATION, actor=None)
    transaction.on_commit(partial(_send_code, contact=normalized, code=code, request_id=request.pk))
    _event(request, action="code_sent", note="Verification code sent by email.")
    return SubmittedRequest(request, status_token)


def _verified(request: DataSubjectRequest, *, actor: Any = None, note: str = "") -> None:
    request.verified_at = timezone.now()
    request.verification_code_hash = ""
    request.verification_expires_at = None
    request.profile = profile_selectors.profile_find_by_identifier(
        workspace=request.workspace, identifier_type=request.contact_type, value=request.contact
    )
    request.save(
        update_fields=[
            "verified_at",
            "verification_code_hash",
            "verification_expires_at",
            "profile",
            "updated_at",
        ]
    )
    request_transition(request=request, to_state=RequestState.VERIFIED, actor=actor, note=note)
    _open_cancellation_window(request)


# --- The erasure cancellation window ---------------------------------------------------------
#
# An erasure cannot be undone. When the workspace (or the CDP_ERASURE_CANCELLATION_HOURS
# setting) gives a window, it opens at verification: until it closes the subject may cancel
# the request (it is revoked), and nothing is erased; a steward's "fulfil" during the window
# schedules the erasure for the moment it closes (governance.tasks.dsr_fulfilments_due).

CANCELLABLE_STATES = frozenset(
    {RequestState.RECEIVED, RequestState.AWAITING_VERIFICATION, RequestState.VERIFIED}
)


@transaction.atomic
def erasure_cancellation_hours_set(*, workspace: Any, hours: int | None) -> GovernanceSettings:
    """Set the workspace's own cancellation window (None: the installation's default). It
    applies to erasures verified from now on; those verified already keep theirs."""
    from governance import retention

    if hours is not None and not 0 <= hours <= MAX_CANCELLATION_HOURS:
        raise InvalidInput(
            f"The window is between 0 and {MAX_CANCELLATION_HOURS} hours.",
            code="window_out_of_range",
        )
    row = retention.governance_settings_get(workspace=workspace)
    row = GovernanceSettings.objects.select_for_update().get(pk=row.pk)
    if row.erasure_cancellation_hours != hours:
        row.erasure_cancellation_hours = hours
        row.save(update_fields=["erasure_cancellation_hours"])
    return row


def erasure_cancellation_hours(*, workspace: Any) -> int:
    """The workspace's window in hours, or the installation's default (0: no window)."""
    own = (
        GovernanceSettings.objects.filter(workspace=workspace)
        .values_list("erasure_cancellation_hours", flat=True)
        .first()
    )
    if own is not None:
        return int(own)
    return int(getattr(settings, "CDP_ERASURE_CANCELLATION_HOURS", 0) or 0)


def _open_cancellation_window(request: DataSubjectRequest) -> None:
    if request.type != RequestType.ERASURE:
        return
    hours = erasure_cancellation_hours(workspace=request.workspace)
    if hours <= 0:
        return
    request.cancel_until = (request.verified_at or timezone.now()) + timedelta(hours=hours)
    request.save(update_fields=["cancel_until", "updated_at"])
    _event(
        request,
        action="cancellation_window",
        note=f"The subject may cancel until {request.cancel_until:%Y-%m-%d %H:%M} UTC; "
        "nothing is erased before then.",
    )


def request_cancellable(*, request: DataSubjectRequest, now: Any = None) -> bool:
    """Whether the subject may still cancel: before any work started, or, for an erasure,
    while its cancellation window is open and nothing was erased."""
    if request.state in CANCELLABLE_STATES:
        return True
    now = now or timezone.now()
    return (
        request.type == RequestType.ERASURE
        and request.state in FULFILMENT_STATES
        and request.cancel_until is not None
        and request.cancel_until > now
    )


@transaction.atomic
def request_cancel(*, request: DataSubjectRequest, note: str = "") -> DataSubjectRequest:
    """The subject withdraws their request (it ends revoked): any time before work starts, or
    for an erasure until its cancellation window closes. Raises CancellationClosed after."""
    _lock(request)
    if not request_cancellable(request=request):
        raise CancellationClosed()
    request_transition(
        request=request,
        to_state=RequestState.REVOKED,
        actor=None,
        note=note or "Cancelled by the subject.",
        action="cancelled",
    )
    request_unqueue(request=request)
    return request


def _schedule_erasure(request: DataSubjectRequest, *, actor: Any, note: str) -> DataSubjectRequest:
    assert request.cancel_until is not None
    request.fulfil_after = request.cancel_until
    request.save(update_fields=["fulfil_after", "updated_at"])
    _event(
        request,
        action="fulfil_scheduled",
        actor=actor,
        note=(
            f"{note}\nThe cancellation window is open until "
            f"{request.cancel_until:%Y-%m-%d %H:%M} UTC: the erasure is carried out then."
        ).strip(),
    )
    return request


# A queued request's task normally runs within seconds; the sweep re-enqueues it only after
# this long (its task was lost), not while it waits in the broker.
QUEUED_GRACE = timedelta(minutes=15)


def requests_fulfilment_due(*, now: Any = None) -> Any:
    """Requests a steward asked to fulfil that are still open and not on hold: erasures asked
    for during their cancellation window, once it has closed, and exports and erasures queued
    for a worker more than QUEUED_GRACE ago (their task was lost)."""
    now = now or timezone.now()
    scheduled = Q(cancel_until__isnull=False, fulfil_after=F("cancel_until"), fulfil_after__lte=now)
    # A legal hold blocks erasures only.
    unheld = Q(legal_hold=False) | ~Q(type=RequestType.ERASURE)
    return DataSubjectRequest.objects.filter(
        scheduled | Q(fulfil_after__lte=now - QUEUED_GRACE),
        unheld,
        type__in=FULFILMENT_MODULE_TYPES,
        state__in=FULFILMENT_STATES,
        fulfil_after__isnull=False,
        certificate__isnull=True,
    ).order_by("fulfil_after", "pk")


@transaction.atomic
def requests_fulfilment_claim(*, now: Any = None) -> list[str]:
    """The ids of `requests_fulfilment_due`, each now queued afresh (`fulfil_after` = now):
    the next sweep waits QUEUED_GRACE for the task enqueued now before enqueueing another."""
    now = now or timezone.now()
    due = requests_fulfilment_due(now=now).select_for_update(of=("self",))
    ids = list(due.values_list("pk", flat=True))
    DataSubjectRequest.objects.filter(pk__in=ids).update(fulfil_after=now, updated_at=now)
    return [str(pk) for pk in ids]


def request_verify(*, request: DataSubjectRequest, code: str) -> DataSubjectRequest:
    """Check the subject's code (constant-time). A wrong code counts an attempt; after
    MAX_VERIFICATION_ATTEMPTS, or once the code expired, nothing can verify the request online."""
    failure: ApplicationError | None = None
    with transaction.atomic():
        _lock(request)
        if request.state != RequestState.AWAITING_VERIFICATION:
            raise RequestNotAwaitingVerification()
        if request.verification_attempts >= MAX_VERIFICATION_ATTEMPTS:
            raise VerificationLocked()
        if not request.verification_code_hash:
            raise VerificationCodeInvalid(
                "This request is verified by a steward.", code="manual_verification"
            )
        expires = request.verification_expires_at
        if expires is None or expires <= timezone.now():
            raise VerificationCodeExpired()
        given = str(code or "").strip()
        if hmac.compare_digest(request.verification_code_hash, _code_hash(request, given)):
            _verified(request)
            return request
        request.verification_attempts += 1
        request.save(update_fields=["verification_attempts", "updated_at"])
        left = MAX_VERIFICATION_ATTEMPTS - request.verification_attempts
        _event(request, action="verification_failed", note=f"{left} attempt(s) left.")
        failure = VerificationCodeInvalid(extra={"attempts_left": left})
    # Raised after the block commits: the failed attempt must count.
    raise failure


@transaction.atomic
def request_verify_manually(
    *, request: DataSubjectRequest, actor: Any, note: str
) -> DataSubjectRequest:
    """A steward confirms the subject's identity by other means (e.g. a phone call, no SMS)."""
    note = _required(note, "note")
    _lock(request)
    if request.state not in (RequestState.RECEIVED, RequestState.AWAITING_VERIFICATION):
        raise IllegalTransition()
    _verified(request, actor=actor, note=note)
    return request


@transaction.atomic
def request_transition(
    *,
    request: DataSubjectRequest,
    to_state: str,
    actor: Any,
    note: str = "",
    action: str = "",
) -> DataSubjectRequest:
    """Move a request to `to_state` if the state machine allows it, and record the step."""
    _lock(request)
    current = request.state
    if not can_transition(current, to_state):
        raise IllegalTransition(
            f"A request in state {current!r} cannot move to {to_state!r}.",
            extra={"state": current, "to_state": to_state},
        )
    request.state = to_state
    fields = ["state", "updated_at"]
    if to_state in FINAL_STATES:
        request.closed_at = timezone.now()
        fields.append("closed_at")
    request.save(update_fields=fields)
    _event(
        request,
        action=action or to_state,
        actor=actor,
        note=note,
        from_state=current,
        to_state=to_state,
    )
    return request


@transaction.atomic
def request_assign(*, request: DataSubjectRequest, assignee: Any, actor: Any) -> DataSubjectRequest:
    """Give the request to a steward holding handle_requests on its workspace, with the object
    permission governance.handle_request on this request (taken from the previous one)."""
    if not profile_selectors.user_has_role(
        user=assignee, workspace=request.workspace, role=WorkspaceRole.HANDLE_REQUESTS
    ):
        raise PermissionDenied(
            "The assignee does not handle requests in this workspace.", code="not_a_steward"
        )
    _lock(request)
    previous = request.assigned_to
    if previous is not None and previous != assignee:
        remove_perm("governance.handle_request", previous, request)
    request.assigned_to = assignee
    request.save(update_fields=["assigned_to", "updated_at"])
    assign_perm("governance.handle_request", assignee, request)
    _event(request, action="assigned", actor=actor, note=f"Assigned to steward {assignee.pk}.")
    return request


def request_approve(
    *, request: DataSubjectRequest, actor: Any, note: str = ""
) -> DataSubjectRequest:
    """Accept a verified request for work (verified -> in progress)."""
    return request_transition(
        request=request,
        to_state=RequestState.IN_PROGRESS,
        actor=actor,
        note=note,
        action="approved",
    )


@transaction.atomic
def request_deny(*, request: DataSubjectRequest, actor: Any, reason: str) -> DataSubjectRequest:
    """Refuse a request; the reason is kept and told to the subject."""
    reason = _required(reason, "reason")
    request_transition(
        request=request, to_state=RequestState.DENIED, actor=actor, note=reason, action="denied"
    )
    request.denial_reason = reason
    request.save(update_fields=["denial_reason", "updated_at"])
    return request


@transaction.atomic
def request_extend(
    *, request: DataSubjectRequest, actor: Any, reason: str, until: date | None = None
) -> DataSubjectRequest:
    """Push the answer's deadline, where the regime allows it: GDPR / UK GDPR up to two more
    months, decided before the original deadline; CCPA once by 45 days, before the original
    deadline; no other regime (nor a CCPA opt-out) has an extension."""
    reason = _required(reason, "reason")
    _lock(request)
    if request.state in FINAL_STATES:
        raise ExtensionRefused("A closed request cannot be extended.")
    now = timezone.now()
    if now > request.due_at:
        raise ExtensionRefused(
            "An extension must be decided before the original deadline.", code="extension_too_late"
        )
    limits = deadlines_for(
        regime=request.regime, request_type=request.type, received=request.received_at.date()
    )
    if request.regime in (Regime.GDPR, Regime.UK_GDPR) and limits.max_extended_to:
        target = end_of_day(until or limits.max_extended_to)
        if target > end_of_day(limits.max_extended_to) or target <= request.effective_due_at:
            raise ExtensionRefused(
                "The new deadline must be later than the current one and at most three months "
                "after receipt.",
                code="extension_out_of_range",
            )
    elif request.regime == Regime.CCPA and limits.max_extended_to:
        if request.extended_due_at is not None:
            raise ExtensionRefused(
                "A CCPA request may be extended only once.", code="already_extended"
            )
        target = request.due_at + CCPA_EXTENSION
        if until is not None and end_of_day(until) != target:
            raise ExtensionRefused(
                "A CCPA extension is exactly 45 days.", code="extension_out_of_range"
            )
    else:
        raise ExtensionRefused(
            "This regime and request type have no extension.", code="extension_not_allowed"
        )
    request.extended_due_at = target
    request.extension_reason = reason
    request.save(update_fields=["extended_due_at", "extension_reason", "updated_at"])
    _event(request, action="extended", actor=actor, note=reason)
    return request


def _set_flag(
    request: DataSubjectRequest, *, flag: str, value: bool, action: str, actor: Any, note: str
) -> DataSubjectRequest:
    _lock(request)
    if getattr(request, flag) == value:
        raise Conflict(
            f"The request's {flag.replace('_', ' ')} is already {'on' if value else 'off'}."
        )
    setattr(request, flag, value)
    request.save(update_fields=[flag, "updated_at"])
    _event(request, action=action, actor=actor, note=note)
    return request


@transaction.atomic
def request_hold(*, request: DataSubjectRequest, actor: Any, reason: str) -> DataSubjectRequest:
    """Place a legal hold: erasure is blocked while it lasts. An erasure queued or scheduled
    for a worker is no longer: once the hold is lifted a steward decides again."""
    reason = _required(reason, "reason")
    held = _set_flag(
        request, flag="legal_hold", value=True, action="hold", actor=actor, note=reason
    )
    if held.type == RequestType.ERASURE and held.fulfil_after is not None:
        request_unqueue(request=held)
        _event(
            held,
            action="fulfil_unqueued",
            actor=actor,
            note="The pending erasure was called off by the hold; fulfil it again once lifted.",
        )
    return held


@transaction.atomic
def request_unhold(
    *, request: DataSubjectRequest, actor: Any, note: str = ""
) -> DataSubjectRequest:
    """Lift the legal hold."""
    return _set_flag(
        request, flag="legal_hold", value=False, action="unhold", actor=actor, note=note
    )


@transaction.atomic
def request_pause(*, request: DataSubjectRequest, actor: Any, reason: str) -> DataSubjectRequest:
    """Stop the clock (e.g. waiting for the subject to clarify)."""
    reason = _required(reason, "reason")
    if request.state in FINAL_STATES:
        raise IllegalTransition("A closed request cannot be paused.")
    return _set_flag(request, flag="paused", value=True, action="paused", actor=actor, note=reason)


@transaction.atomic
def request_resume(
    *, request: DataSubjectRequest, actor: Any, note: str = ""
) -> DataSubjectRequest:
    """Restart the clock; the deadlines move by the whole days the request was paused."""
    _set_flag(request, flag="paused", value=False, action="resumed", actor=actor, note=note)
    paused_at = (
        request.events.filter(action="paused").order_by("-at").values_list("at", flat=True).first()
    )
    days = (timezone.now() - paused_at).days if paused_at else 0
    if days > 0:
        request.due_at += timedelta(days=days)
        if request.extended_due_at is not None:
            request.extended_due_at += timedelta(days=days)
        request.save(update_fields=["due_at", "extended_due_at", "updated_at"])
    return request


@transaction.atomic
def request_note(*, request: DataSubjectRequest, actor: Any, note: str) -> RequestEvent:
    """A steward's note on the request (their own words, never the subject's data)."""
    return _event(request, action="note", actor=actor, note=_required(note, "note"))


def _consent_subjects(request: DataSubjectRequest) -> list[consent_services.Subject]:
    """Whose consent an opt-out or objection records: the contact the request names and, when
    it matched a profile, every identity linked to that profile (by blind index: their values
    stay sealed), each with its own ledger chain and receipt."""
    contact = consent_services.Subject(
        type=request.contact_type, value=request.contact, profile_id=request.profile_id
    )
    subjects = [contact]
    if request.profile_id is not None:
        seen = {contact.index_in(request.workspace_id)}
        for kind, index in profile_selectors.profile_identity_indexes(
            workspace=request.workspace, profile_id=request.profile_id
        ):
            if index not in seen:
                seen.add(index)
                subjects.append(
                    consent_services.Subject(
                        type=kind, value="", profile_id=request.profile_id, index=index
                    )
                )
    return subjects


def _deny_for_everyone(request: DataSubjectRequest, keys: list[str], evidence: Any) -> int:
    """Record a denial of these purposes for each of the request's consent subjects; returns
    how many identities it was recorded for."""
    subjects = _consent_subjects(request)
    consent_services.consent_record_many(
        workspace=request.workspace,
        changes=[
            consent_services.ConsentChange(
                subject=subject,
                decisions=dict.fromkeys(keys, ConsentDecision.DENIED),
                evidence=evidence,
            )
            for subject in subjects
        ],
    )
    return len(subjects)


def _identities(count: int) -> str:
    return f"{count} identity" if count == 1 else f"{count} identities"


def _fulfil_directly(request: DataSubjectRequest) -> str:
    """Opt-out, restriction and objection: carried out here. Returns a note for the event."""
    evidence = consent_services.Evidence(
        method=ConsentMethod.REQUEST,
        jurisdiction=request.regime,
        signals={"request": str(request.pk)},
    )
    if request.type == RequestType.OPT_OUT:
        keys = [
            p.key
            for p in consent_selectors.purpose_list(workspace=request.workspace)
            if p.sale_or_share
        ]
        if not keys:
            return "Opted out of 0 sale/share purpose(s)."
        count = _deny_for_everyone(request, keys, evidence)
        return f"Opted out of {len(keys)} sale/share purpose(s) for {_identities(count)}."
    if request.type == RequestType.OBJECTION:
        keys = list((request.details or {}).get("purposes", []))
        count = _deny_for_everyone(request, keys, evidence)
        return f"Objection recorded for {len(keys)} purpose(s) for {_identities(count)}."
    if request.profile_id is None:
        return "No profile matched the contact: nothing to restrict."
    # The profile matched at verification may have been merged into another since: the person
    # lives on in the survivor, which is what audiences and destinations hold. The request's
    # own profile is restricted too, as a merge after fulfilment would have left it, so that
    # an unmerge gives the subject back a restricted profile.
    profile = profile_selectors.profile_get(
        workspace=request.workspace, profile_id=request.profile_id
    )
    # The person's rows locked first, in the order a lift locks them (no deadlock between a
    # steward fulfilling and another lifting); a merge committed meanwhile is seen after it.
    _lock_person(request.workspace, profile)
    profile_services.profile_restrict(
        profile=profile,
        restricted=True,
        merged=[request.profile_id] if profile.pk != request.profile_id else [],
    )
    return "Processing of the profile restricted."


def request_fulfil(
    *, request: DataSubjectRequest, actor: Any, note: str = ""
) -> DataSubjectRequest:
    """Carry out an approved request and close it. Opt-out, restriction and objection are done
    here; access, portability and erasure by governance.fulfilment (export or erasure, then
    fulfilled or partially fulfilled); rectification is closed as done by the steward. An
    erasure whose cancellation window is open is scheduled for when it closes instead. An
    erasure's stores settle their writes in flight before its transaction begins.

    With GOVERNANCE_FULFIL_IN_WORKER (on when there is a broker), an export or erasure is
    queued for the dsr worker instead (`fulfil_after` is set; the request closes when the
    worker is done): the caller, a steward's web request, does not wait for the export to be
    built or for the intake buffer to settle before an erasure (up to 30 s)."""
    if request.type in FULFILMENT_MODULE_TYPES and settings.GOVERNANCE_FULFIL_IN_WORKER:
        return _queue_fulfilment(request=request, actor=actor, note=note)
    with erasure.erasure_settled(request=request), transaction.atomic():
        return _request_fulfil(request=request, actor=actor, note=note)


def _fulfillable(request: DataSubjectRequest) -> None:
    """Raise unless the (locked, re-read) request can be fulfilled now or later."""
    if request.state not in FULFILMENT_STATES:
        raise IllegalTransition(
            f"A request in state {request.state!r} cannot be fulfilled.",
            extra={"state": request.state, "to_state": RequestState.FULFILLED},
        )
    if request.type == RequestType.ERASURE and request.legal_hold:
        raise RequestOnLegalHold()


def _window_open(request: DataSubjectRequest) -> bool:
    return (
        request.type == RequestType.ERASURE
        and request.cancel_until is not None
        and request.cancel_until > timezone.now()
    )


@transaction.atomic
def _queue_fulfilment(*, request: DataSubjectRequest, actor: Any, note: str) -> DataSubjectRequest:
    from governance import fulfilment  # it calls back into this module

    _lock(request)
    _fulfillable(request)
    if _pending(request):  # a second click, or an API client's retry
        return request
    if _window_open(request):
        return _schedule_erasure(request, actor=actor, note=note)
    request.fulfil_after = timezone.now()
    request.save(update_fields=["fulfil_after", "updated_at"])
    work = (
        "carries out the erasure and issues its certificate"
        if request.type == RequestType.ERASURE
        else "builds the export and sends the subject its download link"
    )
    _event(
        request,
        action="fulfil_queued",
        actor=actor,
        note=f"{note}\nQueued: a worker {work}.".strip(),
    )
    fulfilment.fulfil_enqueue(request=request, actor=actor)
    return request


def _pending(request: DataSubjectRequest) -> bool:
    """Whether a worker will carry the request out without another "fulfil": an erasure
    scheduled for the end of a window still open, or a request queued within QUEUED_GRACE
    (past it, its task was probably lost: a "fulfil" queues it again)."""
    if request.fulfil_after is None:
        return False
    if request.cancel_until is not None and request.fulfil_after == request.cancel_until:
        return _window_open(request)
    return request.fulfil_after > timezone.now() - QUEUED_GRACE


def request_fulfil_actor(*, request: DataSubjectRequest, actor_id: Any) -> Any:
    """On whose behalf a worker carries a request out: `actor_id`, else the steward who last
    queued or scheduled its fulfilment (None: the system). It is attribution of a decision
    already taken: a steward deactivated since is still named."""
    from django.contrib.auth import get_user_model

    if actor_id is None:
        actor_id = (
            request.events.filter(action__in=("fulfil_queued", "fulfil_scheduled"))
            .order_by("-at", "-pk")
            .values_list("actor_id", flat=True)
            .first()
        )
    return get_user_model().objects.filter(pk=actor_id).first() if actor_id else None


def request_unqueue(*, request: DataSubjectRequest) -> None:
    """The request is no longer waiting for a worker (it was refused or failed): a steward
    fulfils it again once the cause is dealt with; the hourly sweep leaves it."""
    if request.fulfil_after is not None:
        request.fulfil_after = None
        request.save(update_fields=["fulfil_after", "updated_at"])


@transaction.atomic
def request_fulfil_failed(*, request: DataSubjectRequest, error: str) -> None:
    """A worker's fulfilment raised unexpectedly: the request moves to the error state for a
    steward (`error`: the exception's class, never its message) and is no longer queued."""
    _lock(request)
    request_transition(
        request=request,
        to_state=RequestState.ERROR,
        actor=None,
        note=f"Fulfilment failed ({error}); see the worker's log.",
        action="failed",
    )
    request_unqueue(request=request)


@transaction.atomic
def request_fulfil_refused(*, request: DataSubjectRequest, code: str, message: str) -> None:
    """A worker could not carry the request out (a hold placed since, ...): recorded on the
    request, which is no longer queued. Nothing is recorded when it was closed meanwhile (a
    second run of the same task)."""
    _lock(request)
    if request.state in FULFILMENT_STATES and request.fulfil_after is not None:
        request_unqueue(request=request)
        _event(
            request,
            action="fulfil_refused",
            note=f"Not carried out ({code}): {message} Fulfil it again once this is dealt with.",
        )


def _request_fulfil(
    *, request: DataSubjectRequest, actor: Any, note: str = ""
) -> DataSubjectRequest:
    _lock(request)
    _fulfillable(request)
    if _window_open(request):
        return _schedule_erasure(request, actor=actor, note=note)
    if request.type in DIRECT_TYPES:
        outcome = _fulfil_directly(request)
        note = f"{note}\n{outcome}".strip()
    elif request.type in FULFILMENT_MODULE_TYPES:
        from governance import fulfilment  # it calls back into this module

        return fulfilment.fulfil(request=request, actor=actor, note=note)
    # Rectification: the steward corrected the traits; closing records that it is done.
    return request_transition(
        request=request, to_state=RequestState.FULFILLED, actor=actor, note=note, action="fulfilled"
    )


@transaction.atomic
def request_export_download(*, request: DataSubjectRequest, via: str) -> tuple[Any, bytes]:
    """The subject downloads their export (from the portal, authorized by the session's status
    token): counted and audited before the archive is opened."""
    from governance import export  # the export module imports this one's models only

    archive = selectors.request_export_ready(request=request)
    if archive is None or request.state not in DOWNLOADABLE_STATES:
        raise selectors.RequestNotFound("No export is ready for this request.")
    type(archive).objects.filter(pk=archive.pk).update(downloads=F("downloads") + 1)
    record_access(archive, actor=None, reason="subject download", fields=["archive"], via=via)
    return archive, export.export_open(archive=archive)


# --- Lifting a restriction of processing (GDPR Art. 18) --------------------------------------
#
# A restriction while the accuracy of the data is verified (Art. 18(1)(a)) or while an objection
# is weighed (18(1)(d)) is temporary. A steward lifts it with a reason; every subject whose
# restriction request restricted the profile is informed before it is lifted (Art. 18(3)):
# by email for an email contact, by the steward (who confirms it) for a phone contact, since
# no SMS is configured. Activation's restriction-lifted hook makes the person a member of
# their audiences again and marks them for the syncs to send again.


class ProfileNotRestricted(Conflict):
    code = "not_restricted"
    default_message = "Processing of this profile is not restricted: there is nothing to lift."


class SubjectNotInformed(ApplicationError):
    code = "subject_not_informed"
    status = 400
    default_message = (
        "The subject must be informed before the restriction is lifted (GDPR Art. 18(3)). A "
        "request with a phone contact is not told by email: inform the subject, then confirm."
    )


class RequestNotRestriction(InvalidInput):
    code = "not_a_restriction"
    default_message = "This is not a restriction request: it restricted nothing."


class RequestNotFulfilled(Conflict):
    code = "request_not_fulfilled"
    default_message = (
        "This restriction request is not fulfilled: it restricted nothing there is to lift."
    )


class RequestRestrictionLifted(Conflict):
    code = "restriction_already_lifted"
    default_message = (
        "The restriction this request put in place was lifted already: a later restriction "
        "of the person is lifted from its own request or from the profile."
    )


class ProfileMergedMeanwhile(Conflict):
    code = "profile_merged"
    default_message = (
        "The profile was merged into another while this was being done: nothing was changed. "
        "Try again; it acts on the profile the person lives on in now."
    )


def _lock_person(workspace: Any, profile: Any) -> None:
    """Lock the person's profile rows (profiles.services.profile_lock) and check that the
    profile is still the active one: one merged into another between the caller's read and
    the lock would otherwise be acted on in the survivor's stead."""
    profile_services.profile_lock(profile=profile)
    if profile.status != ProfileStatus.ACTIVE:
        raise ProfileMergedMeanwhile()


class RestrictionPending(Conflict):
    code = "restriction_pending"
    default_message = (
        "A restriction request of this profile is still open: decide it before lifting the "
        "restriction."
    )


class RequestWithoutProfile(Conflict):
    code = "no_profile"
    default_message = "No profile matched this request's contact: nothing was restricted."


@dataclass(frozen=True)
class RestrictionLifted:
    profile: Any
    requests: list[DataSubjectRequest]  # the restriction requests noted (subjects informed)
    emailed: int  # of those, the subjects informed by email; the others by the steward


def _send_restriction_lifted(*, request: DataSubjectRequest, reason: str) -> None:
    # The contact is read only to address the message; it is never logged.
    send_mail(
        subject="The restriction of processing of your data is lifted",
        message=(
            f"You asked us to restrict the processing of your personal data (request "
            f"{request.pk}). We are lifting that restriction, for this reason:\n\n{reason}\n\n"
            f"From now on your data may be processed again, within the consent you gave. You "
            f"may object to the processing, withdraw your consent, or lodge a complaint with a "
            f"supervisory authority."
        ),
        from_email=None,
        recipient_list=[request.contact],
    )


@transaction.atomic
def restriction_lift(
    *,
    workspace: Any,
    profile: Any,
    actor: Any,
    reason: str,
    subject_informed: bool = False,
    via: str = "admin",
) -> RestrictionLifted:
    """Lift the restriction of processing of `profile`, with the steward's reason (kept in the
    audit trail and on each restriction request, and told to the subject). Each subject whose
    restriction request restricted it is informed first (GDPR Art. 18(3)): emailed, or, for a
    phone contact, told by the steward, who confirms it with `subject_informed`."""
    reason = _required(reason, "reason")
    if profile.workspace_id != workspace.pk:
        raise ProfileNotFound()
    _lock_person(workspace, profile)
    if not profile.restricted:
        raise ProfileNotRestricted()
    # A subject who asked for a restriction that no steward has decided yet would see it lifted
    # before being answered, and not be told (only fulfilled requests are informed).
    pending = selectors.restriction_requests_open(workspace=workspace, profile=profile)
    if pending:
        raise RestrictionPending(extra={"requests": [str(r.pk) for r in pending]})
    requests = selectors.restriction_requests_for_profile(workspace=workspace, profile=profile)
    by_steward = [r for r in requests if r.contact_type != "email"]
    if by_steward and not subject_informed:
        raise SubjectNotInformed(extra={"requests": [str(r.pk) for r in by_steward]})
    # Art. 18(3): each subject is told before the restriction is lifted. The messages go out
    # after every check and before anything changes: one that cannot be sent raises with
    # nothing lifted. And before the restriction-lifted hooks, which recompute every active
    # audience under row locks: those are not held while mail is sent (up to EMAIL_TIMEOUT
    # each). The profile rows locked above are.
    for request in requests:
        if request.contact_type == "email":
            _send_restriction_lifted(request=request, reason=reason)
    # The profiles merged into it are the same person, told the restriction is lifted: an
    # unmerge must not bring one back still restricted.
    profile_services.profile_restrict(
        profile=profile,
        restricted=False,
        merged=profile_selectors.profile_absorbed_ids(profile=profile),
    )
    for request in requests:
        how = "by email" if request.contact_type == "email" else "by the steward"
        _event(
            request,
            action=selectors.RESTRICTION_LIFTED,
            actor=actor,
            note=f"{reason}\nThe restriction of processing was lifted; the subject was "
            f"informed {how} (GDPR Art. 18(3)).",
        )
    record_decision(
        profile,
        actor=actor,
        reason=reason,
        changes={"restricted": ["True", "False"]},
        details={
            "requests": [str(r.pk) for r in requests],
            "informed_by_email": len(requests) - len(by_steward),
            "informed_by_steward": len(by_steward),
        },
        via=via,
    )
    return RestrictionLifted(
        profile=profile, requests=requests, emailed=len(requests) - len(by_steward)
    )


def request_restriction_lift(
    *,
    request: DataSubjectRequest,
    actor: Any,
    reason: str,
    subject_informed: bool = False,
    via: str = "admin",
) -> RestrictionLifted:
    """Lift the restriction a fulfilled restriction request put on its profile (the profile
    it was merged into since, if so); see `restriction_lift`. The request is locked first and
    read again (then the person's rows, in fulfilment's order): a second click must find it
    spent by the first, not lift a restriction fulfilled meanwhile by another request."""
    with transaction.atomic():
        return _request_restriction_lift(
            request=_lock(request),
            actor=actor,
            reason=reason,
            subject_informed=subject_informed,
            via=via,
        )


def _request_restriction_lift(
    *,
    request: DataSubjectRequest,
    actor: Any,
    reason: str,
    subject_informed: bool,
    via: str,
) -> RestrictionLifted:
    if request.type != RequestType.RESTRICTION:
        raise RequestNotRestriction()
    # Denied, cancelled or still open, it restricted nothing: it cannot stand for a lift.
    if request.state != RequestState.FULFILLED:
        raise RequestNotFulfilled(extra={"state": request.state})
    # Its own restriction was lifted (and its subject told): it does not stand for a later
    # one, whose subject is the one to tell.
    if request.events.filter(action=selectors.RESTRICTION_LIFTED).exists():
        raise RequestRestrictionLifted()
    if request.profile_id is None:
        raise RequestWithoutProfile()
    return restriction_lift(
        workspace=request.workspace,
        profile=profile_selectors.profile_get(
            workspace=request.workspace, profile_id=request.profile_id
        ),
        actor=actor,
        reason=reason,
        subject_informed=subject_informed,
        via=via,
    )


# --- Retention (governance.retention holds the sweep) ----------------------------------------


def retention_defaults_ensure(*, workspace: Any) -> list[Any]:
    """Seed the default retention policies of the workspace, once (see governance.retention)."""
    from governance import retention

    return retention.retention_defaults_ensure(workspace=workspace)


def retention_policy_create(**kwargs: Any) -> Any:
    """Add a retention policy to a workspace (see governance.retention.retention_policy_create)."""
    from governance import retention

    return retention.retention_policy_create(**kwargs)
