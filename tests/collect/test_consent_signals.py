"""Consent signals carried by collection requests (Sec-GPC, Segment's categoryPreferences,
RudderStack's consentManagement) are recorded in the consent ledger, once per change."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from cdp.core.crypto import blind_index, keyed_hash
from collect import intake
from collect.consent_signals import consent_signals_apply, purpose_key_for
from collect.models import IntakeBatch
from consent import selectors as consent_selectors
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.models import ConsentRecord, Receipt
from consent.services import Evidence, Subject
from profiles import services as profile_services
from profiles.models import Event, Profile
from tests.profiles.ingest_helpers import msg

PAGE = "https://shop.example.com/checkout"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Example/1.0"
IP = "198.51.100.7"


def post_batch(client: APIClient, batch: list[dict[str, Any]], *, gpc: bool = False) -> Any:
    headers: dict[str, Any] = {"HTTP_SEC_GPC": "1"} if gpc else {}
    return client.post(
        "/v1/batch", json.dumps({"batch": batch}), content_type="application/json", **headers
    )


def track(message_id: str, *, anonymous_id: str = "anon-1", **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Viewed Product",
        "anonymousId": anonymous_id,
        "messageId": message_id,
        **fields,
    }


def with_preferences(message_id: str, preferences: Any, **fields: Any) -> dict[str, Any]:
    return track(message_id, context={"consent": {"categoryPreferences": preferences}}, **fields)


def ledger(workspace: Any) -> list[tuple[str, str, str, str]]:
    return list(
        ConsentRecord.objects.filter(workspace=workspace)
        .order_by("server_time", "purpose__key")
        .values_list("subject_type", "purpose__key", "decision", "method")
    )


def state(workspace: Any, profile_id: Any) -> dict[str, tuple[str, bool]]:
    current = consent_selectors.consent_state_for_profile(
        workspace=workspace, profile_id=profile_id
    )
    return {key: (s["decision"], s["needs_reconsent"]) for key, s in current.items()}


# --- GPC ---------------------------------------------------------------------------------------


def test_gpc_header_opts_out_of_sale_or_share_once_across_events_and_requests(
    sdk: APIClient, source: Any
) -> None:
    # when: three events in one request, then two more requests, all with Sec-GPC: 1
    first = post_batch(sdk, [track("m-1"), track("m-2"), track("m-3")], gpc=True)
    post_batch(sdk, [track("m-4")], gpc=True)
    post_batch(sdk, [track("m-5"), track("m-6")], gpc=True)
    # then
    assert (first.status_code, first.json()) == (200, {"success": True})
    assert Event.objects.filter(source=source).count() == 6
    assert ledger(source.workspace) == [("anonymous_id", "advertising", "denied", "gpc")]
    record = ConsentRecord.objects.get()
    assert (record.signals, record.source_id, record.jurisdiction) == ({"gpc": True}, source.pk, "")
    assert state(source.workspace, record.profile_id) == {"advertising": ("denied", False)}
    assert Receipt.objects.count() == 1


def test_gpc_on_a_single_message_endpoint_is_recorded_against_the_user_id(
    sdk: APIClient, source: Any
) -> None:
    # when
    response = sdk.post(
        "/v1/t",
        json.dumps({"event": "Viewed", "userId": " u-7 ", "anonymousId": "anon-7"}),
        content_type="text/plain",
        HTTP_SEC_GPC="1",
    )
    # then
    assert response.status_code == 200
    assert ledger(source.workspace) == [("user_id", "advertising", "denied", "gpc")]
    record = ConsentRecord.objects.get()
    assert bytes(record.subject_index) == blind_index(source.workspace.pk, "user_id", "u-7")


def test_a_sec_gpc_header_other_than_1_is_no_signal(sdk: APIClient, source: Any) -> None:
    # when
    post_batch(sdk, [track("m-1")])
    sdk.post(
        "/v1/batch",
        json.dumps({"batch": [track("m-2")]}),
        content_type="application/json",
        HTTP_SEC_GPC="0",
    )
    # then
    assert Event.objects.filter(source=source).count() == 2
    assert ledger(source.workspace) == []


def test_gpc_overrides_an_earlier_opt_in_and_flags_it_for_reconsent(
    sdk: APIClient, source: Any
) -> None:
    # given: the person opted in to advertising (and analytics) through the banner
    post_batch(sdk, [track("m-1")])
    profile_id = Event.objects.get().profile_id
    consent_services.purposes_ensure_defaults(workspace=source.workspace)
    consent_services.consent_record(
        workspace=source.workspace,
        subject=Subject("anonymous_id", "anon-1", profile_id),
        decisions={"advertising": Decision.GRANTED, "analytics": Decision.GRANTED},
        evidence=Evidence(method=Method.BANNER, jurisdiction="US-CA"),
    )
    # when
    post_batch(sdk, [track("m-2")], gpc=True)
    # then
    assert ledger(source.workspace)[2:] == [("anonymous_id", "advertising", "denied", "gpc")]
    assert state(source.workspace, profile_id) == {
        "analytics": ("granted", False),
        "advertising": ("denied", True),
    }


def test_gpc_outranks_a_banner_opt_in_to_advertising_on_the_same_request(
    sdk: APIClient, source: Any
) -> None:
    # when
    post_batch(sdk, [with_preferences("m-1", {"Advertising": True, "Analytics": True})], gpc=True)
    post_batch(sdk, [with_preferences("m-2", {"Advertising": True, "Analytics": True})], gpc=True)
    # then
    assert sorted(ledger(source.workspace)) == [
        ("anonymous_id", "advertising", "denied", "gpc"),
        ("anonymous_id", "analytics", "granted", "api"),
    ]


# --- banner preferences in events ----------------------------------------------------------------


def test_segment_category_preferences_are_recorded_with_method_api(
    sdk: APIClient, source: Any
) -> None:
    # given
    preferences = {"Advertising": True, "Analytics": False, "Marketing Email": True}
    message = with_preferences(
        "m-1",
        preferences,
        userId="u-1",
        timestamp="2026-11-28T10:00:00.000Z",
    )
    message["context"] |= {"ip": IP, "userAgent": AGENT, "page": {"url": PAGE}}
    # when
    response = post_batch(sdk, [message])
    # then
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert ledger(source.workspace) == [
        ("user_id", "advertising", "granted", "api"),
        ("user_id", "analytics", "denied", "api"),
        ("user_id", "marketing_email", "granted", "api"),
    ]
    record = ConsentRecord.objects.filter(purpose__key="analytics").get()
    workspace_id = source.workspace.pk
    assert record.profile_id == Event.objects.get().profile_id
    assert (record.source_id, record.jurisdiction, record.notice_version_id) == (
        source.pk,
        "",
        None,
    )
    assert record.client_time == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert record.signals == {"categoryPreferences": preferences}
    assert record.proof == {
        "ip": keyed_hash("consent-proof", workspace_id, "ip", IP).hex(),
        "user_agent": keyed_hash("consent-proof", workspace_id, "user_agent", AGENT).hex(),
        "page_url": keyed_hash("consent-proof", workspace_id, "page_url", PAGE).hex(),
    }
    assert Receipt.objects.count() == 1


def test_rudderstack_consent_management_ids_are_recorded(sdk: APIClient, source: Any) -> None:
    # given
    management = {
        "provider": "custom",
        "resolutionStrategy": "and",
        "allowedConsentIds": ["analytics", "Personalization", "C0001"],
        "deniedConsentIds": ["marketing-email", "ADVERTISING"],
    }
    # when
    post_batch(sdk, [track("m-1", context={"consentManagement": management})])
    # then
    assert ledger(source.workspace) == [
        ("anonymous_id", "advertising", "denied", "api"),
        ("anonymous_id", "analytics", "granted", "api"),
        ("anonymous_id", "marketing_email", "denied", "api"),
        ("anonymous_id", "personalization", "granted", "api"),
    ]
    assert {r.signals["consentManagement"]["provider"] for r in ConsentRecord.objects.all()} == {
        "custom"
    }
    assert ConsentRecord.objects.filter(signals={"consentManagement": management}).count() == 4


def test_repeated_preferences_add_no_records_and_a_change_adds_only_itself(
    sdk: APIClient, source: Any
) -> None:
    # given
    preferences = {"Analytics": True, "Advertising": False}
    post_batch(sdk, [with_preferences("m-1", preferences), with_preferences("m-2", preferences)])
    # when: the same preferences on every later event, then one change
    post_batch(sdk, [with_preferences("m-3", preferences)])
    post_batch(sdk, [with_preferences("m-4", {"Analytics": False, "Advertising": False})])
    # then
    assert ledger(source.workspace) == [
        ("anonymous_id", "advertising", "denied", "api"),
        ("anonymous_id", "analytics", "granted", "api"),
        # a refusal of what was granted is a withdrawal, as the preference centre records it
        ("anonymous_id", "analytics", "withdrawn", "api"),
    ]
    assert Receipt.objects.count() == 2
    assert Event.objects.filter(source=source).count() == 4


def test_a_denial_after_a_withdrawal_is_no_change(sdk: APIClient, source: Any) -> None:
    # given
    post_batch(sdk, [track("m-1")])
    profile_id = Event.objects.get().profile_id
    consent_services.purposes_ensure_defaults(workspace=source.workspace)
    consent_services.consent_record(
        workspace=source.workspace,
        subject=Subject("anonymous_id", "anon-1", profile_id),
        decisions={"analytics": Decision.WITHDRAWN},
        evidence=Evidence(method=Method.PREFERENCE_CENTRE),
    )
    # when
    post_batch(sdk, [with_preferences("m-2", {"Analytics": False})])
    # then
    assert ledger(source.workspace) == [
        ("anonymous_id", "analytics", "withdrawn", "preference_centre")
    ]


def test_unknown_categories_are_ignored(sdk: APIClient, source: Any) -> None:
    # when
    response = post_batch(
        sdk,
        [
            with_preferences("m-1", {"Functional": True, "C0004": False, "Analytics": True}),
            with_preferences("m-2", {"Functional": True}, anonymous_id="anon-2"),
        ],
    )
    # then
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert Event.objects.filter(source=source).count() == 2
    assert ledger(source.workspace) == [("anonymous_id", "analytics", "granted", "api")]
    assert Receipt.objects.count() == 1


@pytest.mark.parametrize(
    "context",
    [
        {"consent": {"categoryPreferences": "Analytics"}},
        {"consent": {"categoryPreferences": ["Analytics"]}},
        {"consent": {"categoryPreferences": {"Analytics": "yes", "Advertising": None}}},
        {"consent": "all"},
        {"consentManagement": ["analytics"]},
        {"consentManagement": {"allowedConsentIds": "analytics", "deniedConsentIds": None}},
        {"consentManagement": {"allowedConsentIds": [1, None, {"id": "analytics"}]}},
    ],
    ids=[
        "preferences-string",
        "preferences-list",
        "preference-values-not-booleans",
        "consent-string",
        "management-list",
        "ids-not-lists",
        "ids-not-strings",
    ],
)
def test_malformed_consent_objects_never_cost_the_event(
    sdk: APIClient, source: Any, context: dict[str, Any]
) -> None:
    # when
    response = post_batch(sdk, [track("m-1", context=context)])
    # then
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert list(Event.objects.filter(source=source).values_list("message_id", flat=True)) == ["m-1"]
    assert ledger(source.workspace) == []


def test_a_retried_message_records_nothing_again(sdk: APIClient, source: Any) -> None:
    # given: the first delivery carried no preferences
    post_batch(sdk, [track("m-1")])
    # when: a message with the same messageId is a duplicate, not stored, so not read
    post_batch(sdk, [with_preferences("m-1", {"Analytics": True})])
    # then
    assert ledger(source.workspace) == []


def test_one_record_call_per_profile_and_the_latest_message_speaks(
    sdk: APIClient, source: Any
) -> None:
    # given: two events of one person (out of order) and one of another person
    batch = [
        with_preferences("m-2", {"Analytics": False}, timestamp="2026-11-28T10:02:00Z"),
        with_preferences("m-1", {"Analytics": True}, timestamp="2026-11-28T10:01:00Z"),
        with_preferences(
            "m-3", {"Analytics": True}, anonymous_id="anon-2", timestamp="2026-11-28T10:03:00Z"
        ),
    ]
    # when
    post_batch(sdk, batch)
    # then
    first = Event.objects.get(message_id="m-1").profile_id
    second = Event.objects.get(message_id="m-3").profile_id
    assert list(
        ConsentRecord.objects.order_by("client_time").values_list(
            "profile_id", "client_time", "decision"
        )
    ) == [
        (first, datetime(2026, 11, 28, 10, 2, tzinfo=UTC), "denied"),
        (second, datetime(2026, 11, 28, 10, 3, tzinfo=UTC), "granted"),
    ]
    assert Receipt.objects.count() == 2


def test_events_older_than_the_last_consent_change_do_not_overturn_it(
    sdk: APIClient, source: Any
) -> None:
    # given: a withdrawal in the preference centre now
    post_batch(sdk, [track("m-1")])
    profile_id = Event.objects.get().profile_id
    consent_services.purposes_ensure_defaults(workspace=source.workspace)
    consent_services.consent_record(
        workspace=source.workspace,
        subject=Subject("anonymous_id", "anon-1", profile_id),
        decisions={"analytics": Decision.WITHDRAWN},
        evidence=Evidence(method=Method.PREFERENCE_CENTRE),
    )
    # when: an event queued offline last year arrives with the old preferences
    post_batch(
        sdk, [with_preferences("m-2", {"Analytics": True}, timestamp="2025-11-28T10:00:00Z")]
    )
    # then
    assert state(source.workspace, profile_id) == {"analytics": ("withdrawn", False)}
    assert ConsentRecord.objects.count() == 1


# --- the asynchronous intake -------------------------------------------------------------------


@override_settings(COLLECT_ASYNC_INTAKE=True)
def test_the_async_intake_records_the_same_signals(
    sdk: APIClient, source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: two requests buffered before any drain
    with django_capture_on_commit_callbacks(execute=False):
        post_batch(sdk, [with_preferences("m-1", {"Analytics": True})], gpc=True)
        post_batch(sdk, [with_preferences("m-2", {"Analytics": True}), track("m-3")], gpc=True)
    assert (IntakeBatch.objects.count(), ConsentRecord.objects.count()) == (2, 0)
    assert [m["gpc"] for b in IntakeBatch.objects.order_by("received_at") for m in b.payload] == [
        True,
        True,
        True,
    ]
    # when
    stored = intake.intake_drain()
    # then
    assert stored == 3
    assert sorted(ledger(source.workspace)) == [
        ("anonymous_id", "advertising", "denied", "gpc"),
        ("anonymous_id", "analytics", "granted", "api"),
    ]
    profile_id = Profile.objects.get().pk
    assert state(source.workspace, profile_id) == {
        "analytics": ("granted", False),
        "advertising": ("denied", False),
    }


def test_buffered_messages_from_before_the_gpc_field_still_drain(source: Any) -> None:
    # given: a batch sealed by a version without the field
    [message] = [msg(anonymous_id="anon-9", message_id="m-9")]
    payload = intake._serialize(message)
    del payload["gpc"]
    # when
    restored = intake._deserialize(payload)
    # then
    assert restored.gpc is False
    assert restored.message_id == "m-9"


# --- the service on its own ----------------------------------------------------------------------


def test_messages_without_a_profile_are_skipped(source: Any) -> None:
    # given: a stored message and its duplicate (profile id None)
    message = msg(anonymous_id="anon-1", gpc=True)
    outcome = profile_services.ingest_messages(source=source, messages=[message])
    # when
    consent_signals_apply(source=source, messages=[message], profile_ids=[None])
    # then
    assert ConsentRecord.objects.count() == 0
    # and with the profile it resolved to
    consent_signals_apply(source=source, messages=[message], profile_ids=outcome.profile_ids)
    assert ledger(source.workspace) == [("anonymous_id", "advertising", "denied", "gpc")]


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Marketing Email", "marketing_email"),
        ("marketing-email", "marketing_email"),
        (" ADVERTISING ", "advertising"),
        ("Strictly  Necessary", "strictly_necessary"),
    ],
)
def test_category_names_become_purpose_keys(name: str, key: str) -> None:
    assert purpose_key_for(name) == key
