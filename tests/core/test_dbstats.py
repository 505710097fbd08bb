"""cdp.core.dbstats: tables whose rows changed beyond the threshold since their last ANALYZE
are analyzed (without their JSON and binary columns), at most once per interval, never inside a
transaction, and not at all on SQLite or when turned off."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import override_settings

from cdp.core import dbstats
from profiles.models import SeenMessage

POSTGRES = "postgresql" in settings.DATABASES["default"]["ENGINE"]


def _seen(workspace: Any, n: int) -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    SeenMessage.objects.bulk_create(
        [SeenMessage(workspace=workspace, message_id=f"m-{i}", received_at=now) for i in range(n)]
    )


def _stats() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_mod_since_analyze, coalesce(analyze_count, 0) FROM pg_stat_user_tables "
            "WHERE relname = 'profiles_seenmessage'"
        )
        row = cursor.fetchone()
    return int(row[0]), int(row[1])


@pytest.mark.skipif(not POSTGRES, reason="PostgreSQL statistics")
@pytest.mark.django_db(transaction=True)
@override_settings(CDP_ANALYZE_MIN_ROWS=50, CDP_ANALYZE_FRACTION=0.2, CDP_ANALYZE_SECONDS=3600)
def test_a_grown_table_is_analyzed_once_then_left_alone(workspace: Any) -> None:
    # given: a table grown past the threshold
    _seen(workspace, 300)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    # when
    analyzed = dbstats.analyze_grown_tables(force=True)
    # then
    assert "profiles_seenmessage" in analyzed
    assert dbstats._target(connection.cursor(), "profiles_event").startswith('"profiles_event" (')
    assert '"properties"' not in dbstats._target(connection.cursor(), "profiles_event")
    # and: within the interval nothing is checked
    assert dbstats.analyze_grown_tables() == []


@pytest.mark.skipif(not POSTGRES, reason="PostgreSQL statistics")
def test_nothing_is_analyzed_inside_a_transaction(workspace: Any) -> None:
    _seen(workspace, 100)
    with transaction.atomic():
        assert dbstats.analyze_grown_tables(force=True) == []


@override_settings(CDP_ANALYZE_SECONDS=0)
def test_turned_off_it_does_nothing(workspace: Any) -> None:
    assert dbstats.analyze_grown_tables() == []


@pytest.mark.skipif(POSTGRES, reason="SQLite")
def test_sqlite_has_nothing_to_analyze(workspace: Any) -> None:
    assert dbstats.analyze_grown_tables(force=True) == []


def test_a_failed_refresh_is_logged_by_class_and_not_raised(monkeypatch: Any, caplog: Any) -> None:
    # given: ANALYZE fails with a message that might quote anything
    from django.db import OperationalError

    def fail() -> list[str]:
        raise OperationalError("canceling statement: sentinel-value@example.com")

    monkeypatch.setattr(dbstats, "analyze_grown_tables", fail)
    # when
    dbstats.refresh_statistics()
    # then: the caller goes on; the log names the error's class, never its text
    assert "OperationalError" in caplog.text
    assert "sentinel-value" not in caplog.text
