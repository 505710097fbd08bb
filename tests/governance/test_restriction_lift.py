"""Lifting a restriction of processing (GDPR Art. 18): with a reason, audited with it, noted on
each restriction request that restricted the profile, and each subject informed before it is
lifted (Art. 18(3)): emailed, or told by the steward for a phone contact. Refusals leave the
profile restricted, the requests as they were and no message sent."""

from __future__ import annotations

import logging
from smtplib import SMTPException
from typing import Any
from unittest import mock

import pytest
from auditlog import get_logentry_model
from django.contrib.contenttypes.models import ContentType
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cdp.core import hooks
from cdp.core.exceptions import ApplicationError
from governance import services
from governance.models import RequestEvent
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.models import Profile
from tests.governance.request_helpers import (
    SUBJECT_EMAIL_NORMALIZED,
    in_progress,
    subject_profile,
    verified,
)
from tests.profiles.ingest_helpers import msg
from tests.test_no_plaintext_pii import SENTINELS, scan_all_tables

pytestmark = pytest.mark.django_db
LogEntry = get_logentry_model()
REASON = "Accuracy verified against the signed contract (ticket 4711)."
PHONE = "+44 20 7946 0123"


def _restricted_by_request(workspace: Any, owner: Any, **kwargs: Any) -> tuple[Any, Any]:
    """A restriction request, fulfilled: (its profile, now restricted; the request)."""
    dsr = in_progress(workspace, owner, request_type="restriction", **kwargs)
    services.request_fulfil(request=dsr, actor=owner)
    dsr.refresh_from_db()
    assert dsr.profile is not None
    profile = profile_selectors.profile_get(workspace=workspace, profile_id=dsr.profile_id)
    assert profile.restricted is True
    return profile, dsr


def _lift_entries(profile: Any) -> list[Any]:
    """The audit entries that carry a reason for the profile (the lift's own)."""
    return [
        entry
        for entry in LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Profile), object_pk=str(profile.pk)
        ).order_by("pk")
        if (entry.additional_data or {}).get("reason")
    ]


def _lifted_events() -> list[tuple[Any, str]]:
    return list(
        RequestEvent.objects.filter(action="restriction_lifted").values_list("request_id", "note")
    )


def test_lifting_unrestricts_audits_notes_the_request_and_emails_the_subject(
    workspace: Any, owner: Any
) -> None:
    # given
    subject_profile(workspace)
    profile, dsr = _restricted_by_request(workspace, owner)
    mail.outbox.clear()
    # when
    lifted = services.restriction_lift(
        workspace=workspace, profile=profile, actor=owner, reason=f"  {REASON}  ", via="admin"
    )
    # then: processing is no longer restricted
    assert Profile.objects.get(pk=profile.pk).restricted is False
    assert (lifted.requests, lifted.emailed) == ([dsr], 1)
    # ...the audit trail says who lifted it and why
    [entry] = _lift_entries(profile)
    assert entry.action == LogEntry.Action.UPDATE
    assert entry.actor_id == owner.pk
    assert entry.changes == {"restricted": ["True", "False"]}
    assert entry.additional_data == {
        "reason": REASON,
        "requests": [str(dsr.pk)],
        "informed_by_email": 1,
        "informed_by_steward": 0,
        "via": "admin",
    }
    # ...the request it came from records that it was lifted and the subject informed
    assert _lifted_events() == [
        (
            dsr.pk,
            f"{REASON}\nThe restriction of processing was lifted; the subject was informed by "
            "email (GDPR Art. 18(3)).",
        )
    ]
    event = RequestEvent.objects.get(action="restriction_lifted")
    assert event.actor_id == owner.pk
    # ...and the subject was told, with the reason
    [message] = mail.outbox
    assert message.to == [SUBJECT_EMAIL_NORMALIZED]
    assert str(dsr.pk) in message.body
    assert REASON in message.body


def test_a_restricted_profile_merged_into_another_is_found_through_it(
    workspace: Any, owner: Any
) -> None:
    # given: an older profile, and the subject's (restricted by their request) merged into it
    source = profile_services.source_create(workspace=workspace, name="CRM")
    older = profile_services.ingest_messages(
        source=source,
        messages=[msg("identify", anonymous_id="crm-9", traits={"email": "ada.work@example.com"})],
    ).profile_ids[0]
    subject_profile(workspace)
    restricted, dsr = _restricted_by_request(workspace, owner)
    profile_services.profiles_merge(
        workspace=workspace,
        profile_ids=(older, restricted.pk),
        rule="manual",
        actor=owner,
        evidence={},
    )
    survivor = profile_selectors.profile_get(workspace=workspace, profile_id=restricted.pk)
    assert survivor.pk == older
    profile_services.profile_restrict(profile=survivor, restricted=True)
    mail.outbox.clear()
    # when
    lifted = services.restriction_lift(
        workspace=workspace, profile=survivor, actor=owner, reason=REASON
    )
    # then: the subject of the absorbed profile's request is the one informed
    assert [r.pk for r in lifted.requests] == [dsr.pk]
    assert [m.to for m in mail.outbox] == [[SUBJECT_EMAIL_NORMALIZED]]


def _older_profile(workspace: Any) -> Any:
    """A profile ingested before the subject's (so it survives a merge with it)."""
    source = profile_services.source_create(workspace=workspace, name="CRM")
    return profile_services.ingest_messages(
        source=source,
        messages=[msg("identify", anonymous_id="crm-9", traits={"email": "ada.work@example.com"})],
    ).profile_ids[0]


def test_a_request_whose_profile_was_merged_before_fulfilment_restricts_the_survivor(
    workspace: Any, owner: Any
) -> None:
    # given: a restriction request matched the subject's profile, merged since into an older one
    older = _older_profile(workspace)
    own = subject_profile(workspace)
    dsr = in_progress(workspace, owner, request_type="restriction")
    assert dsr.profile_id == own.pk
    profile_services.profiles_merge(
        workspace=workspace, profile_ids=(older, own.pk), rule="manual", actor=owner, evidence={}
    )
    # when
    services.request_fulfil(request=dsr, actor=owner)
    # then: the person (the survivor) is restricted, and so is the request's own profile
    assert Profile.objects.get(pk=older).restricted is True
    assert Profile.objects.get(pk=own.pk).restricted is True

    # when: lifted through the request
    mail.outbox.clear()
    lifted = services.request_restriction_lift(request=dsr, actor=owner, reason=REASON)
    # then
    assert lifted.profile.pk == older
    assert [r.pk for r in lifted.requests] == [dsr.pk]
    assert Profile.objects.get(pk=older).restricted is False
    assert Profile.objects.get(pk=own.pk).restricted is False
    assert [m.to for m in mail.outbox] == [[SUBJECT_EMAIL_NORMALIZED]]
    assert [request_id for request_id, _note in _lifted_events()] == [dsr.pk]


def test_a_lift_unrestricts_the_profiles_merged_into_the_person_so_an_unmerge_keeps_it(
    workspace: Any, owner: Any
) -> None:
    # given: the subject's profile, restricted by their request, merged into an older one
    older = _older_profile(workspace)
    subject_profile(workspace)
    own, _dsr = _restricted_by_request(workspace, owner)
    merge = profile_services.profiles_merge(
        workspace=workspace, profile_ids=(older, own.pk), rule="manual", actor=owner, evidence={}
    )
    assert list(
        Profile.objects.filter(pk__in=[older, own.pk]).values_list("restricted", flat=True)
    ) == [True, True]
    # when: the restriction is lifted, then the merge undone
    services.restriction_lift(
        workspace=workspace,
        profile=profile_selectors.profile_get(workspace=workspace, profile_id=older),
        actor=owner,
        reason=REASON,
    )
    profile_services.profile_unmerge(workspace=workspace, merge=merge, actor=owner, reason="x")
    # then: the subject gets their own profile back unrestricted, as they were told
    assert Profile.objects.get(pk=own.pk).status == "active"
    assert Profile.objects.get(pk=own.pk).restricted is False
    assert Profile.objects.get(pk=older).restricted is False


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_missing_reason_is_refused_and_nothing_changes(
    workspace: Any, owner: Any, reason: str
) -> None:
    # given
    subject_profile(workspace)
    profile, _dsr = _restricted_by_request(workspace, owner)
    mail.outbox.clear()
    entries = LogEntry.objects.count()
    # when
    with pytest.raises(ApplicationError) as refused:
        services.restriction_lift(workspace=workspace, profile=profile, actor=owner, reason=reason)
    # then
    assert (refused.value.code, refused.value.status) == ("reason_required", 400)
    assert Profile.objects.get(pk=profile.pk).restricted is True
    assert _lifted_events() == []
    assert mail.outbox == []
    assert LogEntry.objects.count() == entries


def test_a_profile_that_is_not_restricted_is_a_conflict(workspace: Any, owner: Any) -> None:
    # given
    profile = subject_profile(workspace)
    entries = LogEntry.objects.count()
    # when
    with pytest.raises(ApplicationError) as refused:
        services.restriction_lift(workspace=workspace, profile=profile, actor=owner, reason=REASON)
    # then
    assert (refused.value.code, refused.value.status) == ("not_restricted", 409)
    assert mail.outbox == []
    assert LogEntry.objects.count() == entries


def test_another_workspaces_profile_is_not_found(
    workspace: Any, other_workspace: Any, owner: Any
) -> None:
    # given
    subject_profile(workspace)
    profile, _dsr = _restricted_by_request(workspace, owner)
    # when
    with pytest.raises(ApplicationError) as refused:
        services.restriction_lift(
            workspace=other_workspace, profile=profile, actor=owner, reason=REASON
        )
    # then
    assert refused.value.status == 404
    assert Profile.objects.get(pk=profile.pk).restricted is True


def test_a_phone_contact_is_informed_by_the_steward_who_confirms_it(
    workspace: Any, owner: Any
) -> None:
    # given: the restriction was asked for by phone (no SMS is sent)
    source = profile_services.source_create(workspace=workspace, name="Call centre")
    profile_services.ingest_messages(
        source=source, messages=[msg("identify", user_id="caller-1", traits={"phone": PHONE})]
    )
    profile, dsr = _restricted_by_request(workspace, owner, contact_type="phone", contact=PHONE)
    mail.outbox.clear()
    # when: not confirmed
    with pytest.raises(ApplicationError) as refused:
        services.restriction_lift(workspace=workspace, profile=profile, actor=owner, reason=REASON)
    # then
    assert refused.value.code == "subject_not_informed"
    assert refused.value.extra == {"requests": [str(dsr.pk)]}
    assert Profile.objects.get(pk=profile.pk).restricted is True
    assert _lifted_events() == []

    # when: confirmed
    lifted = services.restriction_lift(
        workspace=workspace, profile=profile, actor=owner, reason=REASON, subject_informed=True
    )
    # then
    assert Profile.objects.get(pk=profile.pk).restricted is False
    assert lifted.emailed == 0
    assert mail.outbox == []
    [(_request, note)] = _lifted_events()
    assert note.endswith("the subject was informed by the steward (GDPR Art. 18(3)).")
    [entry] = _lift_entries(profile)
    assert entry.additional_data["informed_by_steward"] == 1


def test_a_message_that_cannot_be_sent_leaves_the_restriction(workspace: Any, owner: Any) -> None:
    # given
    subject_profile(workspace)
    profile, _dsr = _restricted_by_request(workspace, owner)
    # when: the mail server refuses (the subject must be told before it is lifted)
    with (
        mock.patch("governance.services.send_mail", side_effect=SMTPException("down")),
        pytest.raises(SMTPException),
    ):
        services.restriction_lift(workspace=workspace, profile=profile, actor=owner, reason=REASON)
    # then
    assert Profile.objects.get(pk=profile.pk).restricted is True
    assert _lifted_events() == []
    assert _lift_entries(profile) == []


def _restricted_by_two_requests(workspace: Any, owner: Any) -> tuple[Any, Any, Any]:
    """The subject asked twice (two restriction requests, both fulfilled, both emailed)."""
    profile, first = _restricted_by_request(workspace, owner)
    _same, second = _restricted_by_request(workspace, owner)
    mail.outbox.clear()
    return profile, first, second


def test_when_the_second_message_cannot_be_sent_nothing_is_lifted_or_recomputed(
    workspace: Any, owner: Any
) -> None:
    # given
    subject_profile(workspace)
    profile, _first, _second = _restricted_by_two_requests(workspace, owner)
    entries = LogEntry.objects.count()
    # when: the first message goes, the second is refused
    with (
        mock.patch("governance.services.send_mail", side_effect=[1, SMTPException("down")]) as sent,
        mock.patch("cdp.core.hooks.run_restriction_lifted_hooks") as lifted_hooks,
        pytest.raises(SMTPException),
    ):
        services.restriction_lift(workspace=workspace, profile=profile, actor=owner, reason=REASON)
    # then: both were tried, and no audience was recomputed, nothing lifted or recorded
    assert sent.call_count == 2
    lifted_hooks.assert_not_called()
    assert Profile.objects.get(pk=profile.pk).restricted is True
    assert _lifted_events() == []
    assert LogEntry.objects.count() == entries


def test_the_subjects_are_emailed_before_the_restriction_lifted_hooks_run(
    workspace: Any, owner: Any
) -> None:
    # given
    subject_profile(workspace)
    profile, first, second = _restricted_by_two_requests(workspace, owner)
    calls: list[str] = []
    real_send_mail = services.send_mail
    real_hooks = hooks.run_restriction_lifted_hooks

    def send_mail(**kwargs: Any) -> int:
        calls.append("mail")
        return real_send_mail(**kwargs)

    def run_hooks(workspace_id: int, profile_ids: Any) -> None:
        calls.append("hooks")
        real_hooks(workspace_id, profile_ids)

    # when
    with (
        mock.patch("governance.services.send_mail", side_effect=send_mail),
        mock.patch("cdp.core.hooks.run_restriction_lifted_hooks", side_effect=run_hooks),
    ):
        lifted = services.restriction_lift(
            workspace=workspace, profile=profile, actor=owner, reason=REASON
        )
    # then
    assert calls == ["mail", "mail", "hooks"]
    assert [r.pk for r in lifted.requests] == [first.pk, second.pk]
    assert Profile.objects.get(pk=profile.pk).restricted is False
    assert [str(first.pk) in m.body for m in mail.outbox] == [True, False]


def test_a_request_whose_restriction_was_lifted_is_not_informed_again_by_a_later_lift(
    workspace: Any, owner: Any
) -> None:
    # given: restricted by a request and lifted; restricted again by another request
    subject_profile(workspace)
    profile, first = _restricted_by_request(workspace, owner)
    services.restriction_lift(workspace=workspace, profile=profile, actor=owner, reason=REASON)
    _same, second = _restricted_by_request(workspace, owner)
    mail.outbox.clear()
    # when: the second restriction is lifted
    lifted = services.restriction_lift(
        workspace=workspace, profile=profile, actor=owner, reason="Objection weighed."
    )
    # then: only the second request's subject is told, and each request has one lift event
    assert [r.pk for r in lifted.requests] == [second.pk]
    assert [str(second.pk) in m.body and str(first.pk) not in m.body for m in mail.outbox] == [True]
    assert sorted(request_id for request_id, _note in _lifted_events()) == sorted(
        [first.pk, second.pk]
    )
    assert _lift_entries(profile)[-1].additional_data["requests"] == [str(second.pk)]


def test_a_restriction_with_no_request_is_lifted_with_nobody_to_inform(
    workspace: Any, owner: Any
) -> None:
    # given: restricted without a request (the request's contact matched no profile then)
    profile = subject_profile(workspace)
    profile_services.profile_restrict(profile=profile, restricted=True)
    # when
    lifted = services.restriction_lift(
        workspace=workspace, profile=profile, actor=owner, reason=REASON
    )
    # then
    assert Profile.objects.get(pk=profile.pk).restricted is False
    assert (lifted.requests, lifted.emailed) == ([], 0)
    assert mail.outbox == []
    [entry] = _lift_entries(profile)
    assert entry.additional_data["requests"] == []


def test_the_request_path_refuses_other_types_and_requests_without_a_profile(
    workspace: Any, owner: Any
) -> None:
    # given: an access request, and a restriction request that matched no profile
    subject_profile(workspace)
    access = in_progress(workspace, owner)
    unmatched = in_progress(
        workspace, owner, request_type="restriction", contact="nobody@example.com"
    )
    services.request_fulfil(request=unmatched, actor=owner)
    # when
    with pytest.raises(ApplicationError) as not_a_restriction:
        services.request_restriction_lift(request=access, actor=owner, reason=REASON)
    with pytest.raises(ApplicationError) as no_profile:
        services.request_restriction_lift(request=unmatched, actor=owner, reason=REASON)
    # then
    assert (not_a_restriction.value.code, not_a_restriction.value.status) == (
        "not_a_restriction",
        400,
    )
    assert (no_profile.value.code, no_profile.value.status) == ("no_profile", 409)
    assert _lifted_events() == []


def _not_fulfilled(workspace: Any, owner: Any, state: str) -> Any:
    """A restriction request of the subject left open, denied or cancelled."""
    if state == "verified":
        return verified(workspace, request_type="restriction")
    if state == "revoked":
        return services.request_cancel(request=verified(workspace, request_type="restriction"))
    dsr = in_progress(workspace, owner, request_type="restriction")
    if state == "denied":
        return services.request_deny(request=dsr, actor=owner, reason="Not the subject.")
    return dsr


@pytest.mark.parametrize("state", ["verified", "in_progress", "denied", "revoked"])
def test_the_request_path_refuses_a_restriction_request_that_is_not_fulfilled(
    workspace: Any, owner: Any, state: str
) -> None:
    # given: the profile restricted by one request; another in `state`
    subject_profile(workspace)
    profile, _fulfilled = _restricted_by_request(workspace, owner)
    dsr = _not_fulfilled(workspace, owner, state)
    assert (dsr.state, dsr.profile_id) == (state, profile.pk)
    mail.outbox.clear()
    entries = LogEntry.objects.count()
    # when
    with pytest.raises(ApplicationError) as refused:
        services.request_restriction_lift(request=dsr, actor=owner, reason=REASON)
    # then
    assert (refused.value.code, refused.value.status) == ("request_not_fulfilled", 409)
    assert refused.value.extra == {"state": state}
    assert Profile.objects.get(pk=profile.pk).restricted is True
    assert _lifted_events() == []
    assert mail.outbox == []
    assert LogEntry.objects.count() == entries


@pytest.mark.parametrize("merged", [False, True])
def test_an_open_restriction_request_of_the_person_blocks_the_lift(
    workspace: Any, owner: Any, merged: bool
) -> None:
    # given: restricted by a fulfilled request; another restriction request still open (on a
    # profile merged into the restricted one since, when `merged`)
    older = _older_profile(workspace)
    subject_profile(workspace)
    restricted, fulfilled = _restricted_by_request(workspace, owner)
    pending = in_progress(workspace, owner, request_type="restriction")
    if merged:
        profile_services.profiles_merge(
            workspace=workspace,
            profile_ids=(older, restricted.pk),
            rule="manual",
            actor=owner,
            evidence={},
        )
    profile = profile_selectors.profile_get(workspace=workspace, profile_id=restricted.pk)
    assert profile.pk == (older if merged else restricted.pk)
    mail.outbox.clear()
    entries = LogEntry.objects.count()
    # when: from the profile, and through the fulfilled request
    with pytest.raises(ApplicationError) as from_profile:
        services.restriction_lift(workspace=workspace, profile=profile, actor=owner, reason=REASON)
    with pytest.raises(ApplicationError) as from_request:
        services.request_restriction_lift(request=fulfilled, actor=owner, reason=REASON)
    # then
    for refused in (from_profile, from_request):
        assert (refused.value.code, refused.value.status) == ("restriction_pending", 409)
        assert refused.value.extra == {"requests": [str(pending.pk)]}
    assert Profile.objects.get(pk=profile.pk).restricted is True
    assert _lifted_events() == []
    assert mail.outbox == []
    assert LogEntry.objects.count() == entries

    # when: the open request is decided, the lift goes ahead
    services.request_deny(request=pending, actor=owner, reason="Already restricted.")
    lifted = services.request_restriction_lift(request=fulfilled, actor=owner, reason=REASON)
    # then
    assert [r.pk for r in lifted.requests] == [fulfilled.pk]
    assert Profile.objects.get(pk=profile.pk).restricted is False


def test_lifting_writes_no_personal_data_in_plaintext_and_logs_none(
    workspace: Any, owner: Any, caplog: Any
) -> None:
    # given: the subject's contact is a sentinel
    subject_profile(workspace, email=SENTINELS["email"])
    _profile, dsr = _restricted_by_request(workspace, owner, contact=SENTINELS["email"])
    mail.outbox.clear()
    # when
    with caplog.at_level(logging.DEBUG):
        services.request_restriction_lift(request=dsr, actor=owner, reason=REASON)
    # then: the message went to the subject, and nothing else holds or logged the address
    assert mail.outbox[0].to == [SENTINELS["email_normalized"]]
    assert scan_all_tables() == []
    assert SENTINELS["email_normalized"] not in caplog.text.lower()


def test_a_profile_merged_away_after_the_caller_read_it_is_not_lifted_in_its_stead(
    workspace: Any, owner: Any
) -> None:
    # given: the steward's page read the subject's restricted profile; then it was merged into
    # an older one (which the merge restricted too)
    older = _older_profile(workspace)
    subject_profile(workspace)
    stale, _dsr = _restricted_by_request(workspace, owner)
    profile_services.profiles_merge(
        workspace=workspace, profile_ids=(older, stale.pk), rule="manual", actor=owner,
        evidence={},
    )  # fmt: skip
    mail.outbox.clear()
    before = len(_lift_entries(Profile.objects.get(pk=older)))
    # when: the lift goes ahead with the object read before the merge
    with pytest.raises(ApplicationError) as refused:
        services.restriction_lift(workspace=workspace, profile=stale, actor=owner, reason=REASON)
    # then: a conflict, nobody told, nothing lifted or audited; the survivor stays restricted
    assert refused.value.code == "profile_merged"
    assert mail.outbox == []
    assert Profile.objects.get(pk=older).restricted is True
    assert len(_lift_entries(Profile.objects.get(pk=older))) == before
    assert _lifted_events() == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: SQLite has one writer")
def test_fulfilling_a_restriction_locks_the_person_before_changing_a_row(
    workspace: Any, owner: Any
) -> None:
    # given: the subject's profile merged into an older one before the request is fulfilled
    older = _older_profile(workspace)
    subject = subject_profile(workspace)
    dsr = in_progress(workspace, owner, request_type="restriction")
    profile_services.profiles_merge(
        workspace=workspace, profile_ids=(older, subject.pk), rule="manual", actor=owner,
        evidence={},
    )  # fmt: skip
    # when
    with CaptureQueriesContext(connection) as queries:
        services.request_fulfil(request=dsr, actor=owner)
    # then: the rows are locked (in key order, as a lift does) before any profile is updated
    sqls = [q["sql"] for q in queries.captured_queries]
    locked = next(i for i, q in enumerate(sqls) if "FOR UPDATE" in q and "profiles_profile" in q)
    updated = next(i for i, q in enumerate(sqls) if q.startswith('UPDATE "profiles_profile"'))
    assert locked < updated
    assert Profile.objects.get(pk=older).restricted is True


def test_a_request_whose_restriction_was_lifted_cannot_lift_a_later_one(
    workspace: Any, owner: Any
) -> None:
    # given: restricted by a request and lifted; restricted again by another request
    subject_profile(workspace)
    profile, first = _restricted_by_request(workspace, owner)
    services.restriction_lift(workspace=workspace, profile=profile, actor=owner, reason=REASON)
    _restricted_by_request(workspace, owner)
    mail.outbox.clear()
    # when: the steward lifts through the first, spent, request
    with pytest.raises(ApplicationError) as refused:
        services.request_restriction_lift(request=first, actor=owner, reason=REASON)
    # then: refused, still restricted, nobody told
    assert refused.value.code == "restriction_already_lifted"
    assert Profile.objects.get(pk=profile.pk).restricted is True
    assert mail.outbox == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: SQLite has one writer")
def test_lifting_through_a_request_locks_it_before_checking_it_is_not_spent(
    workspace: Any, owner: Any
) -> None:
    # given
    subject_profile(workspace)
    _profile, dsr = _restricted_by_request(workspace, owner)
    # when
    with CaptureQueriesContext(connection) as queries:
        services.request_restriction_lift(request=dsr, actor=owner, reason=REASON)
    # then: a second click waits for the first, then finds the request spent
    sqls = [q["sql"] for q in queries.captured_queries]
    locked = next(
        i for i, q in enumerate(sqls) if "FOR UPDATE" in q and "governance_datasubjectrequest" in q
    )
    checked = next(i for i, q in enumerate(sqls) if "governance_requestevent" in q)
    assert locked < checked
