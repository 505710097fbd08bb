"""Consent gate benchmark: `consent_gate_profiles` over a million profiles against the same
question in hand-written SQL, in one run on one PostgreSQL database.

    .venv/bin/python bench/consent.py [--profiles 1000000] [--repeat 9]
        [--database-url postgres://postgres@127.0.0.1:5432/cdp_bench_consent]
        [--reuse-db] [--keep-db] [--explain]

What it does:

1. Drops and recreates the bench database and migrates it (`manage.py migrate` with
   DJANGO_SETTINGS_MODULE=cdp.settings.test and DATABASE_URL), then sets Django up in this
   process on it. `--reuse-db` skips steps 1 and 2 when a previous `--keep-db` run left the data.
2. Creates the workspace (`workspace_create`) and its purposes (`purposes_ensure_defaults`),
   then generates, in SQL: PROFILES active profiles (`INSERT ... SELECT generate_series`,
   `gen_random_uuid()` ids, `--restricted` of them restricted) plus a tenth as many in a second
   workspace; banner decisions for every consent purpose (`--granted` accept all, `--denied`
   reject all, `--withdrawn` accept then withdraw later, the rest never decide) as ledger rows
   with random server times over the last year and random (unique) hashes, which the bench
   does not verify; the current state per profile and purpose from the ledger's latest row.
   The generating statements run with a large work_mem and, for a superuser, without
   foreign-key triggers (the rows are consistent by construction). Then VACUUM ANALYZE.
3. Times, alternating within each run and in the same process, for the analytics purpose in
   the EU (opt-in: granted only) and in US-CA (opt-out: granted or no decision):
   - count: `consent_gate_profiles(...).count()` against `SELECT count(*)` of the hand-written
     query (profiles joined to their state for the purpose);
   - ids streamed: `values_list("pk", flat=True).iterator(chunk_size=CHUNK)` into a set
     against the hand-written query read the same way (a server-side cursor, CHUNK rows per
     fetch) into a set;
   - ids fetched (information): the whole result at once, `set(values_list(...))` against a
     plain cursor's fetchall().
   Both sides must give the same ids (asserted). Each ratio is the median over the runs of
   ours / hand-written, the two sides of a run having run back to back; `ratio` is the worst
   of the count and ids-streamed ratios (the bar is <= 1.10). Times are wall clock; the
   median CPU time of this process (the client side: the ORM, the driver, building the set)
   is printed next to them.
4. For information, times the gate at a past moment (`at=`, the ledger as it stood 180 days
   ago) against a hand-written DISTINCT ON over the ledger.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parent.parent
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench._common import admin_execute, bench_database_name, load_average, recreate_database  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cdp_bench_consent"
SETTINGS = "cdp.settings.test"
CHUNK = 10_000
# The figures the bar applies to; "ids fetched" (the whole result at once) is information.
BAR_KINDS = ("count", "ids streamed")
WORKSPACE_SLUG = "bench-shop"
OTHER_SLUG = "bench-other"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000, help="default 1000000")
    parser.add_argument("--repeat", type=int, default=9, help="runs per figure (median)")
    parser.add_argument("--granted", type=float, default=0.40, help="share accepting all")
    parser.add_argument("--denied", type=float, default=0.20, help="share rejecting all")
    parser.add_argument("--withdrawn", type=float, default=0.03, help="share withdrawing")
    parser.add_argument("--restricted", type=float, default=0.01, help="share restricted")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--reuse-db", action="store_true", help="keep a previous run's data")
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of both")
    return parser.parse_args()


def _create_and_migrate(database_url: str) -> None:
    recreate_database(database_url)
    _migrate(database_url)


def _migrate(database_url: str) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "DATABASE_URL": database_url}
    subprocess.run(
        [sys.executable, str(ROOT_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"],
        cwd=ROOT_DIR,
        env=env,
        check=True,
        timeout=900,
    )


def _timed(what: str, action: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = action()
    print(f"  {what}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


# --- data ----------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> None:
    from django.db import connection, transaction

    from consent import services as consent_services
    from consent.enums import LegalBasis
    from profiles import services as profile_services

    workspace = profile_services.workspace_create(slug=WORKSPACE_SLUG, name="Bench Shop")
    other = profile_services.workspace_create(slug=OTHER_SLUG, name="Bench Other")
    purposes = consent_services.purposes_ensure_defaults(workspace=workspace)
    consent_services.purposes_ensure_defaults(workspace=other)
    consent_purposes = [p.pk for p in purposes if p.legal_basis == LegalBasis.CONSENT]
    notice_version = workspace_notice_version(workspace)
    granted, denied, withdrawn = args.granted, args.denied, args.withdrawn
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        replica = bool(cursor.fetchone()[0])  # setting the replication role takes a superuser

    def run(statement: str, params: dict[str, Any]) -> int:
        with transaction.atomic(), connection.cursor() as cursor:
            # Generation only: sorts in memory, and no foreign-key trigger per row (the rows
            # are consistent by construction). Both are reset at commit.
            cursor.execute("SET LOCAL work_mem = '256MB'")
            if replica:
                cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(statement, params)
            return cursor.rowcount

    profiles_sql = """
        INSERT INTO profiles_profile (id, workspace_id, status, attributes, merge_count,
            restricted, first_seen_at, last_seen_at, created_at, updated_at)
        SELECT gen_random_uuid(), %(ws)s, 'active', '{}'::jsonb, 0, random() < %(restricted)s,
            ts, ts, ts, ts
        FROM (SELECT now() - random() * interval '730 days' AS ts
              FROM generate_series(1, %(n)s)) AS g
    """
    _timed(
        f"{args.profiles:,} profiles",
        lambda: run(
            profiles_sql, {"ws": workspace.pk, "restricted": args.restricted, "n": args.profiles}
        ),
    )
    _timed(
        f"{args.profiles // 10:,} profiles in a second workspace",
        lambda: run(
            profiles_sql,
            {"ws": other.pk, "restricted": args.restricted, "n": max(args.profiles // 10, 1)},
        ),
    )
    # One banner decision per deciding profile, for every consent purpose at once (accept all
    # or reject all); "withdrawn" people accepted first and withdrew later.
    run(
        """
        CREATE UNLOGGED TABLE bench_decision AS
        SELECT id AS profile_id,
               CASE WHEN r < %(g)s THEN 'granted'
                    WHEN r < %(g)s + %(d)s THEN 'denied'
                    ELSE 'withdrawn' END AS final,
               now() - random() * interval '365 days' AS t,
               decode(md5(id::text) || md5(id::text || ':'), 'hex') AS subject_index
        FROM (SELECT id, random() AS r FROM profiles_profile WHERE workspace_id = %(ws)s) AS s
        WHERE r < %(g)s + %(d)s + %(w)s
        """,
        {"g": granted, "d": denied, "w": withdrawn, "ws": workspace.pk},
    )
    record_sql = """
        INSERT INTO consent_consentrecord (id, workspace_id, profile_id, subject_type,
            subject_index, purpose_id, decision, notice_version_id, method, jurisdiction,
            source_id, client_time, server_time, proof, signals, prev_hash, record_hash)
        SELECT gen_random_uuid(), %(ws)s, d.profile_id, 'anonymous_id', d.subject_index,
            pu.id, {decision}, %(nv)s, {method}, 'DE', NULL, {time}, {time},
            '{{}}'::jsonb, '{{}}'::jsonb,
            md5(random()::text) || md5(random()::text),
            md5(random()::text) || md5(random()::text)
        FROM bench_decision d CROSS JOIN unnest(%(purposes)s::bigint[]) AS pu(id)
        {where}
    """
    params = {"ws": workspace.pk, "nv": notice_version, "purposes": consent_purposes}
    first = record_sql.format(
        decision="CASE d.final WHEN 'withdrawn' THEN 'granted' ELSE d.final END",
        method="'banner'",
        time="d.t",
        where="",
    )
    later = record_sql.format(
        decision="'withdrawn'",
        method="'preference_centre'",
        time="d.t + (now() - d.t) * random()",
        where="WHERE d.final = 'withdrawn'",
    )
    count = _timed("banner records", lambda: run(first, params))
    count += _timed("withdrawal records", lambda: run(later, params))
    states = _timed(
        "states from the ledger",
        lambda: run(
            """
            INSERT INTO consent_consentstate (workspace_id, profile_id, purpose_id, decision,
                record_id, updated_at, needs_reconsent)
            SELECT DISTINCT ON (profile_id, purpose_id)
                workspace_id, profile_id, purpose_id, decision, id, server_time, false
            FROM consent_consentrecord
            WHERE workspace_id = %(ws)s
            ORDER BY profile_id, purpose_id, server_time DESC, id DESC
            """,
            {"ws": workspace.pk},
        ),
    )
    run("DROP TABLE bench_decision", {})
    print(f"  {count:,} consent records, {states:,} states", flush=True)


def workspace_notice_version(workspace: Any) -> int:
    from consent.models import NoticeVersion

    return NoticeVersion.objects.filter(notice__workspace=workspace).values_list("pk", flat=True)[0]


def _vacuum_analyze(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


# --- the hand-written queries -----------------------------------------------------------------

HAND_OPT_IN = """
    SELECT p.id FROM profiles_profile p
    JOIN consent_consentstate s ON s.profile_id = p.id AND s.purpose_id = %(purpose)s
    WHERE p.workspace_id = %(ws)s AND p.status = 'active' AND NOT p.restricted
      AND s.decision = 'granted'
"""
HAND_OPT_OUT = """
    SELECT p.id FROM profiles_profile p
    LEFT JOIN consent_consentstate s ON s.profile_id = p.id AND s.purpose_id = %(purpose)s
    WHERE p.workspace_id = %(ws)s AND p.status = 'active' AND NOT p.restricted
      AND (s.decision IS NULL OR s.decision = 'granted')
"""
HAND_AT_OPT_IN = """
    SELECT p.id FROM profiles_profile p
    JOIN (SELECT DISTINCT ON (profile_id) profile_id, decision
          FROM consent_consentrecord
          WHERE workspace_id = %(ws)s AND purpose_id = %(purpose)s AND server_time <= %(at)s
          ORDER BY profile_id, server_time DESC, id DESC) d ON d.profile_id = p.id
    WHERE p.workspace_id = %(ws)s AND p.status = 'active' AND NOT p.restricted
      AND d.decision = 'granted'
"""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from consent import selectors
        from profiles import selectors as profile_selectors

        self.args = args
        self.workspace = profile_selectors.workspace_get(slug=WORKSPACE_SLUG)
        purpose = selectors.purpose_get(workspace=self.workspace, key="analytics")
        assert purpose is not None
        self.purpose = purpose
        self.gate = selectors.consent_gate_profiles

    def ours(self, jurisdiction: str, at: Any = None) -> Any:
        return self.gate(
            workspace=self.workspace, purpose=self.purpose, jurisdiction=jurisdiction, at=at
        )

    def hand(self, query: str, at: Any = None) -> tuple[str, dict[str, Any]]:
        return query, {"ws": self.workspace.pk, "purpose": self.purpose.pk, "at": at}

    def explain(self, label: str, query: str, params: Any) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params)
            plan = "\n".join("    " + row[0] for row in cursor.fetchall())
        print(f"  EXPLAIN ANALYZE, {label}:\n{plan}", flush=True)

    def compare(self, jurisdiction: str, hand_query: str) -> dict[str, float]:
        """Median seconds of ours and hand-written, count and ids, alternating."""
        from django.db import connection

        mode = self.purpose.default_mode(jurisdiction)
        query, params = self.hand(hand_query)
        if self.args.explain:
            ours_sql, ours_params = (
                self.ours(jurisdiction).values_list("pk").query.sql_with_params()
            )
            self.explain(f"ours {jurisdiction}", ours_sql, ours_params)
            self.explain(f"hand-written {jurisdiction}", query, params)

        def ours_count() -> int:
            return int(self.ours(jurisdiction).count())

        def hand_count() -> int:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM ({query}) AS q", params)
                return int(cursor.fetchone()[0])

        def ours_stream() -> set[Any]:
            qs = self.ours(jurisdiction).values_list("pk", flat=True)
            return set(qs.iterator(chunk_size=CHUNK))

        def hand_stream() -> set[Any]:
            # What iterator() does: a server-side cursor read CHUNK rows at a time, declared
            # WITH HOLD as Django does in autocommit (PostgreSQL then materializes the result
            # when the DECLARE commits).
            ids: set[Any] = set()
            with connection.chunked_cursor() as cursor:
                cursor.execute(query, params)
                while rows := cursor.fetchmany(CHUNK):
                    ids.update(row[0] for row in rows)
            return ids

        def ours_all() -> set[Any]:
            return set(self.ours(jurisdiction).values_list("pk", flat=True))

        def hand_all() -> set[Any]:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                return {row[0] for row in cursor.fetchall()}

        pairs = {
            "count": (ours_count, hand_count),
            "ids streamed": (ours_stream, hand_stream),
            "ids fetched": (ours_all, hand_all),
        }
        times: dict[str, list[float]] = {
            f"{kind} {side}": [] for kind in pairs for side in ("ours", "hand")
        }
        cpu: dict[str, list[float]] = {name: [] for name in times}
        answers: dict[str, Any] = {}
        for run in range(self.args.repeat):
            for kind, (ours, hand) in pairs.items():
                order = [("ours", ours), ("hand", hand)]
                if run % 2:
                    order.reverse()
                for side, action in order:
                    started, cpu_started = time.perf_counter(), time.process_time()
                    answer = action()
                    times[f"{kind} {side}"].append(time.perf_counter() - started)
                    cpu[f"{kind} {side}"].append(time.process_time() - cpu_started)
                    answers[f"{kind} {side}"] = answer
        assert answers["count ours"] == answers["count hand"], answers
        for kind in ("ids streamed", "ids fetched"):
            assert answers[f"{kind} ours"] == answers[f"{kind} hand"], f"{kind}: they disagree"
            assert len(answers[f"{kind} ours"]) == answers["count ours"]
        medians = {name: statistics.median(values) for name, values in times.items()}
        print(
            f"{jurisdiction} ({mode}): {answers['count ours']:,} profiles may be processed",
            flush=True,
        )
        ratios = {}
        for kind in pairs:
            ours_s, hand_s = medians[f"{kind} ours"], medians[f"{kind} hand"]
            paired = list(zip(times[f"{kind} ours"], times[f"{kind} hand"], strict=True))
            # Each run's two sides ran back to back: their ratio cancels most of the drift of
            # a shared machine's load, which the medians of each side alone do not.
            ratios[kind] = statistics.median(o / h for o, h in paired)
            runs = ", ".join(f"{o * 1000:.0f}/{h * 1000:.0f}" for o, h in paired)
            ours_cpu = statistics.median(cpu[f"{kind} ours"])
            hand_cpu = statistics.median(cpu[f"{kind} hand"])
            print(
                f"  {kind:12}: ours {ours_s * 1000:6.0f} ms, hand-written {hand_s * 1000:6.0f} ms"
                f" (medians), ratio {ratios[kind]:.2f}; this process's CPU ours "
                f"{ours_cpu * 1000:.0f} ms, hand-written {hand_cpu * 1000:.0f} ms"
                f"  [runs ours/hand ms: {runs}]",
                flush=True,
            )
        return ratios

    def at_variant(self) -> None:
        """The ledger at a past moment, for information (no bar)."""
        from django.db import connection
        from django.utils import timezone

        at = timezone.now() - timedelta(days=180)
        query, params = self.hand(HAND_AT_OPT_IN, at)
        if self.args.explain:
            ours_sql, ours_params = self.ours("EU", at).values_list("pk").query.sql_with_params()
            self.explain("ours EU at=", ours_sql, ours_params)
            self.explain("hand-written EU at=", query, params)
        ours_times, hand_times = [], []
        ours_n = hand_n = 0
        for run in range(self.args.repeat):
            order = ["ours", "hand"] if run % 2 == 0 else ["hand", "ours"]
            for side in order:
                started = time.perf_counter()
                if side == "ours":
                    ours_n = self.ours("EU", at).count()
                    ours_times.append(time.perf_counter() - started)
                else:
                    with connection.cursor() as cursor:
                        cursor.execute(f"SELECT count(*) FROM ({query}) AS q", params)
                        hand_n = int(cursor.fetchone()[0])
                    hand_times.append(time.perf_counter() - started)
        assert ours_n == hand_n, (ours_n, hand_n)
        ours_s, hand_s = statistics.median(ours_times), statistics.median(hand_times)
        ratio = statistics.median(o / h for o, h in zip(ours_times, hand_times, strict=True))
        print(
            f"EU at now-180d (opt-in, from the ledger): {ours_n:,} profiles; count: ours "
            f"{ours_s * 1000:.0f} ms, hand-written DISTINCT ON {hand_s * 1000:.0f} ms, "
            f"ratio {ratio:.2f} (information only)",
            flush=True,
        )


def main() -> int:
    args = _parse()
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["DATABASE_URL"] = args.database_url
    print(
        f"consent gate benchmark: {args.profiles:,} profiles, median of {args.repeat} runs",
        flush=True,
    )
    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores",
        flush=True,
    )
    print(f"load average before: {load_average()}", flush=True)
    name = bench_database_name(args.database_url)
    if not args.reuse_db:
        print(f"setup: database {name} (dropped and created)", flush=True)
        _timed("create and migrate", lambda: _create_and_migrate(args.database_url))

    import django

    django.setup()
    from django.db import connection

    try:
        if not args.reuse_db:
            _generate(args)
            _timed("VACUUM ANALYZE", lambda: _vacuum_analyze(args.database_url))
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
            cursor.execute("SHOW work_mem")
            work_mem = cursor.fetchone()[0]
        print(f"postgresql {version}, work_mem {work_mem}", flush=True)
        bench = Bench(args)
        ratios = {}
        for jurisdiction, query in (("EU", HAND_OPT_IN), ("US-CA", HAND_OPT_OUT)):
            for kind, value in bench.compare(jurisdiction, query).items():
                if kind in BAR_KINDS:
                    ratios[f"{jurisdiction} {kind}"] = value
        bench.at_variant()
        print(f"load average after: {load_average()}", flush=True)
        worst = max(ratios, key=ratios.__getitem__)
        print(f"worst: {worst}", flush=True)
        print(f"ratio: {ratios[worst]:.2f}", flush=True)
    finally:
        connection.close()
        if not args.keep_db:
            admin_execute(
                args.database_url,
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
