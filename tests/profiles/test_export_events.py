"""The events handler's export: sealed values merged back into the plain ones, and the
PostgreSQL path (one query, JSON built by the database) equal to the portable one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from profiles import handlers, services
from profiles.models import Event, Profile
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


def test_merged_goes_one_level_deep() -> None:
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
