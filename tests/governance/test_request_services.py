"""Data-subject request services: submission (sealed contact, deadlines per regime, a code by
email), verification (constant-time, attempt limit, expiry), the steward's actions (each one a
RequestEvent), extension rules per regime, and what fulfilment does for opt-out, restriction
and objection. Refused actions leave the database as it was."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from django.core import mail
from guardian.shortcuts import get_perms

from cdp.core.exceptions import InvalidInput, PermissionDenied
from consent import services as consent_services
from consent.models import ConsentRecord, ConsentState, Receipt
from governance import services
from governance.models import DataSubjectRequest, RequestEvent
from profiles.models import DataKey, Identity
from tests.governance.request_helpers import (
    SUBJECT_EMAIL,
    SUBJECT_EMAIL_NORMALIZED,
    code_from_outbox,
    frozen,
    in_progress,
    subject_profile,
    submitted,
    verified,
)

RECEIVED = datetime(2026, 1, 30, 10, 0, tzinfo=UTC)  # a Friday


def _snapshot(dsr: DataSubjectRequest) -> tuple[Any, ...]:
    row = DataSubjectRequest.objects.get(pk=dsr.pk)
    return (
        row.state,
        row.due_at,
        row.extended_due_at,
        row.legal_hold,
        row.paused,
        row.verification_attempts,
        row.denial_reason,
        RequestEvent.objects.filter(request=dsr).count(),
    )


def _actions(dsr: DataSubjectRequest) -> list[str]:
    return list(RequestEvent.objects.filter(request=dsr).values_list("action", flat=True))


def test_submit_seals_the_contact_sets_gdpr_deadlines_and_emails_a_code(
    workspace: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # when
    with frozen(RECEIVED), django_capture_on_commit_callbacks(execute=True):
        result = submitted(workspace)
    # then
    dsr = DataSubjectRequest.objects.get(pk=result.request.pk)
    assert dsr.state == "awaiting_verification"
    assert dsr.contact == SUBJECT_EMAIL_NORMALIZED
    assert dsr.received_at == RECEIVED
    assert dsr.acknowledge_by is None
    assert dsr.due_at == datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)
    assert dsr.verification_expires_at == RECEIVED + timedelta(minutes=30)
    assert dsr.status_token_hash == hashlib.sha256(result.status_token.encode()).hexdigest()
    assert DataKey.objects.get(pk=dsr.data_key_id).purpose == "request"
    assert _actions(dsr) == ["submitted", "awaiting_verification", "code_sent"]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [SUBJECT_EMAIL_NORMALIZED]
    code = code_from_outbox()
    assert code not in dsr.verification_code_hash
    assert len(dsr.verification_code_hash) == 64


def test_ccpa_deadlines_count_business_days_for_the_acknowledgement(workspace: Any) -> None:
    # when
    with frozen(RECEIVED):
        dsr = submitted(workspace, regime="ccpa").request
    # then: 10 business days after Friday 30 January is Friday 13 February; 45 days is 16 March
    assert dsr.acknowledge_by == datetime(2026, 2, 13, 23, 59, 59, tzinfo=UTC)
    assert dsr.due_at == datetime(2026, 3, 16, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("regime", "request_type", "due"),
    [
        ("uk_gdpr", "erasure", datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)),
        ("lgpd", "access", datetime(2026, 2, 14, 23, 59, 59, tzinfo=UTC)),
        ("voluntary", "access", datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)),
        ("ccpa", "opt_out", datetime(2026, 2, 20, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_deadlines_per_regime(
    workspace: Any, regime: str, request_type: str, due: datetime
) -> None:
    # when
    with frozen(RECEIVED):
        dsr = submitted(workspace, regime=regime, request_type=request_type).request
    # then
    assert dsr.due_at == due


def test_a_request_entered_later_keeps_its_receipt_date_for_the_deadlines(
    workspace: Any,
) -> None:
    # given: a letter received on Friday 30 January, entered on 3 February
    entered = RECEIVED + timedelta(days=4)
    # when
    with frozen(entered):
        dsr = submitted(workspace, received_at=RECEIVED).request
    # then
    assert dsr.received_at == RECEIVED
    assert dsr.due_at == datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)
    assert dsr.verification_expires_at == entered + timedelta(minutes=30)


def test_a_request_cannot_be_received_in_the_future(workspace: Any) -> None:
    # when
    with frozen(RECEIVED), pytest.raises(InvalidInput) as refused:
        submitted(workspace, received_at=RECEIVED + timedelta(hours=1))
    # then
    assert refused.value.code == "received_later"
    assert DataSubjectRequest.objects.count() == 0


def test_a_ccpa_opt_out_needs_no_verification(workspace: Any) -> None:
    # given
    profile = subject_profile(workspace)
    # when
    dsr = submitted(workspace, regime="ccpa", request_type="opt_out").request
    # then
    assert dsr.state == "verified"
    assert dsr.profile_id == profile.pk
    assert dsr.verification_code_hash == ""
    assert mail.outbox == []
    assert _actions(dsr) == ["submitted", "verified"]


def test_a_phone_contact_gets_no_code_and_is_verified_by_a_steward(
    workspace: Any, owner: Any
) -> None:
    # given
    dsr = submitted(workspace, contact_type="phone", contact="+44 20 7946 0001").request
    # when
    with pytest.raises(services.VerificationCodeInvalid) as refused:
        services.request_verify(request=dsr, code="123456")
    services.request_verify_manually(request=dsr, actor=owner, note="Called the subject back.")
    # then
    assert refused.value.code == "manual_verification"
    assert mail.outbox == []
    assert dsr.contact == "+442079460001"
    assert dsr.state == "verified"
    assert _actions(dsr) == ["submitted", "awaiting_verification", "code_not_sent", "verified"]
    assert RequestEvent.objects.get(request=dsr, action="verified").actor == owner


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("contact", "not-an-email", "invalid_contact"),
        ("request_type", "telepathy", "unknown_type"),
        ("regime", "pipeda", "unknown_regime"),
    ],
)
def test_submit_refuses_bad_input_and_stores_nothing(
    workspace: Any, field: str, value: str, code: str
) -> None:
    # given
    keys = DataKey.objects.count()
    # when
    overrides: dict[str, Any] = {field: value}
    with pytest.raises(InvalidInput) as refused:
        submitted(workspace, **overrides)
    # then
    assert refused.value.code == code
    assert DataSubjectRequest.objects.count() == 0
    assert DataKey.objects.count() == keys


def test_an_objection_must_name_known_purposes(workspace: Any) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    # when
    with pytest.raises(InvalidInput) as missing:
        submitted(workspace, request_type="objection")
    with pytest.raises(InvalidInput) as unknown:
        submitted(workspace, request_type="objection", details={"purposes": ["astrology"]})
    # then
    assert missing.value.code == "purposes_required"
    assert unknown.value.code == "unknown_purpose"
    assert DataSubjectRequest.objects.count() == 0


@pytest.mark.parametrize("purpose", ["x\x00", "advertising\x00", "", "a" * 65, "Ads; DROP"])
def test_a_purpose_key_that_cannot_exist_is_an_unknown_purpose(
    workspace: Any, purpose: str
) -> None:
    # given: PostgreSQL refuses a NUL in a query: looking the key up was a 500 there
    consent_services.purposes_ensure_defaults(workspace=workspace)
    # when
    with pytest.raises(InvalidInput) as unknown:
        submitted(
            workspace, request_type="objection", details={"purposes": ["advertising", purpose]}
        )
    # then
    assert unknown.value.code == "unknown_purpose"
    assert unknown.value.message == f"Unknown purpose(s): {purpose}."
    assert DataSubjectRequest.objects.count() == 0


def test_the_right_code_verifies_and_resolves_the_profile(
    workspace: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    profile = subject_profile(workspace)
    with django_capture_on_commit_callbacks(execute=True):
        dsr = submitted(workspace, contact="ADA.subject@example.com").request
    code = code_from_outbox()
    # when
    with mock.patch(
        "governance.services.hmac.compare_digest", wraps=services.hmac.compare_digest
    ) as compare:
        services.request_verify(request=dsr, code=code)
    # then: compared in constant time, once
    assert compare.call_count == 1
    dsr.refresh_from_db()
    assert dsr.state == "verified"
    assert dsr.profile_id == profile.pk
    assert dsr.verification_code_hash == ""
    assert dsr.verified_at is not None


def test_wrong_codes_count_and_the_sixth_attempt_is_refused_even_with_the_right_code(
    workspace: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    with django_capture_on_commit_callbacks(execute=True):
        dsr = submitted(workspace).request
    code = code_from_outbox()
    wrong = "000000" if code != "000000" else "111111"
    # when
    lefts = []
    for _ in range(5):
        with pytest.raises(services.VerificationCodeInvalid) as refused:
            services.request_verify(request=dsr, code=wrong)
        lefts.append(refused.value.extra["attempts_left"])
    with pytest.raises(services.VerificationLocked) as locked:
        services.request_verify(request=dsr, code=code)
    # then
    assert lefts == [4, 3, 2, 1, 0]
    assert locked.value.status == 429
    dsr.refresh_from_db()
    assert dsr.state == "awaiting_verification"
    assert dsr.verification_attempts == 5
    assert _actions(dsr).count("verification_failed") == 5


def test_an_expired_code_is_refused(
    workspace: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    with frozen(RECEIVED), django_capture_on_commit_callbacks(execute=True):
        dsr = submitted(workspace).request
    code = code_from_outbox()
    # when
    with frozen(RECEIVED + timedelta(minutes=31)), pytest.raises(services.VerificationCodeExpired):
        services.request_verify(request=dsr, code=code)
    # then
    dsr.refresh_from_db()
    assert dsr.state == "awaiting_verification"
    assert dsr.verification_attempts == 0


def test_illegal_transitions_are_refused_and_change_nothing(workspace: Any, owner: Any) -> None:
    # given
    dsr = submitted(workspace).request
    before = _snapshot(dsr)
    # when
    with pytest.raises(services.IllegalTransition) as to_fulfilled:
        services.request_transition(request=dsr, to_state="fulfilled", actor=owner)
    with pytest.raises(services.IllegalTransition) as approve:
        services.request_approve(request=dsr, actor=owner)
    with pytest.raises(services.IllegalTransition) as fulfil:
        services.request_fulfil(request=dsr, actor=owner)
    # then
    assert to_fulfilled.value.code == "illegal_transition"
    assert to_fulfilled.value.status == 409
    assert approve.value.code == fulfil.value.code == "illegal_transition"
    assert _snapshot(dsr) == before


def test_approve_then_fulfil_records_each_step_with_its_actor(workspace: Any, owner: Any) -> None:
    # given
    dsr = verified(workspace)
    # when
    services.request_approve(request=dsr, actor=owner, note="Looks fine.")
    services.request_fulfil(request=dsr, actor=owner)
    # then
    dsr.refresh_from_db()
    assert dsr.state == "fulfilled"
    assert dsr.closed_at is not None
    approved = RequestEvent.objects.get(request=dsr, action="approved")
    assert (approved.from_state, approved.to_state, approved.actor, approved.note) == (
        "verified",
        "in_progress",
        owner,
        "Looks fine.",
    )
    assert _actions(dsr)[-2:] == ["approved", "fulfilled"]


def test_deny_needs_a_reason_and_keeps_it(workspace: Any, owner: Any) -> None:
    # given
    dsr = verified(workspace)
    before = _snapshot(dsr)
    # when
    with pytest.raises(InvalidInput) as refused:
        services.request_deny(request=dsr, actor=owner, reason="  ")
    unchanged = _snapshot(dsr)
    services.request_deny(request=dsr, actor=owner, reason="Manifestly unfounded.")
    # then
    assert refused.value.code == "reason_required"
    assert unchanged == before
    dsr.refresh_from_db()
    assert (dsr.state, dsr.denial_reason) == ("denied", "Manifestly unfounded.")


def test_assign_grants_the_object_permission_and_moves_it_on_reassignment(
    workspace: Any, owner: Any, member: Any
) -> None:
    # given
    from profiles import services as profile_services

    dsr = verified(workspace)
    profile_services.steward_grant_roles(
        workspace=workspace, user=member, roles=["handle_requests"]
    )
    # when
    services.request_assign(request=dsr, assignee=owner, actor=owner)
    services.request_assign(request=dsr, assignee=member, actor=owner)
    # then
    dsr.refresh_from_db()
    assert dsr.assigned_to == member
    assert get_perms(member, dsr) == ["handle_request"]
    assert get_perms(owner, dsr) == []
    assert _actions(dsr).count("assigned") == 2


def test_the_assignment_is_kept_in_the_requests_own_permission_table(
    workspace: Any, owner: Any
) -> None:
    from guardian.models import UserObjectPermission

    from governance.models import RequestUserObjectPermission

    # given
    dsr = verified(workspace)
    # when
    services.request_assign(request=dsr, assignee=owner, actor=owner)
    # then: a row with a real foreign key, none in guardian's generic table
    [row] = RequestUserObjectPermission.objects.all()
    assert (row.user_id, row.content_object_id, row.permission.codename) == (
        owner.pk,
        dsr.pk,
        "handle_request",
    )
    assert not UserObjectPermission.objects.exists()
    # and it goes with the request
    DataSubjectRequest.objects.filter(pk=dsr.pk).delete()
    assert not RequestUserObjectPermission.objects.exists()


def test_assign_refuses_a_steward_of_another_workspace(
    workspace: Any, owner: Any, outsider: Any
) -> None:
    # given
    dsr = verified(workspace)
    before = _snapshot(dsr)
    # when
    with pytest.raises(PermissionDenied):
        services.request_assign(request=dsr, assignee=outsider, actor=owner)
    # then
    assert _snapshot(dsr) == before
    assert DataSubjectRequest.objects.get(pk=dsr.pk).assigned_to is None
    assert get_perms(outsider, dsr) == []


def test_gdpr_extension_goes_up_to_three_months_after_receipt(workspace: Any, owner: Any) -> None:
    # given
    with frozen(RECEIVED):
        dsr = verified(workspace)
    # when
    with frozen(RECEIVED + timedelta(days=20)):
        services.request_extend(request=dsr, actor=owner, reason="Complex request.")
    # then
    dsr.refresh_from_db()
    assert dsr.due_at == datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)
    assert dsr.extended_due_at == datetime(2026, 4, 30, 23, 59, 59, tzinfo=UTC)
    assert dsr.extension_reason == "Complex request."
    assert _actions(dsr)[-1] == "extended"


@pytest.mark.parametrize(
    ("when", "until", "code"),
    [
        (RECEIVED + timedelta(days=30), None, "extension_too_late"),
        (RECEIVED + timedelta(days=5), date(2026, 5, 1), "extension_out_of_range"),
        (RECEIVED + timedelta(days=5), date(2026, 2, 20), "extension_out_of_range"),
    ],
)
def test_gdpr_extension_refused_late_or_out_of_range(
    workspace: Any, owner: Any, when: datetime, until: date | None, code: str
) -> None:
    # given
    with frozen(RECEIVED):
        dsr = verified(workspace)
    before = _snapshot(dsr)
    # when
    with frozen(when), pytest.raises(services.ExtensionRefused) as refused:
        services.request_extend(request=dsr, actor=owner, reason="Busy.", until=until)
    # then
    assert refused.value.code == code
    assert _snapshot(dsr) == before


def test_ccpa_extends_once_by_45_days(workspace: Any, owner: Any) -> None:
    # given
    with frozen(RECEIVED):
        dsr = verified(workspace, regime="ccpa")
    # when
    with frozen(RECEIVED + timedelta(days=10)):
        services.request_extend(request=dsr, actor=owner, reason="Many systems.")
        with pytest.raises(services.ExtensionRefused) as again:
            services.request_extend(request=dsr, actor=owner, reason="Still busy.")
    # then
    dsr.refresh_from_db()
    assert dsr.extended_due_at == datetime(2026, 4, 30, 23, 59, 59, tzinfo=UTC)
    assert again.value.code == "already_extended"


@pytest.mark.parametrize(
    ("regime", "request_type"), [("lgpd", "access"), ("voluntary", "access"), ("ccpa", "opt_out")]
)
def test_other_regimes_have_no_extension(
    workspace: Any, owner: Any, regime: str, request_type: str
) -> None:
    # given
    dsr = verified(workspace, regime=regime, request_type=request_type)
    before = _snapshot(dsr)
    # when
    with pytest.raises(services.ExtensionRefused) as refused:
        services.request_extend(request=dsr, actor=owner, reason="Busy.")
    # then
    assert refused.value.code == "extension_not_allowed"
    assert _snapshot(dsr) == before


def test_extend_needs_a_reason(workspace: Any, owner: Any) -> None:
    # given
    dsr = verified(workspace)
    # when
    with pytest.raises(InvalidInput) as refused:
        services.request_extend(request=dsr, actor=owner, reason="")
    # then
    assert refused.value.code == "reason_required"


def test_a_legal_hold_blocks_erasure_until_lifted(workspace: Any, owner: Any) -> None:
    # given
    dsr = in_progress(workspace, request_type="erasure")
    services.request_hold(request=dsr, actor=owner, reason="Litigation hold 2026-17.")
    before = _snapshot(dsr)
    # when
    with pytest.raises(services.RequestOnLegalHold) as refused:
        services.request_fulfil(request=dsr, actor=owner)
    unchanged = _snapshot(dsr)
    services.request_unhold(request=dsr, actor=owner)
    # then
    assert refused.value.code == "legal_hold"
    assert unchanged == before
    dsr.refresh_from_db()
    assert dsr.legal_hold is False
    assert _actions(dsr)[-2:] == ["hold", "unhold"]


def test_pause_and_resume_move_the_deadline_by_the_days_paused(workspace: Any, owner: Any) -> None:
    # given
    with frozen(RECEIVED):
        dsr = verified(workspace)
    # when
    with frozen(RECEIVED + timedelta(days=2)):
        services.request_pause(request=dsr, actor=owner, reason="Asked the subject to clarify.")
    with frozen(RECEIVED + timedelta(days=5, hours=1)):
        services.request_resume(request=dsr, actor=owner)
    # then
    dsr.refresh_from_db()
    assert dsr.paused is False
    assert dsr.due_at == datetime(2026, 3, 3, 23, 59, 59, tzinfo=UTC)
    assert _actions(dsr)[-2:] == ["paused", "resumed"]


def test_a_note_needs_text(workspace: Any, owner: Any) -> None:
    # given
    dsr = verified(workspace)
    # when
    event = services.request_note(request=dsr, actor=owner, note="Called the IT team.")
    with pytest.raises(InvalidInput):
        services.request_note(request=dsr, actor=owner, note=" ")
    # then
    assert (event.action, event.note, event.actor) == ("note", "Called the IT team.", owner)
    assert _actions(dsr).count("note") == 1


def test_fulfilling_an_opt_out_denies_every_sale_or_share_purpose(
    workspace: Any, owner: Any
) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    profile = subject_profile(workspace)
    dsr = in_progress(workspace, owner, regime="ccpa", request_type="opt_out")
    # when
    services.request_fulfil(request=dsr, actor=owner)
    # then: a denial on the ledger of every identity linked to the person (the email the
    # request names and the userId), each with its receipt; the profile's state is denied
    records = ConsentRecord.objects.filter(workspace=workspace, method="request").order_by(
        "subject_type"
    )
    assert [(r.subject_type, r.purpose.key, r.decision, r.profile_id) for r in records] == [
        ("email", "advertising", "denied", profile.pk),
        ("user_id", "advertising", "denied", profile.pk),
    ]
    linked = Identity.objects.filter(profile=profile).values_list("blind_index", flat=True)
    assert {bytes(r.subject_index) for r in records} == {bytes(i) for i in linked}
    assert Receipt.objects.filter(workspace=workspace, profile=profile).count() == 2
    assert (
        ConsentState.objects.get(profile=profile, purpose__key="advertising").decision == "denied"
    )
    assert (
        "Opted out of 1 sale/share purpose(s) for 2 identities."
        in RequestEvent.objects.get(request=dsr, action="fulfilled").note
    )


def test_fulfilling_an_objection_denies_the_named_purposes(workspace: Any, owner: Any) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    profile = subject_profile(workspace)
    dsr = in_progress(
        workspace, owner, request_type="objection", details={"purposes": ["profiling", "analytics"]}
    )
    # when
    services.request_fulfil(request=dsr, actor=owner)
    # then
    decided = ConsentState.objects.filter(profile=profile).order_by("purpose__key")
    assert [(s.purpose.key, s.decision) for s in decided] == [
        ("analytics", "denied"),
        ("profiling", "denied"),
    ]
    on_ledger = ConsentRecord.objects.filter(workspace=workspace, method="request")
    assert sorted({r.subject_type for r in on_ledger}) == ["email", "user_id"]
    assert on_ledger.count() == 4


def test_fulfilling_a_restriction_restricts_the_profile(workspace: Any, owner: Any) -> None:
    # given
    profile = subject_profile(workspace)
    dsr = in_progress(workspace, owner, request_type="restriction")
    # when
    services.request_fulfil(request=dsr, actor=owner)
    # then
    profile.refresh_from_db()
    assert profile.restricted is True
    assert DataSubjectRequest.objects.get(pk=dsr.pk).state == "fulfilled"


def test_contact_matching_is_by_normalized_value(workspace: Any) -> None:
    # given
    profile = subject_profile(workspace)
    # when
    dsr = verified(workspace, contact=SUBJECT_EMAIL.upper())
    # then
    assert dsr.profile_id == profile.pk
