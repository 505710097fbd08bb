"""The consent API (`/v1/consent...`) and the public `/.well-known/` resources, end to end
through the ledger, the receipts and the profiles the consents resolve to."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from cdp.core.crypto import blind_index
from cdp.core.exceptions import InvalidInput
from consent import selectors, services
from consent.enums import LegalBasis
from consent.models import (
    ConsentRecord,
    ConsentState,
    NoticeVersion,
    Purpose,
    Receipt,
    SigningKey,
)
from profiles import services as profile_services
from profiles.models import Event, Profile
from tests.consent.conftest import SHOP
from tests.consent.test_tcf import TC_ANALYTICS_ONLY, TC_V1
from tests.profiles.factories import WorkspaceFactory

ELSEWHERE = "https://evil.example.net"
BANNER_TEXT = (
    "Acme Store and its partners use cookies and similar technologies for the purposes below. "
    "You can accept, reject or choose, and change your mind at any time."
)


@pytest.fixture
def other_source(other_workspace: Any) -> Any:
    return profile_services.source_create(
        workspace=other_workspace,
        name="Globex website",
        allowed_origins=["https://globex.example.org"],
    )


def basic(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def client_for(source: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(source.write_key))
    return client


@pytest.fixture
def banner(source: Any) -> APIClient:
    """A client that sends the write key as HTTP Basic, as the banner script does."""
    return client_for(source)


def post(client: APIClient, body: Any, content_type: str = "application/json", **extra: Any) -> Any:
    return client.post("/v1/consent", json.dumps(body), content_type=content_type, **extra)


def counts() -> tuple[int, int, int, int, int]:
    return (
        ConsentRecord.objects.count(),
        ConsentState.objects.count(),
        Receipt.objects.count(),
        Event.objects.count(),
        Profile.objects.count(),
    )


NOTHING = (0, 0, 0, 0, 0)


# --- config ----------------------------------------------------------------------------------


def test_config_lists_purposes_with_their_defaults_for_the_jurisdiction_and_the_notice(
    banner: APIClient,
) -> None:
    # when
    response = banner.get("/v1/consent/config?jurisdiction=EU")
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["workspace"], body["jurisdiction"], body["gpc"]) == ("Acme Store", "EU", False)
    assert [(p["key"], p["default"], p["required"]) for p in body["purposes"]] == [
        ("necessary", "opt_out", True),
        ("analytics", "opt_in", False),
        ("personalization", "opt_in", False),
        ("marketing_email", "opt_in", False),
        ("advertising", "opt_in", False),
        ("profiling", "opt_in", False),
    ]
    advertising = body["purposes"][4]
    assert advertising == {
        "key": "advertising",
        "name": "Advertising (sale or sharing)",
        "description": "Sharing data with advertising partners to show you relevant ads.",
        "legal_basis": "consent",
        "default": "opt_in",
        "sale_or_share": True,
        "required": False,
        "consent_validity_days": 395,
    }
    assert body["notice"] == {
        "key": "banner",
        "version": 1,
        "language": "en",
        "text": BANNER_TEXT,
        "text_hash": hashlib.sha256(BANNER_TEXT.encode()).hexdigest(),
        "policy_url": "",
    }


def test_config_takes_the_jurisdiction_from_query_then_header_then_default_and_reports_gpc(
    banner: APIClient,
) -> None:
    # when
    california = banner.get("/v1/consent/config", HTTP_CDP_JURISDICTION="US-CA")
    unknown = banner.get("/v1/consent/config", HTTP_SEC_GPC="1")
    query_wins = banner.get("/v1/consent/config?jurisdiction=uk", HTTP_CDP_JURISDICTION="US-CA")
    bad_header = banner.get("/v1/consent/config", HTTP_CDP_JURISDICTION="not a region")
    # then
    assert california.json()["jurisdiction"] == "US-CA"
    assert {p["key"]: p["default"] for p in california.json()["purposes"]}["analytics"] == (
        "opt_out"
    )
    assert (unknown.json()["jurisdiction"], unknown.json()["gpc"]) == ("default", True)
    assert query_wins.json()["jurisdiction"] == "UK"
    assert {p["key"]: p["default"] for p in query_wins.json()["purposes"]}["analytics"] == "opt_in"
    assert (bad_header.status_code, bad_header.json()["jurisdiction"]) == (200, "default")


def test_config_is_cacheable_and_answers_304_to_its_etag(banner: APIClient) -> None:
    # given
    first = banner.get("/v1/consent/config?jurisdiction=DE")
    # when
    again = banner.get("/v1/consent/config?jurisdiction=DE", HTTP_IF_NONE_MATCH=first["ETag"])
    other = banner.get("/v1/consent/config?jurisdiction=BR", HTTP_IF_NONE_MATCH=first["ETag"])
    # then
    assert first["Cache-Control"] == "public, max-age=60"
    assert first["ETag"].startswith('"') and len(first["ETag"]) == 34
    vary = {v.strip() for v in first["Vary"].split(",")}
    assert {"Origin", "Authorization", "CDP-Jurisdiction", "Sec-GPC"} <= vary
    assert (again.status_code, again.content, again["ETag"]) == (304, b"", first["ETag"])
    assert other.status_code == 200


def test_config_carries_the_days_the_server_holds_a_grant_of_each_purpose(
    banner: APIClient, workspace: Any
) -> None:
    # given: the seeded purposes; then a steward shortens analytics' validity, removes
    # profiling's, and moves personalization to legitimate interests (its validity stays set)
    first = banner.get("/v1/consent/config")
    purposes = Purpose.objects.filter(workspace=workspace)
    purposes.filter(key="analytics").update(consent_validity_days=30)
    purposes.filter(key="profiling").update(consent_validity_days=None)
    purposes.filter(key="personalization").update(legal_basis=LegalBasis.LEGITIMATE_INTERESTS)
    # when
    response = banner.get("/v1/consent/config", HTTP_IF_NONE_MATCH=first["ETag"])
    # then: the days the expiry sweep applies, null where grants do not expire (no consent
    # basis, or no validity); a changed validity is a changed answer, not a 304
    assert {p["key"]: p["consent_validity_days"] for p in first.json()["purposes"]} == {
        "necessary": None,
        "analytics": 395,
        "personalization": 395,
        "marketing_email": 395,
        "advertising": 395,
        "profiling": 395,
    }
    assert response.status_code == 200
    assert response["ETag"] != first["ETag"]
    assert {p["key"]: p["consent_validity_days"] for p in response.json()["purposes"]} == {
        "necessary": None,
        "analytics": 30,
        "personalization": None,
        "marketing_email": 395,
        "advertising": 395,
        "profiling": None,
    }


def test_config_takes_the_write_key_from_the_query_for_a_plain_get(source: Any) -> None:
    # when
    response = APIClient().get(f"/v1/consent/config?writeKey={source.write_key}", HTTP_ORIGIN=SHOP)
    # then
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP


@pytest.mark.parametrize("jurisdiction", ["Germany", "D", "US-CALIF", "de;drop"])
def test_config_refuses_a_malformed_jurisdiction(banner: APIClient, jurisdiction: str) -> None:
    # when
    response = banner.get("/v1/consent/config", {"jurisdiction": jurisdiction})
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["message"].startswith("jurisdiction: ")


# --- POST /v1/consent -------------------------------------------------------------------------


def test_post_records_the_consent_and_names_the_receipt_it_issued(
    banner: APIClient, source: Any
) -> None:
    # given: a banner posting as text/plain (no preflight), as Klaro and beacons do
    body = {
        "anonymousId": "anon-1",
        "decisions": {"analytics": True, "advertising": "denied", "marketing_email": False},
        "noticeVersion": 1,
        "jurisdiction": "DE",
        "method": "banner",
        "timestamp": "2026-11-28T10:00:00Z",
        "context": {"page": {"url": f"{SHOP}/cart"}, "userAgent": "Mozilla/5.0 (test)"},
    }
    # when
    response = post(banner, body, content_type="text/plain", HTTP_ORIGIN=SHOP)
    # then
    assert response.status_code == 200
    answer = response.json()
    receipt = Receipt.objects.get(pk=answer["receipt"])
    assert answer == {
        "success": True,
        "receipt": str(receipt.pk),
        "receipts": [str(receipt.pk)],
        "state": {"analytics": "granted", "marketing_email": "denied", "advertising": "denied"},
        "needsReconsent": [],
    }
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert response["Cache-Control"] == "private, no-store"
    records = list(ConsentRecord.objects.order_by("server_time", "id").select_related("purpose"))
    assert [(r.purpose.key, r.decision) for r in records] == [
        ("advertising", "denied"),
        ("analytics", "granted"),
        ("marketing_email", "denied"),
    ]
    first = records[0]
    assert (first.method, first.jurisdiction, first.source_id) == ("banner", "DE", source.pk)
    assert first.notice_version == NoticeVersion.objects.get(version=1)
    assert first.client_time is not None
    assert first.client_time.isoformat() == "2026-11-28T10:00:00+00:00"
    assert sorted(first.proof) == ["ip", "page_url", "user_agent"]
    assert (first.subject_type, bytes(first.subject_index)) == (
        "anonymous_id",
        blind_index(source.workspace_id, "anonymous_id", "anon-1"),
    )
    assert receipt.records == [str(r.pk) for r in records]
    assert receipt.body["notice"]["version"] == 1
    # the profile was resolved by one ingested track event
    event = Event.objects.get()
    assert (event.type, event.name) == ("track", "Consent Preference Updated")
    assert first.profile_id == event.profile_id


def test_post_keys_the_subject_by_user_id_when_given(banner: APIClient, source: Any) -> None:
    # when
    response = post(
        banner,
        {"anonymousId": "anon-2", "userId": " u-2 ", "decisions": {"analytics": "granted"}},
    )
    # then
    assert response.status_code == 200
    record = ConsentRecord.objects.get()
    assert (record.subject_type, bytes(record.subject_index)) == (
        "user_id",
        blind_index(source.workspace_id, "user_id", "u-2"),
    )
    assert record.method == "api"


def test_post_with_a_tc_string_derives_decisions_and_explicit_ones_win(
    banner: APIClient,
) -> None:
    # given: a TC string consenting to TCF purposes 1, 8 and 9 only
    body = {
        "anonymousId": "anon-3",
        "decisions": {"advertising": "granted"},
        "tcString": TC_ANALYTICS_ONLY,
        "method": "banner",
    }
    # when
    response = post(banner, body)
    # then
    assert response.status_code == 200
    assert response.json()["state"] == {
        "analytics": "granted",
        "personalization": "denied",
        "advertising": "granted",
        "profiling": "denied",
    }
    records = ConsentRecord.objects.select_related("purpose")
    assert {r.purpose.key: r.method for r in records} == {
        "advertising": "banner",
        "analytics": "tcf",
        "personalization": "tcf",
        "profiling": "tcf",
    }
    assert {r.signals["tc_string"] for r in records} == {TC_ANALYTICS_ONLY}
    # one change, one receipt covering all four records
    receipt = Receipt.objects.get()
    assert str(receipt.pk) == response.json()["receipt"]
    assert sorted(receipt.records) == sorted(str(r.pk) for r in records)


def test_a_receipt_of_explicit_and_tcf_records_names_each_records_method(
    banner: APIClient,
) -> None:
    # given: explicit choices from a banner and the decisions its TC string implies
    body = {
        "anonymousId": "anon-3m",
        "decisions": {"advertising": "granted", "necessary": "granted"},
        "tcString": TC_ANALYTICS_ONLY,
        "method": "banner",
    }
    # when
    response = post(banner, body)
    # then: one receipt, each purpose with the method of its own record
    assert response.status_code == 200
    receipt = Receipt.objects.get(pk=response.json()["receipt"])
    purposes = receipt.body["services"][0]["purposes"]
    assert [(p["purpose"], p["collectionMethod"]) for p in purposes] == [
        ("advertising", "banner"),
        ("necessary", "banner"),
        ("analytics", "tcf"),
        ("personalization", "tcf"),
        ("profiling", "tcf"),
    ]
    assert receipt.body["collectionMethods"] == ["banner", "tcf"]
    # kept for readers of earlier receipts: the first record's, the explicit choice's
    assert receipt.body["collectionMethod"] == "banner"
    # and the receipt as the API hands it out still verifies
    shown = banner.get(f"/v1/consent/receipts/{receipt.pk}", {"anonymousId": "anon-3m"}).json()
    assert shown["body"] == receipt.body
    check = selectors.receipt_verify(receipt=shown, keys=selectors.receipt_public_keys())
    assert check.valid is True


@pytest.mark.parametrize(
    ("headers", "flag"),
    [({"HTTP_SEC_GPC": "1"}, None), ({}, True)],
    ids=["Sec-GPC header", "gpc in body"],
)
def test_gpc_opts_out_of_sale_and_share_after_the_decisions_are_recorded(
    banner: APIClient, headers: dict[str, str], flag: bool | None
) -> None:
    # given
    body: dict[str, Any] = {"anonymousId": "anon-4", "decisions": {"advertising": "granted"}}
    if flag is not None:
        body["gpc"] = flag
    # when
    response = post(banner, body, **headers)
    # then
    assert response.status_code == 200
    answer = response.json()
    assert answer["state"] == {"advertising": "denied"}
    assert answer["needsReconsent"] == ["advertising"]
    assert len(answer["receipts"]) == 2 and answer["receipt"] == answer["receipts"][0]
    records = ConsentRecord.objects.order_by("server_time", "id")
    assert [(r.decision, r.method, r.signals["gpc"]) for r in records] == [
        ("granted", "api", True),
        ("denied", "gpc", True),
    ]


@pytest.mark.parametrize("refusal", ["denied", False], ids=["denied", "false"])
def test_a_refusal_of_a_granted_purpose_is_recorded_as_a_withdrawal(
    banner: APIClient, refusal: Any
) -> None:
    # given: analytics granted, profiling never decided
    post(banner, {"anonymousId": "anon-w", "decisions": {"analytics": "granted"}})
    # when: both refused
    response = post(
        banner, {"anonymousId": "anon-w", "decisions": {"analytics": refusal, "profiling": refusal}}
    )
    # then: taking back the grant is a withdrawal, as the preference centre and the events'
    # preferences record it; refusing what was never granted stays a denial
    assert response.status_code == 200
    assert response.json()["state"] == {"analytics": "withdrawn", "profiling": "denied"}
    records = ConsentRecord.objects.select_related("purpose").order_by("server_time", "id")
    assert [(r.purpose.key, r.decision) for r in records] == [
        ("analytics", "granted"),
        ("analytics", "withdrawn"),
        ("profiling", "denied"),
    ]
    receipt = Receipt.objects.get(pk=response.json()["receipt"])
    statuses = {p["purpose"]: p["consentStatus"] for p in receipt.body["services"][0]["purposes"]}
    assert statuses == {"analytics": "withdrawn", "profiling": "denied"}


def test_a_tc_string_refusing_a_granted_purpose_records_a_withdrawal(banner: APIClient) -> None:
    # given: personalization granted on its own
    post(banner, {"anonymousId": "anon-tw", "decisions": {"personalization": "granted"}})
    # when: a TC string without consent to TCF purposes 5 and 6
    response = post(banner, {"anonymousId": "anon-tw", "tcString": TC_ANALYTICS_ONLY})
    # then
    assert response.status_code == 200
    assert response.json()["state"]["personalization"] == "withdrawn"
    assert list(
        ConsentRecord.objects.filter(purpose__key="personalization")
        .order_by("server_time", "id")
        .values_list("decision", "method")
    ) == [("granted", "api"), ("withdrawn", "tcf")]


def test_get_answers_the_current_consent_of_an_identity(banner: APIClient) -> None:
    # given
    post(banner, {"anonymousId": "anon-5", "decisions": {"analytics": True, "profiling": False}})
    post(banner, {"anonymousId": "anon-5", "decisions": {"analytics": "withdrawn"}})
    # when
    known = banner.get("/v1/consent", {"anonymousId": "anon-5"})
    unknown = banner.get("/v1/consent", {"anonymousId": "nobody"})
    # then
    assert known.status_code == 200
    assert known.json() == {
        "state": {"analytics": "withdrawn", "profiling": "denied"},
        "needsReconsent": [],
    }
    assert known["Cache-Control"] == "private, no-store"
    assert unknown.status_code == 200
    assert unknown.json() == {"state": {}, "needsReconsent": []}


def test_get_by_a_user_id_alone_is_refused(banner: APIClient) -> None:
    # given: a user's choices, recorded from their own browser
    post(banner, {"anonymousId": "anon-ada", "userId": "ada", "decisions": {"profiling": True}})
    # when: someone who knows (or guesses) the userId asks with the public write key
    response = banner.get("/v1/consent", {"userId": "ada"})
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "anonymous_id_required"
    assert "profiling" not in response.content.decode()


def test_a_post_answers_only_the_purposes_it_decided(banner: APIClient) -> None:
    # given: ada's choices, made in her own browser
    post(
        banner,
        {"anonymousId": "anon-ada", "userId": "ada", "decisions": {"profiling": True}},
    )
    # when: someone else posts a decision for her userId
    response = post(
        banner, {"anonymousId": "anon-eve", "userId": "ada", "decisions": {"analytics": False}}
    )
    # then: the answer is the state of what was decided, not ada's other choices
    assert response.status_code == 200
    assert response.json()["state"] == {"analytics": "denied"}
    assert "profiling" not in response.content.decode()


def test_get_answers_for_the_browser_not_for_a_user_id_it_names(banner: APIClient) -> None:
    # given: ada's browser, and another browser that named no one
    post(banner, {"anonymousId": "anon-ada", "userId": "ada", "decisions": {"profiling": True}})
    post(banner, {"anonymousId": "anon-eve", "decisions": {"analytics": False}})
    # when
    linked = banner.get("/v1/consent", {"anonymousId": "anon-ada", "userId": "ada"})
    other = banner.get("/v1/consent", {"anonymousId": "anon-eve", "userId": "ada"})
    # then: ada's own browser reads her choices; the other browser only its own
    assert linked.json()["state"] == {"profiling": "granted"}
    assert other.status_code == 200
    assert other.json()["state"] == {"analytics": "denied"}


def test_get_without_an_identity_is_refused(banner: APIClient) -> None:
    # when
    response = banner.get("/v1/consent")
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "missing_identity"


# --- receipts ----------------------------------------------------------------------------------


def test_a_receipt_is_shown_to_its_subject_and_verifies_against_the_published_keys(
    banner: APIClient,
) -> None:
    # given
    posted = post(banner, {"anonymousId": "anon-6", "decisions": {"analytics": "granted"}})
    receipt_id = posted.json()["receipt"]
    # when
    response = banner.get(f"/v1/consent/receipts/{receipt_id}", {"anonymousId": "anon-6"})
    keys = APIClient().get("/.well-known/cdp-receipt-keys.json", {"workspace": "acme"})
    # then
    assert response.status_code == 200
    receipt = response.json()
    assert sorted(receipt) == ["alg", "body", "id", "kid", "signature"]
    assert (receipt["id"], receipt["alg"]) == (receipt_id, "EdDSA")
    assert receipt["body"]["receiptId"] == receipt_id
    assert receipt["body"]["services"][0]["purposes"][0]["consentStatus"] == "granted"
    check = selectors.receipt_verify(receipt=receipt, keys=keys.json()["keys"])
    assert (check.valid, check.kid) == (True, receipt["kid"])


@pytest.mark.parametrize(
    "query",
    [{"anonymousId": "someone-else"}, {"userId": "anon-7"}, {}],
    ids=["other-identity", "same-value-other-type", "no-identity"],
)
def test_a_receipt_is_not_found_for_anyone_else(banner: APIClient, query: dict[str, str]) -> None:
    # given
    posted = post(banner, {"anonymousId": "anon-7", "decisions": {"analytics": "granted"}})
    # when
    response = banner.get(f"/v1/consent/receipts/{posted.json()['receipt']}", query)
    # then
    if not query:
        assert response.status_code == 400
        assert response.json()["code"] == "missing_identity"
        return
    assert response.status_code == 404
    assert response.json() == {"code": "receipt_not_found", "message": "No such receipt."}


@pytest.mark.parametrize("receipt_id", ["7f3c0e4e-1d2b-4c55-9a3e-6b1f9b0c2d11", "not-a-uuid"])
def test_an_unknown_receipt_answers_exactly_like_a_foreign_one(
    banner: APIClient, receipt_id: str
) -> None:
    # when
    response = banner.get(f"/v1/consent/receipts/{receipt_id}", {"anonymousId": "anon-8"})
    # then
    assert response.status_code == 404
    assert response.json() == {"code": "receipt_not_found", "message": "No such receipt."}


# --- well-known --------------------------------------------------------------------------------


def test_receipt_keys_are_public_for_the_workspace_named(
    banner: APIClient, other_source: Any
) -> None:
    # given: receipts issued in two workspaces
    post(banner, {"anonymousId": "anon-9", "decisions": {"analytics": "granted"}})
    post(client_for(other_source), {"anonymousId": "anon-9", "decisions": {"analytics": True}})
    # when
    response = APIClient().get("/.well-known/cdp-receipt-keys.json", {"workspace": "acme"})
    # then: that workspace's keys, and no other's
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    keys = response.json()["keys"]
    assert [k["workspace"] for k in keys] == ["acme"]
    assert {(k["kty"], k["crv"]) for k in keys} == {("OKP", "Ed25519")}
    assert [k["kid"] for k in keys] == list(
        Receipt.objects.filter(workspace__slug="acme").values_list("kid", flat=True)
    )


@pytest.mark.parametrize("query", [{}, {"workspace": ""}, {"workspace": "not a slug!"}])
def test_receipt_keys_are_not_listed_for_every_workspace(
    banner: APIClient, other_source: Any, query: dict[str, str]
) -> None:
    # given: receipts issued in two workspaces
    post(banner, {"anonymousId": "anon-10", "decisions": {"analytics": "granted"}})
    post(client_for(other_source), {"anonymousId": "anon-10", "decisions": {"analytics": True}})
    # when: no workspace named
    response = APIClient().get("/.well-known/cdp-receipt-keys.json", query)
    # then: refused, naming no tenant
    assert response.status_code == 400
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response.json() == {
        "code": "workspace_required",
        "message": "Name the workspace whose keys to list, ?workspace=<slug> as the receipt's "
        "or certificate's body names it, or the key, ?kid=<kid> as the receipt names it.",
    }
    assert b"acme" not in response.content and b"globex" not in response.content


def test_receipt_keys_of_an_unknown_workspace_are_an_empty_list(
    banner: APIClient, source: Any
) -> None:
    # given: a workspace with a key, and one that has signed nothing yet
    post(banner, {"anonymousId": "anon-11", "decisions": {"analytics": "granted"}})
    WorkspaceFactory(slug="initech", name="Initech")
    # when
    unknown = APIClient().get("/.well-known/cdp-receipt-keys.json", {"workspace": "nobody"})
    keyless = APIClient().get("/.well-known/cdp-receipt-keys.json", {"workspace": "initech"})
    # then: alike, so the answer does not tell whether a workspace exists
    assert (unknown.status_code, unknown.json()) == (200, {"keys": []})
    assert (keyless.status_code, keyless.content) == (200, unknown.content)


def test_a_receipt_key_is_answered_by_its_kid_alone_retired_or_not(
    banner: APIClient, other_source: Any
) -> None:
    # given: receipts of two workspaces; acme's first key then retired for a new one
    post(banner, {"anonymousId": "anon-13", "decisions": {"analytics": "granted"}})
    post(client_for(other_source), {"anonymousId": "anon-13", "decisions": {"analytics": True}})
    old_kid = Receipt.objects.get(workspace__slug="acme").kid
    SigningKey.objects.filter(kid=old_kid).update(retired_at=timezone.now())
    post(banner, {"anonymousId": "anon-13", "decisions": {"analytics": "denied"}})
    listed = APIClient().get("/.well-known/cdp-receipt-keys.json", {"workspace": "acme"}).json()
    # when: the kid of a receipt, as the holder of one that names no workspace has it
    response = APIClient().get("/.well-known/cdp-receipt-keys.json", {"kid": old_kid})
    # then: that key alone, as the workspace's list has it (same shape), public and cacheable
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Cache-Control"] == "public, max-age=300"
    [old_key, new_key] = listed["keys"]
    assert old_key["kid"] == old_kid and old_key["retired"] is not None
    assert new_key["retired"] is None
    assert response.json() == {"keys": [old_key]}


def test_a_receipt_key_by_kid_names_no_other_workspace(
    banner: APIClient, other_source: Any
) -> None:
    # given: receipts of two workspaces
    post(banner, {"anonymousId": "anon-14", "decisions": {"analytics": "granted"}})
    post(client_for(other_source), {"anonymousId": "anon-14", "decisions": {"analytics": True}})
    acme_kid = Receipt.objects.get(workspace__slug="acme").kid
    globex_kid = Receipt.objects.get(workspace__slug="globex").kid
    # when
    acme = APIClient().get("/.well-known/cdp-receipt-keys.json", {"kid": acme_kid})
    globex = APIClient().get("/.well-known/cdp-receipt-keys.json", {"kid": globex_kid})
    # then: each answer holds its own workspace's key and nothing of the other's
    assert [(k["kid"], k["workspace"]) for k in acme.json()["keys"]] == [(acme_kid, "acme")]
    assert [(k["kid"], k["workspace"]) for k in globex.json()["keys"]] == [(globex_kid, "globex")]
    assert b"globex" not in acme.content and globex_kid.encode() not in acme.content
    assert b"acme" not in globex.content and acme_kid.encode() not in globex.content


@pytest.mark.parametrize(
    "kid",
    ["acme-AAAAAAAAAAAA", "nobody-AAAAAAAAAAAA", "KID"],
    ids=["a-workspace-slug-and-another-hash", "no-such-workspace", "no-slug"],
)
def test_an_unknown_kid_is_not_found_and_names_no_workspace(
    banner: APIClient, other_source: Any, kid: str
) -> None:
    # given: receipts of two workspaces
    post(banner, {"anonymousId": "anon-15", "decisions": {"analytics": "granted"}})
    post(client_for(other_source), {"anonymousId": "anon-15", "decisions": {"analytics": True}})
    # when
    response = APIClient().get("/.well-known/cdp-receipt-keys.json", {"kid": kid})
    # then
    assert response.status_code == 404
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response.json() == {"code": "key_not_found", "message": "No such key."}
    assert b"acme" not in response.content and b"globex" not in response.content


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"kid": ""}, "invalid_kid"),
        ({"kid": "acme key!"}, "invalid_kid"),
        ({"kid": "acme-AAAAAAAAAAAA/../"}, "invalid_kid"),
        ({"kid": "a" * 65}, "invalid_kid"),
        ({"workspace": "acme", "kid": "KID"}, "workspace_or_kid"),
        ({"workspace": "", "kid": ""}, "workspace_or_kid"),
    ],
    ids=["empty", "spaces", "slashes", "too-long", "both", "both-empty"],
)
def test_a_malformed_kid_or_both_parameters_are_refused(
    banner: APIClient, query: dict[str, str], code: str
) -> None:
    # given: a receipt, so there are keys to answer
    post(banner, {"anonymousId": "anon-16", "decisions": {"analytics": "granted"}})
    if query.get("kid") == "KID":
        query = {**query, "kid": Receipt.objects.get().kid}
    # when
    response = APIClient().get("/.well-known/cdp-receipt-keys.json", query)
    # then: refused, and no key answered
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert b'"keys"' not in response.content


def test_a_receipt_names_its_workspace_and_another_workspaces_keys_do_not_verify_it(
    banner: APIClient, other_source: Any
) -> None:
    # given: a receipt of acme
    posted = post(banner, {"anonymousId": "anon-12", "decisions": {"analytics": "granted"}})
    receipt = banner.get(
        f"/v1/consent/receipts/{posted.json()['receipt']}", {"anonymousId": "anon-12"}
    ).json()
    post(client_for(other_source), {"anonymousId": "anon-12", "decisions": {"analytics": True}})
    acme = APIClient().get("/.well-known/cdp-receipt-keys.json", {"workspace": "acme"}).json()
    # when: its key passed off as globex's
    [key] = acme["keys"]
    relabelled = [{**key, "workspace": "globex"}]
    # then
    assert receipt["body"]["workspace"] == "acme"
    assert selectors.receipt_verify(receipt=receipt, keys=acme["keys"]).valid is True
    check = selectors.receipt_verify(receipt=receipt, keys=relabelled)
    assert (check.valid, check.reason) == (
        False,
        f"key {key['kid']!r} belongs to another workspace",
    )


def test_gpc_support_resource(db: Any) -> None:
    # when
    response = APIClient().get("/.well-known/gpc.json")
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"gpc": True, "lastUpdate": "2026-11-28"}


# --- authentication and origins ----------------------------------------------------------------


def test_the_write_key_may_travel_in_the_body(source: Any) -> None:
    # when
    response = post(
        APIClient(),
        {"writeKey": source.write_key, "anonymousId": "a-10", "decisions": {"analytics": True}},
        content_type="text/plain",
    )
    # then
    assert response.status_code == 200
    assert ConsentRecord.objects.count() == 1


@pytest.mark.parametrize(
    ("authorization", "code"),
    [(basic("not-a-key"), "invalid_write_key"), (None, "missing_write_key")],
    ids=["wrong-key", "no-key"],
)
def test_a_wrong_or_missing_key_is_refused_and_nothing_is_stored(
    source: Any, authorization: str | None, code: str
) -> None:
    # given
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    # when
    posted = post(client, {"anonymousId": "a-11", "decisions": {"analytics": True}})
    read = client.get("/v1/consent/config")
    state = client.get("/v1/consent", {"anonymousId": "a-11"})
    receipt = client.get(
        "/v1/consent/receipts/0190a0a0-0000-7000-8000-000000000000", {"anonymousId": "a-11"}
    )
    # then
    assert (posted.status_code, posted.json()["code"]) == (401, code)
    assert posted["WWW-Authenticate"] == 'Basic realm="consent"'
    for response in (read, state, receipt):
        assert (response.status_code, response.json()["code"]) == (401, code)
    assert counts() == NOTHING


def test_a_disabled_source_is_refused_and_nothing_is_stored(banner: APIClient, source: Any) -> None:
    # given
    profile_services.source_set_enabled(source=source, enabled=False)
    # when
    response = post(banner, {"anonymousId": "a-12", "decisions": {"analytics": True}})
    # then
    assert (response.status_code, response.json()["code"]) == (403, "source_disabled")
    assert counts() == NOTHING


def test_a_foreign_origin_is_refused_without_cors_headers_and_nothing_is_stored(
    banner: APIClient,
) -> None:
    # when
    response = post(
        banner, {"anonymousId": "a-13", "decisions": {"analytics": True}}, HTTP_ORIGIN=ELSEWHERE
    )
    # then
    assert (response.status_code, response.json()["code"]) == (403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in response
    assert counts() == NOTHING


def test_an_origin_allowed_only_for_another_source_gets_no_cors_headers_either(
    banner: APIClient, other_source: Any
) -> None:
    # when: globex's origin, acme's key
    response = banner.get(
        "/v1/consent", {"anonymousId": "a-14"}, HTTP_ORIGIN="https://globex.example.org"
    )
    # then
    assert (response.status_code, response.json()["code"]) == (403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in response


def test_preflight_of_the_consent_routes_is_answered_for_a_known_origin(source: Any) -> None:
    # when
    response = APIClient().options(
        "/v1/consent",
        HTTP_ORIGIN=SHOP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    # then
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "authorization" in response["Access-Control-Allow-Headers"]


# --- outsider ----------------------------------------------------------------------------------


def test_another_workspaces_key_reads_neither_the_consent_nor_the_receipts(
    banner: APIClient, other_source: Any
) -> None:
    # given: acme holds a consent and its receipt
    posted = post(banner, {"anonymousId": "shared-anon", "decisions": {"analytics": True}})
    receipt_id = posted.json()["receipt"]
    outsider = client_for(other_source)
    before = counts()
    # when
    state = outsider.get("/v1/consent", {"anonymousId": "shared-anon"})
    receipt = outsider.get(f"/v1/consent/receipts/{receipt_id}", {"anonymousId": "shared-anon"})
    # then
    assert (state.status_code, state.json()) == (200, {"state": {}, "needsReconsent": []})
    assert (receipt.status_code, receipt.json()["code"]) == (404, "receipt_not_found")
    assert counts() == before


def test_another_workspaces_key_cannot_write_into_this_workspace(
    banner: APIClient, source: Any, other_source: Any
) -> None:
    # given
    post(banner, {"anonymousId": "shared-anon", "decisions": {"advertising": "granted"}})
    acme_records = ConsentRecord.objects.filter(workspace=source.workspace).count()
    # when: globex's key posts a denial for the same anonymousId
    response = post(
        client_for(other_source),
        {"anonymousId": "shared-anon", "decisions": {"advertising": "denied"}},
    )
    # then: it lands in globex only; acme's consent is untouched
    assert response.status_code == 200
    assert ConsentRecord.objects.filter(workspace=source.workspace).count() == acme_records
    assert banner.get("/v1/consent", {"anonymousId": "shared-anon"}).json()["state"] == {
        "advertising": "granted"
    }


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"anonymousId": "a-20", "decisions": {"telepathy": True}}, "unknown_purpose"),
        ({"anonymousId": "a-20", "decisions": {"analytics": "maybe"}}, "unknown_decision"),
        ({"anonymousId": "a-20", "decisions": {"analytics": "expired"}}, "unknown_decision"),
        ({"anonymousId": "a-20", "decisions": {"analytics": 1}}, "invalid"),
        ({"decisions": {"analytics": True}}, "missing_identity"),
        (
            {"anonymousId": None, "userId": None, "decisions": {"analytics": True}},
            "missing_identity",
        ),
        ({"anonymousId": "undefined", "decisions": {"analytics": True}}, "missing_identity"),
        ({"anonymousId": "a-20", "decisions": {}}, "missing_decisions"),
        (
            {"anonymousId": "a-20", "decisions": {"analytics": True}, "noticeVersion": 7},
            "unknown_notice_version",
        ),
        (
            {"anonymousId": "a-20", "decisions": {"analytics": True}, "tcString": "not-tcf!"},
            "invalid_tc_string",
        ),
        (
            {"anonymousId": "a-20", "decisions": {"analytics": True}, "tcString": TC_V1},
            "invalid_tc_string",
        ),
        (
            {
                "anonymousId": "a-20",
                "decisions": {"analytics": True},
                "tcString": TC_ANALYTICS_ONLY[:20],
            },
            "invalid_tc_string",
        ),
        (
            {"anonymousId": "a-20", "decisions": {"analytics": True}, "method": "steward"},
            "invalid",
        ),
    ],
    ids=[
        "unknown-purpose",
        "unknown-decision",
        "ledger-only-decision",
        "number-as-decision",
        "no-ids",
        "null-ids",
        "blocked-id",
        "no-decisions",
        "unknown-notice-version",
        "malformed-tc-string",
        "tcf-v1-string",
        "truncated-tc-string",
        "method-not-for-clients",
    ],
)
def test_bad_input_is_refused_clearly_and_nothing_is_stored(
    banner: APIClient, body: dict[str, Any], code: str
) -> None:
    # when
    response = post(banner, body)
    # then
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert counts() == NOTHING


@pytest.mark.parametrize(
    "method", ["preference_centre", "tcf", "gpc", "import", "steward", "request", "expiry"]
)
def test_a_write_key_caller_cannot_claim_a_method_the_server_records(
    banner: APIClient, method: str
) -> None:
    # when: a public write key claims the hosted preference centre, or another server method
    response = post(
        banner, {"anonymousId": "a-21", "decisions": {"analytics": True}, "method": method}
    )
    # then
    assert response.status_code == 400
    answer = response.json()
    assert (answer["code"], answer["message"]) == (
        "invalid",
        'method: Send "banner" or "api" as the method: the other methods are recorded by the '
        "server itself.",
    )
    assert counts() == NOTHING


def test_the_consent_service_refuses_a_server_method_from_a_write_key_caller(
    source: Any,
) -> None:
    # when: a caller that skips the API's serializer
    submission = services.ConsentSubmission(
        decisions={"analytics": "granted"}, anonymous_id="a-22", method="preference_centre"
    )
    with pytest.raises(InvalidInput) as refused:
        services.consent_submit(source=source, submission=submission)
    # then
    assert refused.value.code == "invalid_method"
    assert counts() == NOTHING


@pytest.mark.parametrize("method", ["banner", "api"])
def test_a_banner_or_app_may_say_how_it_collected_the_choice(
    banner: APIClient, method: str
) -> None:
    # when
    response = post(
        banner, {"anonymousId": "a-23", "decisions": {"analytics": True}, "method": method}
    )
    # then
    assert response.status_code == 200
    assert list(ConsentRecord.objects.values_list("method", flat=True)) == [method]


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{not json", "malformed_json"), (b"[1, 2]", "invalid_payload")],
    ids=["not-json", "not-an-object"],
)
def test_a_body_that_is_not_a_json_object_is_refused(
    banner: APIClient, raw: bytes, code: str
) -> None:
    # when
    response = banner.post("/v1/consent", raw, content_type="text/plain")
    # then
    assert (response.status_code, response.json()["code"]) == (400, code)
    assert counts() == NOTHING


def test_post_accepts_the_default_jurisdiction_that_config_answers(
    banner: APIClient, source: Any
) -> None:
    # given: what GET /v1/consent/config answered without a jurisdiction hint
    config = banner.get("/v1/consent/config", HTTP_ORIGIN=SHOP).json()
    assert config["jurisdiction"] == "default"
    body = {
        "anonymousId": "anon-default",
        "decisions": {"analytics": "granted"},
        "jurisdiction": config["jurisdiction"],
    }
    # when
    response = post(banner, body, HTTP_ORIGIN=SHOP)
    # then: accepted, and recorded as an unknown jurisdiction
    assert response.status_code == 200
    assert list(ConsentRecord.objects.values_list("jurisdiction", flat=True)) == [""]
