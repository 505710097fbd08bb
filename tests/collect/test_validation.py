"""Turning one Segment-spec message into an InboundMessage (no database needed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings

from collect.validation import MessageError, RequestMeta, validate_message
from profiles.contracts import InboundMessage

RECEIVED = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
META = RequestMeta(received_at=RECEIVED, ip="203.0.113.9")


def ok(raw: Any, meta: RequestMeta = META, index: int = 0) -> InboundMessage:
    result = validate_message(raw, index=index, meta=meta)
    assert isinstance(result, InboundMessage), result
    return result


def error(raw: Any, meta: RequestMeta = META, index: int = 0) -> tuple[int, str]:
    result = validate_message(raw, index=index, meta=meta)
    assert isinstance(result, MessageError), result
    return (result.index, result.code)


# --- identity ---------------------------------------------------------------------------------


def test_numeric_ids_become_strings() -> None:
    msg = ok({"type": "track", "event": "E", "userId": 12345, "anonymousId": 7.0})
    assert (msg.user_id, msg.anonymous_id) == ("12345", "7")


def test_explicit_nulls_are_absent_values() -> None:
    msg = ok({"type": "track", "event": "E", "userId": None, "anonymousId": "a-1"})
    assert (msg.user_id, msg.anonymous_id) == (None, "a-1")


@pytest.mark.parametrize(
    "ids",
    [{}, {"userId": None, "anonymousId": None}, {"userId": "", "anonymousId": "  "}],
)
def test_a_message_needs_user_id_or_anonymous_id(ids: dict[str, Any]) -> None:
    assert error({"type": "track", "event": "E", **ids}, index=3) == (3, "missing_identity")


@pytest.mark.parametrize("bad", [True, ["u"], {"id": "u"}, float("nan")])
def test_ids_of_other_types_are_invalid(bad: Any) -> None:
    assert error({"type": "track", "event": "E", "userId": bad}) == (0, "invalid_field")


# --- types ------------------------------------------------------------------------------------


def test_type_from_the_path_is_used_when_the_body_has_none() -> None:
    meta = RequestMeta(received_at=RECEIVED, message_type="page")
    assert ok({"anonymousId": "a"}, meta).type == "page"


def test_type_in_the_body_must_match_the_path() -> None:
    meta = RequestMeta(received_at=RECEIVED, message_type="track")
    assert error({"type": "identify", "userId": "u"}, meta) == (0, "invalid_type")
    assert ok({"type": "Track", "userId": "u", "event": "E"}, meta).type == "track"


@pytest.mark.parametrize("bad", [None, "", "purchase", 3])
def test_batch_items_need_a_known_type(bad: Any) -> None:
    assert error({"type": bad, "userId": "u"}) == (0, "invalid_type")


def test_track_needs_an_event_name() -> None:
    assert error({"type": "track", "userId": "u"}) == (0, "missing_event")
    assert error({"type": "track", "userId": "u", "event": " "}) == (0, "missing_event")
    assert error({"type": "track", "userId": "u", "event": 5}) == (0, "invalid_field")
    assert ok({"type": "track", "userId": "u", "event": "Signed Up"}).name == "Signed Up"


def test_alias_needs_previous_id() -> None:
    assert error({"type": "alias", "userId": "u"}) == (0, "missing_previous_id")
    msg = ok({"type": "alias", "userId": "u", "previousId": 99})
    assert msg.previous_id == "99"


def test_group_needs_group_id_and_keeps_group_traits_off_the_profile() -> None:
    assert error({"type": "group", "userId": "u"}) == (0, "missing_group_id")
    msg = ok({"type": "group", "userId": "u", "groupId": "g-1", "traits": {"employees": 40}})
    assert (msg.group_id, msg.properties, msg.traits) == ("g-1", {"employees": 40}, {})


def test_page_keeps_name_and_legacy_category() -> None:
    msg = ok({"type": "page", "anonymousId": "a", "name": "Home", "category": "Docs"})
    assert (msg.name, msg.properties) == ("Home", {"category": "Docs"})


# --- traits, properties, context --------------------------------------------------------------


def test_identify_traits_merge_context_traits_with_top_level_winning() -> None:
    msg = ok(
        {
            "type": "identify",
            "userId": "u",
            "traits": {"plan": "pro"},
            "context": {"traits": {"plan": "free", "email": "r@example.com"}},
        }
    )
    assert msg.traits == {"plan": "pro", "email": "r@example.com"}


def test_traits_of_non_identify_messages_are_not_profile_traits() -> None:
    msg = ok({"type": "track", "event": "E", "userId": "u", "context": {"traits": {"plan": "x"}}})
    assert msg.traits == {}


@pytest.mark.parametrize("key", ["properties", "traits", "context", "integrations"])
def test_objects_must_be_objects(key: str) -> None:
    assert error({"type": "track", "event": "E", "userId": "u", key: "x"}) == (0, "invalid_field")
    assert ok({"type": "track", "event": "E", "userId": "u", key: None}).properties == {}


def test_batch_context_and_integrations_are_merged_under_the_message_own() -> None:
    meta = RequestMeta(
        received_at=RECEIVED,
        context={"library": {"name": "batch"}, "locale": "en-GB"},
        integrations={"All": True},
    )
    msg = ok(
        {
            "type": "track",
            "event": "E",
            "userId": "u",
            "context": {"locale": "de-DE"},
            "integrations": {"Mixpanel": False},
        },
        meta,
    )
    assert msg.context == {
        "library": {"name": "batch"},
        "locale": "de-DE",
        "integrations": {"All": True, "Mixpanel": False},
    }


def test_ip_comes_from_context_else_from_the_request() -> None:
    assert ok({"type": "page", "anonymousId": "a"}).ip == "203.0.113.9"
    msg = ok({"type": "page", "anonymousId": "a", "context": {"ip": "198.51.100.4"}})
    assert msg.ip == "198.51.100.4"
    assert ok({"type": "page", "anonymousId": "a"}, RequestMeta(received_at=RECEIVED)).ip is None


# --- message ids ---------------------------------------------------------------------------


def test_missing_message_id_gets_a_uuid4() -> None:
    for raw_id in (None, ""):
        msg = ok({"type": "track", "event": "E", "userId": "u", "messageId": raw_id})
        assert uuid.UUID(msg.message_id).version == 4


def test_message_id_is_kept_and_limited_to_128_characters() -> None:
    assert ok({"type": "page", "anonymousId": "a", "messageId": "x" * 128}).message_id == "x" * 128
    assert error({"type": "page", "anonymousId": "a", "messageId": "x" * 129}) == (
        0,
        "invalid_message_id",
    )
    assert error({"type": "page", "anonymousId": "a", "messageId": {"a": 1}}) == (
        0,
        "invalid_message_id",
    )


# --- timestamps -------------------------------------------------------------------------------


def test_clock_skew_is_corrected_with_sent_at() -> None:
    # given: the client clock runs 1 hour fast; the event happened 5 s before sending
    msg = ok(
        {
            "type": "track",
            "event": "E",
            "userId": "u",
            "timestamp": "2026-11-28T12:59:55Z",
            "sentAt": "2026-11-28T13:00:00.000Z",
        }
    )
    # then
    assert msg.timestamp == RECEIVED - timedelta(seconds=5)
    assert msg.original_timestamp == datetime(2026, 11, 28, 12, 59, 55, tzinfo=UTC)
    assert msg.sent_at == datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    assert msg.received_at == RECEIVED


def test_rudderstack_original_timestamp_and_batch_sent_at() -> None:
    meta = RequestMeta(received_at=RECEIVED, sent_at="2026-11-28T11:00:10.000+00:00")
    msg = ok(
        {
            "type": "track",
            "event": "E",
            "anonymousId": "a",
            "originalTimestamp": "2026-11-28T11:00:00.000Z",
        },
        meta,
    )
    assert msg.timestamp == RECEIVED - timedelta(seconds=10)


def test_without_sent_at_the_timestamp_is_taken_as_is() -> None:
    msg = ok({"type": "page", "anonymousId": "a", "timestamp": "2026-01-02T03:04:05.123456+01:00"})
    assert msg.timestamp == datetime(2026, 1, 2, 2, 4, 5, 123456, tzinfo=UTC)


def test_without_any_timestamp_the_receive_time_is_used() -> None:
    assert ok({"type": "page", "anonymousId": "a"}).timestamp == RECEIVED


def test_naive_timestamps_are_utc() -> None:
    msg = ok({"type": "page", "anonymousId": "a", "timestamp": "2026-01-02T03:04:05"})
    assert msg.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("key", ["timestamp", "originalTimestamp", "sentAt"])
@pytest.mark.parametrize("bad", ["yesterday", 1700000000, "2026-13-01T00:00:00Z"])
def test_invalid_timestamps_are_rejected(key: str, bad: Any) -> None:
    assert error({"type": "page", "anonymousId": "a", key: bad}) == (0, "invalid_timestamp")


def test_a_skew_beyond_the_calendar_is_rejected() -> None:
    raw = {
        "type": "page",
        "anonymousId": "a",
        "timestamp": "0001-01-01T00:00:00Z",
        "sentAt": "9999-12-31T00:00:00Z",
    }
    assert error(raw) == (0, "invalid_timestamp")


# --- size ---------------------------------------------------------------------------------


@override_settings(COLLECT_MAX_EVENT_BYTES=200)
def test_event_size_is_measured_on_the_serialized_message() -> None:
    small = {"type": "track", "event": "E", "userId": "u", "properties": {"p": "x" * 100}}
    big = {"type": "track", "event": "E", "userId": "u", "properties": {"p": "x" * 200}}
    assert ok(small).properties == {"p": "x" * 100}
    assert error(big, index=4) == (4, "event_too_large")


def test_error_messages_never_echo_values() -> None:
    result = validate_message(
        {"type": "track", "userId": "secret@example.com", "event": ["x"]}, index=0, meta=META
    )
    assert isinstance(result, MessageError)
    assert "secret" not in result.message


def test_a_message_must_be_an_object() -> None:
    assert error(["not", "an", "object"], index=2) == (2, "invalid_message")
