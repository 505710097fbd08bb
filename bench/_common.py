"""What the benchmark scripts share: the machine's load, and the throw-away PostgreSQL
databases they create and drop (never the server's own: postgres, template0, template1)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of one process (Linux /proc), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as the runs print them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def bench_database_name(database_url: str) -> str:
    """The database a bench URL names; refuses one that is not a dedicated bench database."""
    name = str(conninfo.conninfo_to_dict(database_url).get("dbname") or "")
    if not name or name in {"postgres", "template0", "template1"}:
        raise SystemExit(f"refusing to drop database {name!r}: give a dedicated bench database")
    return name


def admin_execute(database_url: str, *statements: sql.Composed) -> None:
    """Run statements on the server's `postgres` database (autocommit), e.g. CREATE DATABASE."""
    admin = conninfo.make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def drop_database(database_url: str) -> str:
    """Drop the bench database (connections forced off); returns its name."""
    name = bench_database_name(database_url)
    admin_execute(
        database_url,
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
    )
    return name


def recreate_database(database_url: str, settings: Sequence[str] = ()) -> str:
    """Drop and create the bench database, with `ALTER DATABASE .. SET` for each NAME=VALUE of
    `settings`; returns its name."""
    name = drop_database(database_url)
    statements: list[sql.Composed] = [sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))]
    for item in settings:
        setting, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--db-setting wants NAME=VALUE, not {item!r}")
        statements.append(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(name), sql.SQL(setting.strip()), sql.Literal(value.strip())
            )
        )
    admin_execute(database_url, *statements)
    return name
