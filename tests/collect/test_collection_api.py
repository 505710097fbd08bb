"""The Segment-compatible collection API, end to end through storage."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from collect import services as collect_services
from profiles import services
from profiles.contracts import IngestOutcome
from profiles.models import Event, Profile, Trait
from tests.collect.conftest import ELSEWHERE, SHOP, basic

SINGLE: list[tuple[str, dict[str, Any], str, str]] = [
    ("identify", {"userId": "u-1", "traits": {"plan": "pro"}}, "identify", ""),
    ("track", {"anonymousId": "a-1", "event": "Order Completed"}, "track", "Order Completed"),
    ("page", {"anonymousId": "a-1", "name": "Home"}, "page", "Home"),
    ("screen", {"userId": "u-1", "name": "Basket"}, "screen", "Basket"),
    ("group", {"userId": "u-1", "groupId": "g-1", "traits": {"plan": "team"}}, "group", ""),
    ("alias", {"userId": "u-1", "previousId": "a-1"}, "alias", ""),
]
SHORT = {"identify": "i", "track": "t", "page": "p", "screen": "s", "group": "g", "alias": "a"}


def post_json(client: APIClient, path: str, body: Any, **extra: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json", **extra)


def events(source: Any) -> list[tuple[str, str]]:
    return list(Event.objects.filter(source=source).order_by("type").values_list("type", "name"))


# --- every endpoint ----------------------------------------------------------------------------


@pytest.mark.parametrize("short", [False, True], ids=["long", "short"])
@pytest.mark.parametrize(("route", "body", "stored_type", "stored_name"), SINGLE)
def test_single_message_endpoint_stores_and_answers_exactly_200_success(
    sdk: APIClient,
    source: Any,
    route: str,
    body: dict[str, Any],
    stored_type: str,
    stored_name: str,
    short: bool,
) -> None:
    # given
    path = f"/v1/{SHORT[route] if short else route}"
    # when
    response = post_json(sdk, path, {**body, "messageId": f"m-{route}"})
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"success": True}
    assert list(Event.objects.filter(source=source).values_list("type", "name", "message_id")) == [
        (stored_type, stored_name, f"m-{route}")
    ]


@pytest.mark.parametrize("route", ["batch", "b", "import"])
def test_batch_endpoints_store_every_message(sdk: APIClient, source: Any, route: str) -> None:
    # given
    batch = [{**body, "type": kind} for _route, body, kind, _name in SINGLE]
    # when
    response = post_json(sdk, f"/v1/{route}", {"batch": batch})
    # then
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert events(source) == [
        ("alias", ""),
        ("group", ""),
        ("identify", ""),
        ("page", "Home"),
        ("screen", "Basket"),
        ("track", "Order Completed"),
    ]


def test_metrics_endpoint_answers_success_and_stores_nothing(anon: APIClient, source: Any) -> None:
    # given: what analytics-next posts about itself, with no key
    body = {"series": [{"type": "Counter", "metric": "analytics_js.invoke", "value": 1}]}
    # when
    response = anon.post("/v1/m", json.dumps(body), content_type="text/plain")
    # then
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert Event.objects.count() == 0


def test_wrong_message_type_for_the_path_is_rejected(sdk: APIClient, source: Any) -> None:
    response = post_json(sdk, "/v1/track", {"type": "identify", "userId": "u-1"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_type"
    assert Event.objects.count() == 0


def test_get_is_not_allowed_and_answers_code_and_message(sdk: APIClient, source: Any) -> None:
    response = sdk.get("/v1/track")
    assert response.status_code == 405
    assert set(response.json()) == {"code", "message"}
    assert response.json()["code"] == "method_not_allowed"


def test_accept_header_never_causes_406(sdk: APIClient, source: Any) -> None:
    response = post_json(sdk, "/v1/t", {"userId": "u-1", "event": "E"}, HTTP_ACCEPT="text/plain")
    assert response.status_code == 200
    assert response.json() == {"success": True}


# --- real client shapes ------------------------------------------------------------------------


def test_segment_python_batch_with_nulls_and_body_write_key(anon: APIClient, source: Any) -> None:
    # given: segment-analytics-python 2.4 sends Basic auth, writeKey in the body and nulls
    body = {
        "batch": [
            {
                "integrations": {},
                "anonymousId": None,
                "timestamp": "2026-11-28T13:29:32.507+00:00",
                "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
                "type": "identify",
                "userId": "u1",
                "traits": {"email": "a@example.com"},
                "messageId": "0d8acdc5-1",
            },
            {
                "integrations": {},
                "type": "track",
                "event": "Signed Up",
                "userId": None,
                "anonymousId": "anon-1",
                "properties": {"category": None},
                "messageId": "0d8acdc5-2",
            },
        ],
        "sentAt": "2026-11-28T13:29:32.707835+00:00",
        "writeKey": source.write_key,
    }
    # when
    response = post_json(anon, "/v1/batch", body, HTTP_AUTHORIZATION=basic(source.write_key))
    # then
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert events(source) == [("identify", ""), ("track", "Signed Up")]


def test_rudderstack_identify_with_context_traits_stores_the_traits(
    sdk: APIClient, source: Any
) -> None:
    # given: rudder-sdk-python puts identify traits in context.traits, no top-level traits
    body = {
        "integrations": {"All": True},
        "anonymousId": None,
        "originalTimestamp": "2026-11-28T13:29:32.507Z",
        "sentAt": "2026-11-28T13:29:33.507Z",
        "context": {"traits": {"email": "r@example.com", "plan": "pro"}},
        "type": "identify",
        "userId": "u-r",
        "messageId": "rs-1",
        "channel": "server",
    }
    # when
    response = post_json(sdk, "/v1/identify", body)
    # then
    assert response.status_code == 200
    assert sorted(Trait.objects.filter(source=source).values_list("key", flat=True)) == [
        "email",
        "plan",
    ]
    event = Event.objects.get(source=source)
    assert "traits" not in event.context  # personal data is not kept in plain context


def test_retried_batch_is_stored_once(sdk: APIClient, source: Any) -> None:
    # given
    body = {"batch": [{"type": "track", "event": "E", "userId": "u-1", "messageId": "same"}]}
    # when
    first = post_json(sdk, "/v1/batch", body)
    second = post_json(sdk, "/v1/batch", body)
    # then
    assert (first.status_code, second.status_code) == (200, 200)
    assert Event.objects.filter(source=source).count() == 1


# --- authentication --------------------------------------------------------------------------


def test_write_key_in_body_without_header_is_accepted(anon: APIClient, source: Any) -> None:
    body = {"writeKey": source.write_key, "userId": "u-1", "event": "E"}
    response = anon.post("/v1/t", json.dumps(body), content_type="text/plain")
    assert response.status_code == 200
    assert events(source) == [("track", "E")]


def test_bearer_header_with_write_key_in_body_is_accepted(anon: APIClient, source: Any) -> None:
    body = {"writeKey": source.write_key, "batch": [{"type": "track", "event": "E", "userId": "u"}]}
    response = post_json(anon, "/v1/batch", body, HTTP_AUTHORIZATION="Bearer some-oauth-token")
    assert response.status_code == 200
    assert events(source) == [("track", "E")]


@pytest.mark.parametrize(
    "auth",
    [basic("not-a-key"), "Basic !!!not-base64", "Basic " + base64.b64encode(b"x" * 300).decode()],
)
def test_unknown_write_key_is_401_and_stores_nothing(
    anon: APIClient, source: Any, auth: str
) -> None:
    response = post_json(
        anon, "/v1/track", {"userId": "u-1", "event": "E"}, HTTP_AUTHORIZATION=auth
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_write_key"
    assert set(response.json()) == {"code", "message"}
    assert response["WWW-Authenticate"] == 'Basic realm="collect"'
    assert Event.objects.count() == 0


def test_unknown_write_key_in_body_is_401(anon: APIClient, source: Any) -> None:
    response = post_json(anon, "/v1/batch", {"writeKey": "nope", "batch": []})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_write_key"


def test_missing_write_key_is_401(anon: APIClient, source: Any) -> None:
    response = post_json(anon, "/v1/track", {"userId": "u-1", "event": "E"})
    assert response.status_code == 401
    assert response.json()["code"] == "missing_write_key"
    assert Event.objects.count() == 0


def test_disabled_source_is_403_and_stores_nothing(sdk: APIClient, source: Any) -> None:
    # given
    services.source_set_enabled(source=source, enabled=False)
    # when
    response = post_json(
        sdk, "/v1/batch", {"batch": [{"type": "track", "event": "E", "userId": "u"}]}
    )
    # then
    assert response.status_code == 403
    assert response.json() == {"code": "source_disabled", "message": "This source is disabled."}
    assert Event.objects.count() == 0


def test_management_api_token_is_not_a_write_key(api_client: APIClient, source: Any) -> None:
    response = post_json(api_client, "/v1/track", {"userId": "u-1", "event": "E"})
    assert response.status_code == 401
    assert response.json()["code"] == "missing_write_key"


def test_write_key_of_workspace_a_never_writes_into_workspace_b(
    anon: APIClient, source: Any, other_source: Any
) -> None:
    # given
    other_profiles = Profile.objects.filter(workspace=other_source.workspace).count()
    body = {"batch": [{"type": "identify", "userId": "shared-id", "traits": {"plan": "pro"}}]}
    # when
    response = post_json(anon, "/v1/batch", body, HTTP_AUTHORIZATION=basic(source.write_key))
    # then
    assert response.status_code == 200
    assert Event.objects.filter(workspace=source.workspace).count() == 1
    assert Event.objects.filter(workspace=other_source.workspace).count() == 0
    assert Profile.objects.filter(workspace=other_source.workspace).count() == other_profiles
    assert Trait.objects.filter(workspace=other_source.workspace).count() == 0


# --- body formats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/json;charset=UTF-8",
        "application/x-www-form-urlencoded",  # curl -d
        "",  # no Content-Type at all
    ],
)
def test_json_is_read_whatever_the_content_type(
    sdk: APIClient, source: Any, content_type: str
) -> None:
    body = json.dumps({"userId": "u-1", "event": "E"})
    response = sdk.generic("POST", "/v1/t", body, content_type=content_type)
    assert response.status_code == 200
    assert events(source) == [("track", "E")]


def test_gzip_body_is_decompressed(sdk: APIClient, source: Any) -> None:
    # given: rudder-sdk-python gzips by default
    body = gzip.compress(
        json.dumps({"batch": [{"type": "track", "event": "E", "userId": "u"}]}).encode()
    )
    # when
    response = sdk.post(
        "/v1/batch", body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    # then
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert events(source) == [("track", "E")]


def test_deflate_body_is_decompressed(sdk: APIClient, source: Any) -> None:
    body = zlib.compress(json.dumps({"userId": "u-1", "event": "E"}).encode())
    response = sdk.post(
        "/v1/t", body, content_type="application/json", HTTP_CONTENT_ENCODING="deflate"
    )
    assert response.status_code == 200
    assert events(source) == [("track", "E")]


@override_settings(COLLECT_MAX_REQUEST_BYTES=10_000)
def test_gzip_bomb_is_refused_without_inflating_it(sdk: APIClient, source: Any) -> None:
    # given: 10 MB of spaces inside valid JSON, compressed to about 10 kB
    raw = b'{"batch": [' + b" " * 10_000_000 + b"]}"
    bomb = gzip.compress(raw, compresslevel=9)
    assert len(bomb) < 11_000
    # when
    response = sdk.post(
        "/v1/batch", bomb, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "request_too_large"
    assert Event.objects.count() == 0


def test_corrupt_gzip_is_400(sdk: APIClient, source: Any) -> None:
    response = sdk.post(
        "/v1/batch",
        b"\x1f\x8bnot really gzip",
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_body"


def test_unsupported_content_encoding_is_415(sdk: APIClient, source: Any) -> None:
    response = sdk.post(
        "/v1/batch", b"...", content_type="application/json", HTTP_CONTENT_ENCODING="br"
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_encoding"


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track"])
def test_malformed_json_is_400_with_code_and_message(
    sdk: APIClient, source: Any, path: str
) -> None:
    response = sdk.post(path, b'{"batch": [', content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "code": "malformed_json",
        "message": "The request body is not valid JSON.",
    }


def test_malformed_json_with_write_key_expected_in_body_is_400(
    anon: APIClient, source: Any
) -> None:
    response = anon.post("/v1/t", b"{oops", content_type="text/plain")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


def test_body_that_is_not_an_object_is_400(sdk: APIClient, source: Any) -> None:
    response = post_json(sdk, "/v1/batch", [{"type": "track"}])
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_payload"


def test_batch_without_a_list_is_400(sdk: APIClient, source: Any) -> None:
    response = post_json(sdk, "/v1/batch", {"batch": {"type": "track"}})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_payload"


# --- size limits -----------------------------------------------------------------------------


@override_settings(COLLECT_MAX_EVENT_BYTES=1024)
def test_oversize_single_event_is_400(sdk: APIClient, source: Any) -> None:
    body = {"userId": "u-1", "event": "E", "properties": {"blob": "x" * 2000}}
    response = post_json(sdk, "/v1/track", body)
    assert response.status_code == 400
    assert response.json() == {
        "code": "event_too_large",
        "message": "The message is larger than 1024 bytes.",
    }
    assert Event.objects.count() == 0


@override_settings(COLLECT_MAX_EVENT_BYTES=1024)
def test_oversize_event_in_a_batch_is_rejected_and_its_siblings_kept(
    sdk: APIClient, source: Any
) -> None:
    # given
    batch = [
        {"type": "track", "event": "Small", "userId": "u-1"},
        {"type": "track", "event": "Big", "userId": "u-1", "properties": {"blob": "x" * 2000}},
    ]
    # when
    response = post_json(sdk, "/v1/batch", {"batch": batch})
    # then
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "rejected": [
            {
                "index": 1,
                "code": "event_too_large",
                "message": "The message is larger than 1024 bytes.",
            }
        ],
    }
    assert events(source) == [("track", "Small")]


@override_settings(COLLECT_MAX_REQUEST_BYTES=2048)
def test_oversize_batch_is_400_and_stores_nothing(sdk: APIClient, source: Any) -> None:
    batch = [{"type": "track", "event": f"E{i}", "userId": "u-1"} for i in range(100)]
    response = post_json(sdk, "/v1/batch", {"batch": batch})
    assert response.status_code == 400
    assert response.json() == {
        "code": "request_too_large",
        "message": "The request body is larger than 2048 bytes.",
    }
    assert Event.objects.count() == 0


# --- invalid messages ------------------------------------------------------------------------


def test_messages_without_identity_are_rejected_and_valid_siblings_stored(
    sdk: APIClient, source: Any
) -> None:
    # given
    batch = [
        {"type": "track", "event": "Kept", "anonymousId": "a-1"},
        {"type": "track", "event": "Nobody"},
        {"type": "track", "event": "Null ids", "userId": None, "anonymousId": None},
        {"type": "identify", "userId": 42, "traits": {"plan": "pro"}},
    ]
    # when
    response = post_json(sdk, "/v1/batch", {"batch": batch})
    # then
    message = "A message needs a userId or an anonymousId."
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "rejected": [
            {"index": 1, "code": "missing_identity", "message": message},
            {"index": 2, "code": "missing_identity", "message": message},
        ],
    }
    assert events(source) == [("identify", ""), ("track", "Kept")]


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"next": value}
    return value


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async-intake"])
def test_messages_that_cannot_be_stored_are_rejected_and_valid_siblings_kept(
    sdk: APIClient, source: Any, asynchronous: bool
) -> None:
    # given: JSON that PostgreSQL or the stores' encoder cannot take as sent (the body as
    # text: a NUL character is valid JSON)
    batch = [
        '{"type": "track", "event": "Kept", "userId": "u-1"}',
        '{"type": "track", "event": "a\\u0000b", "userId": "u-1"}',
        '{"type": "track", "event": "Key", "userId": "u-1", "properties": {"k\\u0000": 1}}',
        json.dumps({"type": "track", "event": "Deep", "userId": "u-1", "properties": _nested(300)}),
        # deep enough that only the stores' own nesting would have gone past what they write
        json.dumps({"type": "track", "event": "Deep", "userId": "u-1", "context": _nested(253)}),
        '{"type": "track", "event": "Backslash", "userId": "u-1", '
        '"properties": {"p": "C:\\\\u0000"}}',
    ]
    body = '{"batch": [' + ", ".join(batch) + "]}"
    # when
    with override_settings(COLLECT_ASYNC_INTAKE=asynchronous):
        response = sdk.post("/v1/batch", body, content_type="application/json")
        if asynchronous:
            from collect import intake

            intake.intake_drain()
    # then: each refused on its own, saying why; the others stored (a backslash before
    # "u0000" is no NUL)
    assert response.status_code == 200
    nul = "The message holds a NUL character (\\u0000), which cannot be stored."
    assert response.json()["rejected"] == [
        {"index": 1, "code": "invalid_field", "message": nul},
        {"index": 2, "code": "invalid_field", "message": nul},
        {
            "index": 3,
            "code": "invalid_message",
            "message": "The message is nested more than 200 levels deep.",
        },
        {
            "index": 4,
            "code": "invalid_message",
            "message": "The message is nested more than 200 levels deep.",
        },
    ]
    assert sorted(name for _, name in events(source)) == ["Backslash", "Kept"]
    assert Event.objects.get(name="Backslash").properties == {"p": "C:\\u0000"}


def test_a_batch_context_that_cannot_be_stored_is_400_and_stores_nothing(
    sdk: APIClient, source: Any
) -> None:
    # given: the batch's context goes into every message
    body = (
        '{"batch": [{"type": "track", "event": "E", "userId": "u-1"}], "context": {"x": "\\u0000"}}'
    )
    # when
    response = sdk.post("/v1/batch", body, content_type="application/json")
    # then
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_payload",
        "message": "The batch's context holds a NUL character (\\u0000), which cannot be stored.",
    }
    assert Event.objects.count() == 0


def test_a_batch_context_nested_too_deep_to_store_is_400(sdk: APIClient, source: Any) -> None:
    body = {"batch": [{"type": "track", "event": "E", "userId": "u-1"}], "context": _nested(254)}
    response = post_json(sdk, "/v1/batch", body)
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_payload",
        "message": "The batch's context is nested more than 200 levels deep.",
    }
    assert Event.objects.count() == 0


def test_json_nested_beyond_any_reader_is_400_malformed(sdk: APIClient, source: Any) -> None:
    body = '{"batch": [' + "[" * 5000 + "]" * 5000 + "]}"
    response = sdk.post("/v1/batch", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


def test_single_message_without_identity_is_400(sdk: APIClient, source: Any) -> None:
    response = post_json(sdk, "/v1/t", {"event": "Nobody", "userId": None})
    assert response.status_code == 400
    assert response.json() == {
        "code": "missing_identity",
        "message": "A message needs a userId or an anonymousId.",
    }
    assert Event.objects.count() == 0


def test_track_without_event_is_400(sdk: APIClient, source: Any) -> None:
    response = post_json(sdk, "/v1/track", {"userId": "u-1"})
    assert response.status_code == 400
    assert response.json()["code"] == "missing_event"


def test_collect_messages_hands_only_valid_messages_to_storage(
    monkeypatch: pytest.MonkeyPatch, source: Any
) -> None:
    # given: storage replaced by a recorder
    calls: list[tuple[Any, list[Any]]] = []

    def record(*, source: Any, messages: list[Any]) -> IngestOutcome:
        calls.append((source, messages))
        return IngestOutcome(
            profile_ids=[None] * len(messages),
            stored=len(messages),
            duplicates=0,
            profiles_created=0,
            merges=0,
            conflicts=0,
        )

    monkeypatch.setattr(services, "ingest_messages", record)
    from datetime import UTC, datetime

    meta = collect_services.RequestMeta(
        received_at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC), ip="203.0.113.9"
    )
    payloads = [
        {"type": "track", "event": "A", "userId": 7, "messageId": "m-a"},
        {"type": "track", "event": "B"},
        {"type": "page", "anonymousId": "a-1", "context": {"ip": "198.51.100.4"}},
    ]
    # when
    result = collect_services.collect_messages(source=source, payloads=payloads, request_meta=meta)
    # then
    assert result.accepted == 2
    assert [(e.index, e.code) for e in result.rejected] == [(1, "missing_identity")]
    assert len(calls) == 1
    stored_source, messages = calls[0]
    assert stored_source == source
    assert [(m.index, m.type, m.user_id, m.anonymous_id, m.ip) for m in messages] == [
        (0, "track", "7", None, "203.0.113.9"),
        (2, "page", None, "a-1", "198.51.100.4"),
    ]
    assert messages[0].message_id == "m-a"


def test_collect_messages_calls_no_storage_when_nothing_is_valid(
    monkeypatch: pytest.MonkeyPatch, source: Any
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(services, "ingest_messages", lambda **kw: calls.append(kw))
    from django.utils import timezone

    meta = collect_services.RequestMeta(received_at=timezone.now())
    result = collect_services.collect_messages(
        source=source, payloads=[{"type": "track"}], request_meta=meta
    )
    assert (result.accepted, result.outcome, calls) == (0, None, [])


# --- CORS --------------------------------------------------------------------------------------


def preflight(client: APIClient, origin: str, path: str = "/v1/t") -> Any:
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type",
    )


def test_preflight_from_an_allowed_origin(anon: APIClient, source: Any) -> None:
    response = preflight(anon, SHOP)
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert response["Access-Control-Allow-Methods"] == "POST, GET, OPTIONS"
    allowed = [h.strip() for h in response["Access-Control-Allow-Headers"].split(",")]
    for header in (
        "authorization",
        "content-type",
        "anonymousid",
        "sentat",
        "x-retry-count",
        "rsa-retry-attempt",
        "rsa-since-last-attempt",
        "rsa-since-first-attempt",
        "rsa-retry-reason",
        "rsa-recovered",
    ):
        assert header in allowed
    assert response["Access-Control-Max-Age"] == "600"
    assert "Origin" in response["Vary"]


@pytest.mark.parametrize("origin", [ELSEWHERE, "null", "https://shop.example.com.evil.example"])
def test_preflight_from_a_foreign_origin_gets_no_allow_origin(
    anon: APIClient, source: Any, origin: str
) -> None:
    response = preflight(anon, origin)
    assert response.status_code == 204
    assert "Access-Control-Allow-Origin" not in response
    assert "Origin" in response["Vary"]


def test_preflight_ignores_origins_of_disabled_sources(anon: APIClient, source: Any) -> None:
    services.source_set_enabled(source=source, enabled=False)
    response = preflight(anon, SHOP)
    assert "Access-Control-Allow-Origin" not in response


def test_post_from_an_allowed_origin_gets_cors_headers(sdk: APIClient, source: Any) -> None:
    response = post_json(sdk, "/v1/t", {"userId": "u-1", "event": "E"}, HTTP_ORIGIN=SHOP)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert response["Access-Control-Allow-Credentials"] == "false"
    assert events(source) == [("track", "E")]


def test_post_from_a_foreign_origin_is_403_and_stores_nothing(sdk: APIClient, source: Any) -> None:
    response = post_json(
        sdk,
        "/v1/batch",
        {"batch": [{"type": "track", "event": "E", "userId": "u"}]},
        HTTP_ORIGIN=ELSEWHERE,
    )
    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response
    assert Event.objects.count() == 0


def test_post_from_another_sources_origin_is_403(
    sdk: APIClient, source: Any, other_source: Any
) -> None:
    # given: globex's origin passes the preflight (some source allows it), but not acme's key
    assert preflight(sdk, "https://globex.example.org")["Access-Control-Allow-Origin"]
    # when
    response = post_json(
        sdk, "/v1/t", {"userId": "u-1", "event": "E"}, HTTP_ORIGIN="https://globex.example.org"
    )
    # then
    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"
    assert Event.objects.count() == 0


def test_request_without_origin_is_allowed(sdk: APIClient, source: Any) -> None:
    response = post_json(sdk, "/v1/t", {"userId": "u-1", "event": "E"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response


def test_cors_middleware_leaves_other_paths_alone(anon: APIClient, source: Any) -> None:
    response = preflight(anon, SHOP, path="/api/v1/workspace/")
    assert "Access-Control-Allow-Origin" not in response


# --- rate limit -------------------------------------------------------------------------------


def test_rate_limit_is_counted_in_messages_and_answers_429_with_retry_after(
    anon: APIClient, workspace: Any
) -> None:
    # given
    limited = services.source_create(workspace=workspace, name="Limited", rate_limit_per_minute=3)
    anon.credentials(HTTP_AUTHORIZATION=basic(limited.write_key))
    two = {"batch": [{"type": "track", "event": f"E{i}", "userId": "u"} for i in range(2)]}
    # when
    first = post_json(anon, "/v1/batch", two)
    second = post_json(anon, "/v1/batch", two)
    third = post_json(anon, "/v1/t", {"userId": "u", "event": "Last"})
    fourth = post_json(anon, "/v1/t", {"userId": "u", "event": "Over"})
    # then
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["code"] == "rate_limited"
    assert set(second.json()) == {"code", "message"}
    assert 1 <= int(second["Retry-After"]) <= 60
    assert third.status_code == 200  # a refused request takes nothing from the window
    assert fourth.status_code == 429
    assert Event.objects.filter(source=limited).count() == 3


def test_rate_limit_is_per_source(anon: APIClient, workspace: Any, source: Any) -> None:
    limited = services.source_create(workspace=workspace, name="Limited", rate_limit_per_minute=1)
    over = {"batch": [{"type": "track", "event": "E", "userId": "u"}] * 2}
    assert (
        post_json(anon, "/v1/batch", over, HTTP_AUTHORIZATION=basic(limited.write_key)).status_code
        == 429
    )
    assert (
        post_json(anon, "/v1/batch", over, HTTP_AUTHORIZATION=basic(source.write_key)).status_code
        == 200
    )


def test_429_is_readable_by_an_allowed_browser_origin(anon: APIClient, workspace: Any) -> None:
    limited = services.source_create(
        workspace=workspace, name="Limited", rate_limit_per_minute=0, allowed_origins=[SHOP]
    )
    response = post_json(
        anon,
        "/v1/t",
        {"userId": "u", "event": "E"},
        HTTP_AUTHORIZATION=basic(limited.write_key),
        HTTP_ORIGIN=SHOP,
    )
    assert response.status_code == 429
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "Retry-After" in response["Access-Control-Expose-Headers"]


def test_operator_loads_may_skip_the_rate_limit(workspace: Any) -> None:
    # given
    from django.utils import timezone

    limited = services.source_create(workspace=workspace, name="Limited", rate_limit_per_minute=1)
    payloads = [{"type": "track", "event": f"E{i}", "userId": "u"} for i in range(3)]
    meta = collect_services.RequestMeta(received_at=timezone.now())
    # when
    result = collect_services.collect_messages(
        source=limited, payloads=payloads, request_meta=meta, enforce_rate_limit=False
    )
    # then
    assert result.accepted == 3
    assert Event.objects.filter(source=limited).count() == 3


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/track/extra", "/v1/"])
def test_unknown_collection_paths_answer_json_404(sdk: APIClient, source: Any, path: str) -> None:
    response = post_json(sdk, path, {"userId": "u-1", "event": "E"})
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "No such collection endpoint."}
