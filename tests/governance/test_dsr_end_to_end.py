"""The acceptance test of data-subject requests, end to end: a subject's sentinel personal data
goes in through the collection and consent APIs; an access request (submitted, verified by the
emailed code, approved, fulfilled) exports every sentinel; an erasure request then leaves no
sentinel in any table, nothing under the subject's keys that can be opened, a signed certificate
naming every registered store, and the subject's identifiers on the suppression list, so events
sent again are dropped and counted."""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
import zipfile
from typing import Any

import pytest
from django.apps import apps
from django.core import mail
from django.db import connection
from django.test import Client

from cdp.core import registry
from cdp.core.crypto import DataKeyShredded
from cdp.core.crypto.envelope import key_id_of, location_aad, open_sealed
from cdp.core.crypto.fields import EncryptedField
from consent import selectors as consent_selectors
from governance import fulfilment
from governance import services as request_services
from governance.models import DataSubjectRequest, ErasureCertificate, ExportArchive
from profiles import services as profile_services
from profiles.models import DataKey, Event, Identity, Profile, SuppressionHit, Trait
from tests.test_no_plaintext_pii import SENTINELS, post_batch, scan_all_tables

SHOP = "https://shop.example.com"
SECOND_ANONYMOUS_ID = "sentinel-anon-6623"


@pytest.fixture
def sentinels(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The shared sentinels, plus the subject's second anonymousId (scanned for too)."""
    monkeypatch.setitem(SENTINELS, "anonymous_id_2", SECOND_ANONYMOUS_ID)
    return SENTINELS


def _batch() -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "messageId": "e2e-1",
            "anonymousId": SENTINELS["anonymous_id"],
            "event": "Order Completed",
            "properties": {
                "address": SENTINELS["property"],
                "total": 42,
                "shipping": {"recipient": {"Phone Number": SENTINELS["nested_phone"]}},
                "products": [{"sku": "sku-9", "name": SENTINELS["product_name"]}],
            },
            "context": {
                "ip": SENTINELS["ip"],
                "page": {
                    "url": f"{SHOP}/checkout?email={SENTINELS['email_in_url']}"
                    f"&first={SENTINELS['query_name']}"
                },
                "device": {
                    "id": SENTINELS["device_id"],
                    "advertisingId": SENTINELS["advertising_id"],
                },
                "location": {"latitude": float(SENTINELS["latitude"])},
            },
        },
        {
            "type": "identify",
            "messageId": "e2e-2",
            "userId": SENTINELS["user_id"],
            "anonymousId": SECOND_ANONYMOUS_ID,
            "traits": {
                "email": SENTINELS["email"],
                "phone": SENTINELS["phone"],
                "first_name": SENTINELS["first_name"],
                "plan": "pro",
            },
            "context": {"ip": SENTINELS["ip"]},
        },
        {
            # the first anonymousId logs in: the two profiles merge
            "type": "identify",
            "messageId": "e2e-3",
            "userId": SENTINELS["user_id"],
            "anonymousId": SENTINELS["anonymous_id"],
        },
    ]


def _consent(source: Any) -> None:
    auth = base64.b64encode(f"{source.write_key}:".encode()).decode()
    response = Client().post(
        "/v1/consent",
        json.dumps(
            {
                "anonymousId": SECOND_ANONYMOUS_ID,
                "decisions": {"analytics": "granted", "advertising": "denied"},
                "jurisdiction": "DE",
                "method": "banner",
            }
        ),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {auth}",
        HTTP_ORIGIN=SHOP,
    )
    assert response.status_code == 200, response.content
    assert response.json()["state"] == {"analytics": "granted", "advertising": "denied"}


def _request(workspace: Any, request_type: str, capture: Any) -> DataSubjectRequest:
    """Submit, verify with the emailed code, approve and fulfil a request of the subject."""
    with capture(execute=True):
        submitted = request_services.request_submit(
            workspace=workspace,
            request_type=request_type,
            regime="gdpr",
            contact_type="email",
            contact=SENTINELS["email"],
        )
    match = re.search(r"verification code is (\d{6})", str(mail.outbox[-1].body))
    assert match is not None
    dsr = request_services.request_verify(request=submitted.request, code=match.group(1))
    assert dsr.state == "verified"
    request_services.request_approve(request=dsr, actor=None)
    with capture(execute=True):
        done = fulfilment.fulfil(request=dsr)
    return done


def _ciphertexts() -> list[tuple[str, str, Any, bytes]]:
    """(table, column, row id, ciphertext) of every encrypted value in the database."""
    found = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedField)]
            if not fields:
                continue
            table = model._meta.db_table
            pk = str(model._meta.pk.column)
            for field in fields:
                column = str(field.column)
                cursor.execute(
                    f"SELECT {connection.ops.quote_name(pk)}, {connection.ops.quote_name(column)} "  # noqa: S608
                    f"FROM {connection.ops.quote_name(table)} "
                    f"WHERE {connection.ops.quote_name(column)} IS NOT NULL"
                )
                for pk_value, raw in cursor.fetchall():
                    row_id = (
                        pk_value if isinstance(pk_value, uuid.UUID) else uuid.UUID(str(pk_value))
                    )
                    found.append((table, column, row_id, bytes(raw)))
    return found


def _under(keys: set[uuid.UUID]) -> list[tuple[str, str, Any, bytes]]:
    return [c for c in _ciphertexts() if key_id_of(c[3]) in keys]


def _published_keys() -> list[dict[str, Any]]:
    keys = Client().get("/.well-known/cdp-receipt-keys.json", {"workspace": "acme"}).json()
    return keys["keys"] if isinstance(keys, dict) else keys


def test_access_then_erasure_of_a_subject_end_to_end(
    client: Any, workspace: Any, sentinels: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    # given: the subject's data collected, and their consent
    source = profile_services.source_create(workspace=workspace, name="Web", allowed_origins=[SHOP])
    post_batch(client, source, _batch())
    _consent(source)
    subject = Profile.objects.get(status="active")
    assert Profile.objects.filter(merged_into=subject).count() == 1
    keys = set(DataKey.objects.filter(profile=subject).values_list("pk", flat=True))
    assert len(keys) == 2
    # user, 2 anon, email, phone, device, advertising
    assert Identity.objects.filter(profile=subject).count() == 7

    # when: an access request
    access = _request(workspace, "access", django_capture_on_commit_callbacks)

    # then: the export opens and holds every sentinel, in data.json and in index.html
    assert access.state == "fulfilled"
    assert access.profile_id == subject.pk
    link = re.search(r"(/api/v1/requests/\S+/download\?token=\S+)", str(mail.outbox[-1].body))
    assert link is not None
    download = Client().get(link.group(1))
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.getvalue())) as archive:
        data_json = archive.read("data.json").decode()
        index_html = archive.read("index.html").decode()
    data = json.loads(data_json)
    assert data["$schema"].endswith("/api/v1/requests/export-schema.json")
    assert sorted(data["stores"]) == sorted(h.name for h in registry.handlers())
    assert data["stores"]["consent.ledger"]["consent_state"] == {
        "analytics": "granted",
        "advertising": "denied",
    }
    for name, value in sentinels.items():
        assert value.lower() in data_json.lower(), name
        assert value.lower() in index_html.lower(), name
    # what ciphertexts the subject's keys sealed, as a copy (a backup) would keep them
    sealed_before = _under(keys)
    assert {table for table, *_ in sealed_before} >= {
        "profiles_identity",
        "profiles_trait",
        "profiles_event",
    }

    # when: an erasure request
    erased = _request(workspace, "erasure", django_capture_on_commit_callbacks)

    # then: no table holds a sentinel in plaintext...
    assert erased.state == "fulfilled"
    assert scan_all_tables() == []
    assert (Profile.objects.count(), Identity.objects.count(), Trait.objects.count()) == (0, 0, 0)
    assert Event.objects.count() == 0
    # ...the subject's keys are destroyed, and nothing sealed under them opens any more, neither
    # what is still in the database (nothing should be) nor the copies taken before
    assert set(DataKey.objects.filter(pk__in=keys).values_list("wrapped", flat=True)) == {None}
    for table, column, row_id, raw in _under(keys) + sealed_before:
        with pytest.raises(DataKeyShredded):
            open_sealed(raw, location_aad(table, column, row_id))
    assert _under(keys) == []
    # ...the export of the access request is shredded with them, its link dead
    assert ExportArchive.objects.count() == 0
    assert Client().get(link.group(1)).status_code == 404
    # ...and the certificate names every registered store and verifies with the published key
    certificate = ErasureCertificate.objects.get(request=erased)
    body = certificate.body
    assert [s["store"] for s in body["stores"]] == [h.name for h in registry.handlers()]
    assert {s["status"] for s in body["stores"]} <= {"erased", "nothing_found", "retained"}
    assert sorted(body["data_keys_destroyed"]) == sorted(str(k) for k in keys)
    assert body["suppressed_identifiers"] == {
        "advertising_id": 1,
        "anonymous_id": 2,
        "device_id": 1,
        "email": 1,
        "phone": 1,
        "user_id": 1,
    }
    assert body["subject"] == str(subject.pk)
    check = consent_selectors.receipt_verify(
        receipt={"body": body, "signature": certificate.signature, "kid": certificate.kid},
        keys=_published_keys(),
    )
    assert check.valid, check.reason

    # when: the subject's events are sent again, as retries and as new events
    post_batch(client, source, _batch())
    post_batch(
        client,
        source,
        [
            {"type": "track", "anonymousId": SENTINELS["anonymous_id"], "event": "Viewed"},
            {"type": "track", "anonymousId": SECOND_ANONYMOUS_ID, "event": "Viewed"},
            {"type": "identify", "userId": "someone-new", "traits": {"email": SENTINELS["email"]}},
        ],
    )

    # then: every one is dropped and counted, nothing is stored
    assert (Profile.objects.count(), Identity.objects.count(), Event.objects.count()) == (0, 0, 0)
    assert sum(SuppressionHit.objects.values_list("count", flat=True)) == 6
    assert scan_all_tables() == []
