"""Planner statistics for tables that grow fast (ingestion), kept fresh by the application.

PostgreSQL plans from the statistics `ANALYZE` gathers. A table never analyzed, or analyzed
when it was a tenth of its size, gets plans for the wrong size: whole-table scans and hash
joins where an index probe was right, so that every batch costs more as the table grows.
Autovacuum analyzes a table once its changed rows exceed 50 + 10% of it, checking each database
once a minute; a server may run without it (this project's CI and benchmark machine does), and
in the first minute of a bulk load it has not looked yet. `analyze_grown_tables` does the same
from the application, with a higher threshold (so that it rarely triggers where autovacuum
runs), at most once per interval per process, one process at a time per database, and
without the statistics of JSON and binary columns (most of the cost of an ANALYZE of the
events table, and no use to the queries of ingestion).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)

_LOCK_KEY = 0x43445053  # "CDPS": one analyzing session per database at a time
_next_check = 0.0


# Columns left out: statistics of JSON and binary values (event properties, sealed values,
# blind indexes) cost most of an ANALYZE (their values are read and detoasted) and serve no
# query of the ingestion path; the row counts and every other column's statistics are kept.
_SKIPPED_TYPES = ("json", "jsonb", "bytea")


def _target(cursor: Any, table: str) -> str:
    """`table (columns...)`: the table with the columns worth their statistics."""
    cursor.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "AND t.typname <> ALL(%s) ORDER BY a.attnum",
        [connection.ops.quote_name(table), list(_SKIPPED_TYPES)],
    )
    quote = connection.ops.quote_name
    columns = [quote(name) for (name,) in cursor.fetchall()]
    return quote(table) + (f" ({', '.join(columns)})" if columns else "")


def analyze_grown_tables(*, force: bool = False) -> list[str]:
    """ANALYZE the tables of the current schema whose changed rows since their last analyze
    exceed max(CDP_ANALYZE_MIN_ROWS, CDP_ANALYZE_FRACTION x their rows); checked at most every
    CDP_ANALYZE_SECONDS in this process (0 turns it off) unless `force`. PostgreSQL only; call
    it outside a transaction (after a commit). Returns the tables analyzed."""
    global _next_check  # noqa: PLW0603
    every = float(getattr(settings, "CDP_ANALYZE_SECONDS", 10))
    if connection.vendor != "postgresql" or (every <= 0 and not force):
        return []
    now = time.monotonic()
    if not force and now < _next_check:
        return []
    _next_check = now + every
    if connection.in_atomic_block:
        return []  # ANALYZE would run inside the caller's transaction, holding its locks
    min_rows = int(getattr(settings, "CDP_ANALYZE_MIN_ROWS", 1000))
    fraction = float(getattr(settings, "CDP_ANALYZE_FRACTION", 0.5))
    analyzed: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_KEY])
        row: Any = cursor.fetchone()
        if not row or not row[0]:
            return []  # another process is at it
        try:
            cursor.execute(
                "SELECT relname FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() "
                "AND n_mod_since_analyze > greatest(%s, %s * n_live_tup) "
                "ORDER BY n_mod_since_analyze DESC",
                [min_rows, fraction],
            )
            names = [name for (name,) in cursor.fetchall()]
            for name in names:
                cursor.execute(f"ANALYZE {_target(cursor, name)}")
                analyzed.append(name)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
    return analyzed


def refresh_statistics() -> None:
    """`analyze_grown_tables` where its failure (a statement or lock timeout on a big table)
    must not fail the caller's committed work: after a drain round, after a collection
    request. The statistics only help the planner; the error's class is logged, never its
    text."""
    try:
        analyze_grown_tables()
    except DatabaseError as exc:
        logger.warning("planner statistics not refreshed: %s", type(exc).__name__)
