"""The events handler's export: sealed values merged back into the plain ones, and the
PostgreSQL path (one query, the JSON decoded by orjson unless a big integer may be in it)
equal to the portable one."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from profiles import handlers, services
from profiles.models import DataKey, Event, Profile
from tests.profiles.ingest_helpers import msg

SENTINEL_EMAIL = "sentinel.page@example.com"
PAGE_URL = f"https://shop.example.com/account?email={SENTINEL_EMAIL}&tab=orders"


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Web")


def _ingest_page_view(source: Any) -> Profile:
    services.ingest_messages(
        source=source,
        messages=[
            msg(
                "page",
                anonymous_id="anon-page",
                properties={"path": "/account", "title": "Your account"},
                context={
                    "page": {
                        "path": "/account",
                        "title": "Your account",
                        "url": PAGE_URL,
                        "referrer": "https://www.example.org/",
                    },
                    "locale": "en-GB",
                },
                ip="203.0.113.7",
            )
        ],
    )
    return Profile.objects.get(status="active")


def test_export_keeps_page_path_and_title_next_to_the_sealed_url(source: Any) -> None:
    # given: a page view whose URL carries an email (ingestion seals the URL only)
    profile = _ingest_page_view(source)
    stored = Event.objects.get()
    assert SENTINEL_EMAIL not in repr(stored.context)  # sentinel: not stored in plaintext
    assert stored.sealed is not None
    assert stored.sealed["context"]["page"] == {"url": PAGE_URL}
    # when
    (event,) = handlers.export_events(profile)["events"]
    # then: the sealed page is merged into the plain one, not put in its place
    assert event["context"]["page"] == {
        "path": "/account",
        "title": "Your account",
        "url": PAGE_URL,
        "referrer": "https://www.example.org/",
    }
    assert event["context"]["ip"] == "203.0.113.7"
    assert event["context"]["locale"] == "en-GB"
    assert event["properties"] == {"path": "/account", "title": "Your account"}


def test_merged_puts_the_sealed_parts_back_where_they_were() -> None:
    plain = {"page": {"path": "/a", "url": "[email]"}, "locale": "en", "list": [1]}
    sealed = {"page": {"url": "https://x/?e=a@b.c"}, "ip": "198.51.100.1", "list": [2]}
    # when
    merged = handlers._merged(plain, sealed)
    # then
    assert merged == {
        "page": {"path": "/a", "url": "https://x/?e=a@b.c"},
        "locale": "en",
        "list": [2],
        "ip": "198.51.100.1",
    }
    assert plain == {"page": {"path": "/a", "url": "[email]"}, "locale": "en", "list": [1]}
    assert handlers._merged(plain, None) == plain


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL query")
def test_postgresql_export_equals_the_portable_one(source: Any) -> None:
    # given: events with and without microseconds, sealed and plain values, odd numbers
    profile = _ingest_page_view(source)
    services.ingest_messages(
        source=source,
        messages=[
            replace(
                msg(
                    anonymous_id="anon-page",
                    name="Order Completed",
                    properties={
                        "email": SENTINEL_EMAIL,
                        "revenue": 12.5,
                        "big": 123456789012345678901234567890,
                        "nested": {"a": [1, 2.25, None, True], "é": "ü"},
                        "name": 'quote " and <tag>',
                    },
                ),
                timestamp=datetime(2026, 11, 2, 9, 30, 1, 120, tzinfo=UTC),
            ),
            replace(
                msg(anonymous_id="anon-page", name="Viewed"),
                timestamp=datetime(2026, 11, 2, 9, 30, 1, 500000, tzinfo=UTC),
            ),
        ],
    )
    # when
    fast = handlers._export_events_postgresql(profile)
    portable = handlers._export_events_portable(profile)
    # then
    assert len(fast) == 3
    assert fast == portable
    assert [list(e) for e in fast] == [list(e) for e in portable]
    assert [list(e["properties"]) for e in fast] == [list(e["properties"]) for e in portable]
    assert {e["timestamp"] for e in fast} >= {
        "2026-11-02T09:30:01.000120+00:00",
        "2026-11-02T09:30:01.500000+00:00",
    }
    assert handlers.export_events(profile)["events"] == fast


@pytest.mark.parametrize(
    "document",
    [
        '{"big": 18446744073709551616}',  # 2**64: beyond orjson
        '{"low": -9223372036854775809}',  # one below the smallest 64-bit integer
        '{"n": [1, 123456789012345678901234567890, {"x": 2.5}]}',
        '{"digits": "1234567890123456789012", "n": 3}',  # a long run in a string
        '{"huge": 1e400}',  # orjson refuses it, the standard library reads infinity
        '{"plain": {"a": [1, 2.25, null, true], "é": "ü"}}',
    ],
)
def test_json_documents_decode_as_the_standard_library_does(document: str) -> None:
    # given: the document alone, and among plain ones
    others = ['{"a": 1}', '{"b": [2, 3]}']

    # when
    alone = handlers._json_documents([document])
    among = handlers._json_documents([others[0], document, others[1]])

    # then: equal values, and of the same types (no integer turned into a float)
    expected = json.loads(document)
    assert alone == [expected] and repr(alone) == repr([expected])
    assert among == [{"a": 1}, expected, {"b": [2, 3]}]
    assert repr(among[1]) == repr(expected)


def test_a_long_digit_run_across_two_documents_is_not_one_run() -> None:
    # given: nine and ten digits at the end of one text and the start of the next
    documents = ['{"a": 123456789}', "1234567890"]

    # when / then
    assert not handlers._has_long_digit_run("\n".join(documents))
    assert handlers._json_documents(documents) == [{"a": 123456789}, 1234567890]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"2026-11-02T09:30:01"', "2026-11-02T09:30:01+00:00"),
        ('"2026-11-02T09:30:01.5"', "2026-11-02T09:30:01.500000+00:00"),
        ('"2026-11-02T09:30:01.00012"', "2026-11-02T09:30:01.000120+00:00"),
        ('"2026-11-02T09:30:01.123456"', "2026-11-02T09:30:01.123456+00:00"),
        ('"0999-01-01T00:00:00.1"', "0999-01-01T00:00:00.100000+00:00"),
    ],
)
def test_isoformat_utc_writes_what_datetime_isoformat_writes(text: str, expected: str) -> None:
    # when / then
    assert handlers._isoformat_utc(text) == expected
    assert datetime.fromisoformat(expected).isoformat() == expected


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's text of timestamps")
@pytest.mark.parametrize("microsecond", [0, 1, 10, 120, 500000, 999999, 123450])
def test_isoformat_utc_of_postgresql_text(db: None, microsecond: int) -> None:
    # given: a timestamp as the events query reads it, in a session of another time zone and
    # another DateStyle
    at = datetime(2026, 3, 29, 1, 59, 59, microsecond, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'Europe/Berlin'")
        cursor.execute("SET LOCAL DateStyle = 'German'")
        cursor.execute("SELECT to_json(%s::timestamptz AT TIME ZONE 'UTC')::text", [at])
        (text,) = cursor.fetchone()

    # when / then
    assert handlers._isoformat_utc(text) == at.isoformat()


def test_the_keys_of_absorbed_profiles_are_preloaded(source: Any, monkeypatch: Any) -> None:
    # given: two people's events, then one identify call merging them
    services.ingest_messages(
        source=source,
        messages=[
            msg("identify", user_id="u-1", anonymous_id="anon-1"),
            msg(anonymous_id="anon-2", name="Viewed"),
            msg("identify", user_id="u-1", anonymous_id="anon-2"),
        ],
    )
    survivor = Profile.objects.get(merged_into__isnull=True)
    absorbed = Profile.objects.get(merged_into=survivor)
    keys = set(
        DataKey.objects.filter(profile__in=[survivor, absorbed]).values_list("pk", flat=True)
    )
    assert len(keys) == 2
    preloaded: list[Any] = []
    monkeypatch.setattr(handlers.envelope, "preload_data_keys", preloaded.extend)

    # when
    handlers._preload_event_keys(survivor)

    # then
    assert {key.id for key in preloaded} == keys
