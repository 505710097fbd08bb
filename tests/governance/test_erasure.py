"""Erasure: every identifier of the person suppressed first, every registered store erased in
order, the data keys destroyed last, a signed certificate; legal holds and the cancellation
window refuse and change nothing; a failing store makes the request partially fulfilled."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from cdp.core import registry
from cdp.core.registry import ErasureReport, ErasureStatus, PersonalDataHandler
from consent import selectors as consent_selectors
from governance import erasure, export, fulfilment, handlers, tasks
from governance.models import DataSubjectRequest, ErasureCertificate, ExportArchive
from profiles import services as profile_services
from profiles.models import DataKey, Event, Identity, Profile, Suppression
from tests.governance.request_helpers import SUBJECT_EMAIL_NORMALIZED, in_progress
from tests.profiles.ingest_helpers import msg


@pytest.fixture
def person(workspace: Any) -> Profile:
    """Two profiles merged into one: four identities under two data keys."""
    source = profile_services.source_create(workspace=workspace, name="Web")
    profile_services.ingest_messages(
        source=source, messages=[msg(anonymous_id="anon-e1", name="Viewed")]
    )
    profile_services.ingest_messages(
        source=source,
        messages=[
            msg(
                "identify",
                user_id="u-e1",
                anonymous_id="anon-e2",
                traits={"email": SUBJECT_EMAIL_NORMALIZED},
            ),
            msg("identify", user_id="u-e1", anonymous_id="anon-e1"),
        ],
    )
    return Profile.objects.get(status="active")


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, PersonalDataHandler]:
    handlers_ = dict(registry._handlers)
    monkeypatch.setattr(registry, "_handlers", handlers_)
    return handlers_


def _state() -> tuple[int, int, int, int]:
    return (
        Profile.objects.count(),
        Identity.objects.count(),
        Suppression.objects.count(),
        ErasureCertificate.objects.count(),
    )


def test_erasure_suppresses_erases_every_store_and_issues_a_signed_certificate(
    workspace: Any, person: Profile
) -> None:
    # given
    dsr = in_progress(workspace, request_type="erasure")
    key_ids = sorted(
        str(k) for k in DataKey.objects.filter(profile=person).values_list("pk", flat=True)
    )
    assert len(key_ids) == 2

    # when
    certificate = erasure.erasure_run(request=dsr)

    # then: nothing of the person is left, and no key of theirs opens anything
    assert (Profile.objects.count(), Identity.objects.count(), Event.objects.count()) == (0, 0, 0)
    assert set(DataKey.objects.filter(pk__in=key_ids).values_list("wrapped", flat=True)) == {None}
    body = certificate.body
    assert [s["store"] for s in body["stores"]] == [h.name for h in registry.handlers()]
    statuses = {s["store"]: s["status"] for s in body["stores"]}
    assert statuses["profiles.identities"] == "erased"
    assert statuses["profiles.profile"] == "erased"
    assert statuses["governance.requests"] == "retained"
    assert sorted(body["data_keys_destroyed"]) == key_ids
    assert body["suppressed_identifiers"] == {"anonymous_id": 2, "email": 1, "user_id": 1}
    assert Suppression.objects.count() == 4
    assert (body["request"], body["type"], body["regime"], body["workspace"]) == (
        str(dsr.pk),
        "erasure",
        "gdpr",
        "acme",
    )
    assert body["subject"] == str(person.pk)
    assert body["destinations"] == []
    assert "deletion request" in body["destinations_note"]
    # ...signed with the workspace's published key
    keys = Client().get("/.well-known/cdp-receipt-keys.json", {"workspace": "acme"}).json()
    keys = keys["keys"] if isinstance(keys, dict) else keys
    check = consent_selectors.receipt_verify(
        receipt={"body": body, "signature": certificate.signature, "kid": certificate.kid},
        keys=keys,
    )
    assert check.valid, check.reason
    forged = {**body, "suppressed_identifiers": {}}
    assert not consent_selectors.receipt_verify(
        receipt={"body": forged, "signature": certificate.signature, "kid": certificate.kid},
        keys=keys,
    ).valid


def test_the_person_comes_back_only_as_dropped_messages(workspace: Any, person: Profile) -> None:
    # given
    erasure.erasure_run(request=in_progress(workspace, request_type="erasure"))
    source = profile_services.source_create(workspace=workspace, name="App")

    # when
    outcome = profile_services.ingest_messages(
        source=source,
        messages=[
            msg(anonymous_id="anon-e1", name="Viewed"),
            msg("identify", user_id="u-new", traits={"email": SUBJECT_EMAIL_NORMALIZED}),
        ],
    )

    # then
    assert (outcome.stored, outcome.dropped) == (0, 2)
    assert (Profile.objects.count(), Event.objects.count()) == (0, 0)


def test_a_legal_hold_refuses_and_changes_nothing(workspace: Any, person: Profile) -> None:
    # given
    dsr = in_progress(workspace, request_type="erasure")
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(legal_hold=True)
    dsr.refresh_from_db()
    before = _state()

    # when
    with pytest.raises(erasure.ErasureOnLegalHold) as refused:
        fulfilment.fulfil(request=dsr)

    # then
    assert (refused.value.code, refused.value.status) == ("legal_hold", 409)
    assert _state() == before
    assert DataSubjectRequest.objects.get(pk=dsr.pk).state == "in_progress"
    assert tasks.dsr_fulfil(str(dsr.pk)) == {
        "request": str(dsr.pk),
        "ok": False,
        "code": "legal_hold",
    }


def test_the_cancellation_window_refuses_until_it_closes(workspace: Any, person: Profile) -> None:
    # given
    dsr = in_progress(workspace, request_type="erasure")
    dsr.cancel_until = timezone.now() + timedelta(hours=1)
    before = _state()

    # when
    with pytest.raises(erasure.ErasureCancellable) as refused:
        erasure.erasure_run(request=dsr)

    # then
    assert refused.value.code == "cancellation_window"
    assert _state() == before
    dsr.cancel_until = timezone.now() - timedelta(seconds=1)
    assert erasure.erasure_run(request=dsr).body["subject"] == str(person.pk)


def test_a_failing_store_is_reported_and_the_request_partially_fulfilled(
    workspace: Any, person: Profile, isolated_registry: dict[str, PersonalDataHandler]
) -> None:
    # given
    def broken(profile: Any) -> ErasureReport:
        raise RuntimeError(f"cannot reach {SUBJECT_EMAIL_NORMALIZED}")

    registry.register(
        PersonalDataHandler(
            name="tests.broken", models=(), export=lambda p: {}, erase=broken, erase_order=150
        )
    )
    dsr = in_progress(workspace, request_type="erasure")

    # when
    done = fulfilment.fulfil(request=dsr)

    # then
    assert done.state == "partially_fulfilled"
    stores = {s["store"]: s for s in ErasureCertificate.objects.get().body["stores"]}
    assert stores["tests.broken"]["status"] == "failed"
    assert stores["tests.broken"]["detail"] == "the handler raised RuntimeError"
    assert stores["profiles.profile"]["status"] == "erased"  # the keys went all the same
    assert Profile.objects.count() == 0
    event = done.events.last()
    assert event is not None
    assert "failed: tests.broken" in event.note


def test_fulfilling_an_erasure_closes_it_with_the_certificate(
    workspace: Any, person: Profile
) -> None:
    # given
    dsr = in_progress(workspace, request_type="erasure")

    # when
    result = tasks.dsr_fulfil(str(dsr.pk))

    # then
    assert result == {"request": str(dsr.pk), "ok": True, "state": "fulfilled"}
    dsr.refresh_from_db()
    certificate = ErasureCertificate.objects.get(request=dsr)
    assert dsr.profile_id is None  # the profile is gone; the certificate names it
    assert certificate.body["subject"] == str(person.pk)
    event = dsr.events.last()
    assert (event.action, event.to_state) == ("fulfilled", "fulfilled")
    assert event.note.startswith(f"Erasure certificate {certificate.pk} issued")
    with pytest.raises(erasure.ErasureCertified):
        erasure.erasure_run(request=dsr)


def test_an_erasure_without_a_profile_suppresses_the_contact_and_finds_nothing(
    workspace: Any,
) -> None:
    # given
    dsr = in_progress(workspace, request_type="erasure", contact="nobody@example.com")

    # when
    certificate = erasure.erasure_run(request=dsr)

    # then
    assert {s["status"] for s in certificate.body["stores"]} == {"nothing_found"}
    assert certificate.body["suppressed_identifiers"] == {"email": 1}
    assert certificate.body["subject"] is None
    assert Suppression.objects.get().identifier_type == "email"


def test_the_governance_handler_exports_requests_without_contacts_and_shreds_old_exports(
    workspace: Any, person: Profile
) -> None:
    # given: an earlier access request of the person, with its export
    access = in_progress(workspace, request_type="access")
    archive = export.export_build(request=access)

    # when
    exported = handlers.export_requests(person)
    report = handlers.erase_requests(person)

    # then
    assert exported == {
        "requests": [
            {
                "id": str(access.pk),
                "type": "access",
                "regime": "gdpr",
                "state": "in_progress",
                "received_at": access.received_at.isoformat(),
                "verified_at": access.verified_at.isoformat(),
                "due_at": access.effective_due_at.isoformat(),
                "closed_at": None,
            }
        ]
    }
    assert report.status == ErasureStatus.RETAINED
    assert report.counts == {"requests_kept": 1, "exports_destroyed": 1}
    assert report.detail.startswith("request records are kept as the record of the request")
    assert ExportArchive.objects.count() == 0
    assert DataKey.objects.get(pk=archive.data_key_id).wrapped is None
    assert DataSubjectRequest.objects.get(pk=access.pk).contact == SUBJECT_EMAIL_NORMALIZED


def _set_aside(workspace: Any, monkeypatch: pytest.MonkeyPatch, messages: list[Any]) -> Any:
    """One intake batch of `messages`, set aside after failing MAX_ATTEMPTS drains."""
    from collect import intake
    from collect import tasks as collect_tasks
    from collect.models import IntakeBatch

    monkeypatch.setattr(collect_tasks.intake_drain, "delay", lambda: None)
    source = profile_services.source_create(workspace=workspace, name="Web (buffered)")
    with override_settings(COLLECT_INTAKE_SHARDS=1):
        [batch] = intake.intake_store(source=source, messages=messages)
    IntakeBatch.objects.filter(pk=batch.pk).update(dead=True, attempts=intake.MAX_ATTEMPTS)
    return batch


def test_the_persons_messages_in_a_batch_set_aside_are_erased_with_them(
    workspace: Any, person: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collect.models import IntakeBatch

    # given: a batch that failed five times holds a message of the person (an identifier of an
    # earlier merge, with a sentinel in its traits) and one of somebody else
    sentinel = "Sentinel-Surname-5521"
    batch = _set_aside(
        workspace,
        monkeypatch,
        [
            msg("identify", anonymous_id="anon-e1", traits={"last_name": sentinel}),
            msg(anonymous_id="anon-other", name="Viewed"),
        ],
    )

    # when
    certificate = erasure.erasure_run(request=in_progress(workspace, request_type="erasure"))

    # then: the erasure is complete and the buffer keeps only the other person's message
    [entry] = [s for s in certificate.body["stores"] if s["store"] == "collect.intake"]
    assert entry["status"] == "erased"
    assert entry["counts"]["set_aside_messages_removed"] == 1
    left = IntakeBatch.objects.get(pk=batch.pk)
    assert [m["anonymous_id"] for m in left.payload] == ["anon-other"]
    assert sentinel not in str(left.payload)


def test_an_erasure_without_a_profile_purges_the_contacts_messages_from_the_buffer(
    workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collect.models import IntakeBatch

    # given: the contact never reached a profile; a batch set aside holds an identify with it
    contact = "never.stored@example.com"
    batch = _set_aside(
        workspace,
        monkeypatch,
        [
            msg("identify", anonymous_id="anon-n1", traits={"email": contact}),
            msg(anonymous_id="anon-other", name="Viewed"),
        ],
    )
    dsr = in_progress(workspace, request_type="erasure", contact=contact)

    # when
    certificate = erasure.erasure_run(request=dsr)

    # then
    statuses = {s["store"]: s for s in certificate.body["stores"]}
    assert statuses["collect.intake"]["status"] == "erased"
    assert statuses["collect.intake"]["counts"]["set_aside_messages_removed"] == 1
    assert statuses["profiles.profile"]["status"] == "nothing_found"
    assert [m["anonymous_id"] for m in IntakeBatch.objects.get(pk=batch.pk).payload] == [
        "anon-other"
    ]


def test_a_contact_that_reached_a_profile_after_verification_is_erased(workspace: Any) -> None:
    # given: verified while unknown; the person identified afterwards
    dsr = in_progress(workspace, request_type="erasure", contact="late@example.com")
    assert dsr.profile is None
    source = profile_services.source_create(workspace=workspace, name="Web")
    profile_services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="u-late", traits={"email": "late@example.com"})],
    )

    # when
    certificate = erasure.erasure_run(request=dsr)

    # then
    assert certificate.body["subject"] is not None
    assert (Profile.objects.count(), Identity.objects.count()) == (0, 0)
    assert certificate.body["suppressed_identifiers"] == {"email": 1, "user_id": 1}
