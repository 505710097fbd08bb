"""The activation personal-data handler: access exports list memberships and their history,
computed trait values, deliveries with what allowed them, and removals; an erasure queues a
removal to each destination that received the person, deletes the person's rows, and the
erasure certificate lists every destination with its status."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from activation import handlers, services
from activation.enums import RemovalReason, RemovalStatus
from activation.models import (
    AudienceMembership,
    ComputedTrait,
    ComputedTraitValue,
    Delivery,
    MembershipChange,
    Removal,
    SyncRun,
)
from cdp.core import registry
from consent.models import ConsentState
from governance import erasure
from profiles import selectors
from profiles.models import DataKey
from tests.activation.sync_helpers import (
    Person,
    Receiver,
    audience,
    decide,
    enter,
    file_destination,
    grant,
    leave,
    person,
    run_sync,
    webhook,
)
from tests.governance.request_helpers import SUBJECT_EMAIL, in_progress

pytestmark = pytest.mark.django_db


def _sent_everywhere(workspace: Any, receiver: Receiver, capture: Any) -> tuple[Person, Any, Any]:
    """The request's subject, sent to a webhook and to Google Customer Match."""
    subject = person(workspace, user_id="subject-1", email=SUBJECT_EMAIL)
    grant(workspace, subject, "advertising")
    hook = webhook(workspace, receiver.url)
    google = file_destination(
        workspace, "google_customer_match", name="Google", data={"identifiers": ["email"]}
    )
    aud = audience(workspace)
    enter(aud, subject)
    for destination in (hook, google):
        sync = services.sync_create(
            audience=aud, destination=destination, mode="full", interval_minutes=0
        )
        run_sync(sync, capture)
    return subject, hook, google


def test_the_handler_runs_before_the_profile_keys_are_destroyed() -> None:
    # given / when
    order = {h.name: h.erase_order for h in registry.handlers()}

    # then
    assert order["activation"] < min(v for k, v in order.items() if k.startswith("profiles."))
    assert set(handlers.ACTIVATION_HANDLER.models) == {
        "activation.AudienceMembership",
        "activation.MembershipChange",
        "activation.ComputedTraitValue",
        "activation.Delivery",
        "activation.Removal",
        "activation.SyncRecheck",
    }


def test_the_export_lists_memberships_history_values_deliveries_and_removals(
    workspace: Any, receiver: Receiver, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: sent to two destinations, then left one audience, with a computed value
    subject, hook, _google = _sent_everywhere(
        workspace, receiver, django_capture_on_commit_callbacks
    )
    other = audience(workspace, "browsers")
    enter(other, subject)
    leave(other, subject)
    trait = ComputedTrait.objects.create(
        workspace=workspace, key="orders", name="Orders", kind="count"
    )
    ComputedTraitValue.objects.create(
        trait=trait, profile_id=subject.profile_id, value=3, number=3, updated_at=timezone.now()
    )
    granted = ConsentState.objects.get(profile_id=subject.profile_id, purpose__key="advertising")
    decide(workspace, subject, advertising="withdrawn")

    # when
    exported = handlers.export_activation(
        selectors.profile_get(workspace=workspace, profile_id=subject.profile_id)
    )

    # then
    assert [m["audience"] for m in exported["audience_memberships"]] == ["buyers"]
    assert [(h["audience"], h["change"]) for h in exported["audience_history"]] == [
        ("buyers", "entered"),
        ("browsers", "entered"),
        ("browsers", "exited"),
    ]
    assert [(c["trait"], c["value"]) for c in exported["computed_traits"]] == [("orders", 3)]
    deliveries = exported["deliveries"]
    assert sorted((d["destination"], d["audience"], d["action"]) for d in deliveries) == [
        ("Google", "buyers", "add"),
        (hook.name, "buyers", "add"),
    ]
    assert [d["basis"] for d in deliveries] == [{"advertising": str(granted.record_id)}] * 2
    assert all(d["delivered_at"] and len(d["payload_sha256"]) == 64 for d in deliveries)
    assert sorted((r["destination"], r["reason"], r["status"]) for r in exported["removals"]) == [
        ("Google", "consent_withdrawn", "queued"),
        (hook.name, "consent_withdrawn", "queued"),
    ]
    json.dumps(exported)  # JSON-serializable as the export needs
    assert SUBJECT_EMAIL.lower() not in json.dumps(exported).lower()


def test_erasure_queues_removals_and_the_certificate_lists_each_destination(
    workspace: Any, receiver: Receiver, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    subject, hook, google = _sent_everywhere(
        workspace, receiver, django_capture_on_commit_callbacks
    )
    dsr = in_progress(workspace, request_type="erasure")
    runs = SyncRun.objects.count()

    # when: the erasure (its removals leave once it commits)
    with django_capture_on_commit_callbacks(execute=True):
        certificate = erasure.erasure_run(request=dsr)

    # then: the certificate names both destinations, each with its queued deletion request
    body = certificate.body
    destinations = sorted(body["destinations"], key=lambda d: d["kind"])
    assert [(d["destination"], d["kind"], d["status"], d["requests"]) for d in destinations] == [
        ("Google", "google_customer_match", "queued", 1),
        (hook.name, "webhook", "queued", 1),
    ]
    assert all(d["handler"] == "activation" for d in destinations)
    assert "destinations_note" not in body
    store = next(s for s in body["stores"] if s["store"] == "activation")
    assert store["status"] == "erased"
    assert store["counts"]["deliveries"] == 2
    assert store["counts"]["removals_queued"] == 2
    # ...the person's rows are gone; the removals stay, naming no one
    assert not Delivery.objects.exists()
    assert not AudienceMembership.objects.exists()
    assert not MembershipChange.objects.exists()
    assert SyncRun.objects.count() == runs  # the runs' counts remain, naming no one
    sent = list(Removal.objects.order_by("destination__name"))
    assert [(r.reason, r.profile_id) for r in sent] == [(RemovalReason.ERASURE, None)] * 2
    # ...and were sent after the commit: the webhook got a signed remove, Google a file
    assert [r.status for r in sent] == [RemovalStatus.SENT] * 2
    remove = json.loads(receiver.hits[-1].body)
    assert (remove["type"], remove["reason"]) == ("remove", "erasure")
    assert remove["records"] == [
        {
            "profileId": str(subject.profile_id),
            "userId": "subject-1",
            "email": SUBJECT_EMAIL.lower(),
        }
    ]
    (removal_file,) = list(export_dir.rglob("*-remove-*"))
    rows = list(csv.reader(io.StringIO(removal_file.read_text())))
    assert rows[1][0] == hashlib.sha256(SUBJECT_EMAIL.lower().encode()).hexdigest()
    # ...each removal's key destroyed once sent
    assert set(
        DataKey.objects.filter(pk__in=[r.data_key_id for r in sent]).values_list(
            "wrapped", flat=True
        )
    ) == {None}
    assert {d["reference"] for d in destinations} == {str(r.pk) for r in sent}
    assert {d["detail"] for d in destinations} == {
        f"destination {google.pk}; reasons: erasure",
        f"destination {hook.pk}; reasons: erasure",
    }


def test_erasure_reports_a_removal_pending_already_without_queueing_another(
    workspace: Any, receiver: Receiver, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a withdrawal queued removals before the erasure
    subject, _hook, _google = _sent_everywhere(
        workspace, receiver, django_capture_on_commit_callbacks
    )
    decide(workspace, subject, advertising="withdrawn")
    assert Removal.objects.count() == 2

    # when
    certificate = erasure.erasure_run(request=in_progress(workspace, request_type="erasure"))

    # then
    assert Removal.objects.count() == 2
    assert {d["status"] for d in certificate.body["destinations"]} == {"queued"}
    assert all("consent_withdrawn" in d["detail"] for d in certificate.body["destinations"])


def test_erasure_of_someone_never_sent_lists_no_destination(workspace: Any) -> None:
    # given
    person(workspace, user_id="subject-1", email=SUBJECT_EMAIL)

    # when
    certificate = erasure.erasure_run(request=in_progress(workspace, request_type="erasure"))

    # then
    assert certificate.body["destinations"] == []
    assert "deletion request" in certificate.body["destinations_note"]
    store = next(s for s in certificate.body["stores"] if s["store"] == "activation")
    assert store["status"] == "nothing_found"
