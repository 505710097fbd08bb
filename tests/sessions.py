"""A second PostgreSQL session for tests of locks between transactions (what another worker
holds while the code under test runs)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
from django.db import connection


def other_session() -> psycopg.Connection[Any]:
    """A new connection to the test database, outside Django, in a transaction."""
    params = connection.get_connection_params()
    dsn = psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in ("dbname", "host", "port", "user", "password")}
    )
    return psycopg.connect(dsn, autocommit=False)


def held_by_another_drain(
    batch: Any, finish: Callable[[psycopg.Connection[Any]], None]
) -> threading.Thread:
    """Another session claims intake `batch` as a drain does (its shard's advisory lock, the
    row's lock); then, in a thread, `finish(session)` ends that transaction its own way (the
    session is closed after)."""
    from collect import intake

    other = other_session()
    other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [intake._SHARD_LOCK, batch.shard])
    other.execute("SELECT id FROM collect_intakebatch WHERE id = %s FOR UPDATE", [batch.pk])

    def run() -> None:
        try:
            finish(other)
        finally:
            other.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread
