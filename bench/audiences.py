"""Audience benchmark: six compiled audiences against hand-written SQL for the same question, the
consent gate's cost on top of them, and how long a realtime audience takes to take in a profile
after an event is posted, in one run on one PostgreSQL database.

    .venv/bin/python bench/audiences.py [--profiles 100000] [--events 2000000] [--repeat 5]
        [--database-url postgres://postgres@127.0.0.1:5432/cdp_bench_audiences]
        [--latency-samples 5] [--port 8766] [--keep-db] [--reuse-db] [--explain]
        [--skip-latency]

What it does:

1. Drops and recreates the bench database and migrates it (`cdp.settings.production`, fresh
   random keys), then sets Django up in this process with the same environment. `--reuse-db`
   keeps a previous `--keep-db` run's data and skips steps 1 and 2.
2. Creates the workspace (`workspace_create`, which seeds the lifecycle stages) and its
   purposes, and generates in SQL (`INSERT .. SELECT generate_series`, foreign-key triggers off
   for a superuser; the rows are consistent by construction): PROFILES profiles with plain
   attributes (plan, country; 1 % restricted), EVENTS events over the last 180 days with a
   skewed activity per profile (a few busy profiles, many quiet ones) and more recent days
   busier: product views (a third of them premium), page views, cart adds, checkouts and
   orders with a numeric revenue; a tenth as many of both in a second workspace; banner
   decisions for the consent purposes (40 % accept all, 20 % reject all, the rest undecided)
   as ledger rows and current states; first/last seen of each profile from its events. Two
   computed traits (orders count, lifetime value) are computed through the service (timed,
   for information). Then VACUUM ANALYZE.
3. For each of six audiences (the seed's example among them), alternating within each run
   and in the same process, after one untimed run of each side: our compiled query
   (`activation.rules.profiles_matching`, compiled once, outside the timer) against a
   hand-written SQL for the same audience, both as a count
   and as the ids fetched into a set; both sides must give the same ids (asserted). `ratio` is
   the median over the runs of ours / hand-written, the two sides of a run having run back to
   back; the bar is <= 1.25 on each audience. Then the audience intersected with the consent
   gate (`consent.selectors.consent_gate_profiles`, analytics in the EU: opt-in) against the
   audience alone, ids fetched: `gated ratio`, bar <= 1.10. The full refresh of each audience
   (materializing membership with history) is timed for information.
4. Membership latency: starts gunicorn and one Celery worker (ingest and default queues, Redis
   broker at 127.0.0.1:6379 database 15, flushed first), creates a realtime audience of
   profiles who completed an order in the last day, and posts `--latency-samples` orders from
   new anonymous visitors to `/v1/track`, one at a time: the time from the POST until the
   profile is a member (polled every 20 ms). Bar: every sample under 5 s.

Every process it starts is stopped in a `finally`; every wait has a timeout.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parent.parent
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))

import orjson  # noqa: E402
import psycopg  # noqa: E402

from bench._common import bench_database_name, drop_database, load_average, recreate_database  # noqa: E402
from bench.ingest import Processes, _health_ok, _tool, _wait_until  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cdp_bench_audiences"
BROKER_URL = "redis://127.0.0.1:6379/15"
WORKSPACE_SLUG = "bench-audiences"
OTHER_SLUG = "bench-audiences-other"
QUERY_BAR = 1.25
GATED_BAR = 1.10
LATENCY_BAR = 5.0


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000, help="default 100000")
    parser.add_argument("--events", type=int, default=2_000_000, help="default 2000000")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--latency-samples", type=int, default=5)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    parser.add_argument("--reuse-db", action="store_true", help="keep a previous run's data")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of both")
    parser.add_argument("--skip-latency", action="store_true", help="no servers, no latency")
    parser.add_argument("--only", default="", help="comma-separated audience keys to time")
    return parser.parse_args()


def _environment(database_url: str, keys_file: Path) -> dict[str, str]:
    """Production settings with bench keys, kept in a file so that --reuse-db can open the
    data a previous run sealed (only the latency samples seal anything)."""
    if keys_file.exists():
        master, index, secret = keys_file.read_text().split()
    else:
        master = "bench:" + base64.b64encode(secrets.token_bytes(32)).decode()
        index = base64.b64encode(secrets.token_bytes(32)).decode()
        secret = secrets.token_urlsafe(50)
        keys_file.write_text(f"{master}\n{index}\n{secret}\n")
        keys_file.chmod(0o600)
    env = dict(os.environ)
    for name in ("REDIS_URL", "CELERY_RESULT_BACKEND", "DJANGO_DEBUG"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="cdp.settings.production",
        DATABASE_URL=database_url,
        CDP_MASTER_KEYS=master,
        CDP_INDEX_KEY=index,
        DJANGO_SECRET_KEY=secret,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        # Nothing here sends mail; the shell's EMAIL_BACKEND (the console one, say) could
        # only make the production settings refuse to load.
        EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
        CELERY_BROKER_URL=BROKER_URL,
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def _timed(what: str, action: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = action()
    print(f"  {what}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


# --- data ----------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> None:
    from django.db import connection, transaction

    from activation import services as activation_services
    from activation.enums import ComputedTraitKind
    from consent import services as consent_services
    from consent.enums import LegalBasis
    from consent.models import NoticeVersion
    from profiles import selectors as profile_selectors
    from profiles import services as profile_services
    from profiles.enums import DataKeyPurpose

    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        replica = bool(cursor.fetchone()[0])

    def run(statement: str, params: dict[str, Any]) -> int:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '256MB'")
            if replica:
                cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(statement, params)
            return cursor.rowcount

    for slug, name, share in ((WORKSPACE_SLUG, "Bench Shop", 1), (OTHER_SLUG, "Other Shop", 10)):
        workspace = profile_services.workspace_create(slug=slug, name=name)
        purposes = consent_services.purposes_ensure_defaults(workspace=workspace)
        source = profile_services.source_create(workspace=workspace, name="Web store")
        key_id = profile_services.data_key_create_unowned(
            workspace_id=workspace.pk, purpose=DataKeyPurpose.PROFILE
        )
        profiles, events = max(args.profiles // share, 10), max(args.events // share, 100)
        params: dict[str, Any] = {
            "ws": workspace.pk,
            "n": profiles,
            "e": events,
            "src": source.pk,
            "key": key_id,
        }
        run(
            """
            CREATE UNLOGGED TABLE bench_p AS
            SELECT g AS n, gen_random_uuid() AS id,
                   (ARRAY['guest','member','member','vip'])[1 + floor(random() * 4)::int] AS plan,
                   (ARRAY['DE','FR','GB','US','NL','SE','ES','IT'])[1 + floor(random() * 8)::int]
                       AS country,
                   random() < 0.01 AS restricted
            FROM generate_series(1, %(n)s) AS g
            """,
            params,
        )
        _timed(
            f"{profiles:,} profiles in {slug}",
            partial(
                run,
                """
                INSERT INTO profiles_profile (id, workspace_id, status, attributes, merge_count,
                    restricted, created_at, updated_at)
                SELECT id, %(ws)s, 'active',
                       jsonb_build_object('plan', plan, 'country', country), 0, restricted,
                       now() - interval '400 days', now()
                FROM bench_p
                """,
                params,
            ),
        )
        # Activity is skewed (random()^2 picks low numbers more often) and recent days are
        # busier (random()^1.5 of 180 days ago).
        _timed(
            f"{events:,} events in {slug}",
            partial(
                run,
                """
                INSERT INTO profiles_event (id, workspace_id, profile_id, origin_profile_id,
                    source_id, message_id, type, name, timestamp, received_at, properties,
                    context, data_key_id)
                SELECT gen_random_uuid(), %(ws)s, p.id, p.id, %(src)s, 'bench-' || e.g,
                       CASE WHEN e.kind < 0.25 THEN 'page' ELSE 'track' END,
                       CASE WHEN e.kind < 0.25 THEN 'Home'
                            WHEN e.kind < 0.70 THEN 'Product Viewed'
                            WHEN e.kind < 0.85 THEN 'Product Added'
                            WHEN e.kind < 0.91 THEN 'Checkout Started'
                            ELSE 'Order Completed' END,
                       e.ts, e.ts,
                       CASE WHEN e.kind < 0.25 THEN jsonb_build_object('title', 'Home')
                            WHEN e.kind < 0.91 THEN jsonb_build_object(
                                'product_id', 'sku-' || (100 + floor(e.r * 40)::int),
                                'category', (ARRAY['bags','home','office','kitchen'])
                                    [1 + floor(e.r * 4)::int],
                                'price', round((10 + e.r * 290)::numeric, 2),
                                'premium', e.r < 0.33)
                            ELSE jsonb_build_object(
                                'order_id', 'ord-' || e.g,
                                'revenue', round((15 + e.r * 400)::numeric, 2),
                                'currency', 'EUR') END,
                       '{}'::jsonb, %(key)s
                FROM (SELECT g, random() AS kind, random() AS r,
                             1 + floor(%(n)s * random() * random())::int AS pn,
                             now() - power(random(), 1.5) * interval '180 days' AS ts
                      FROM generate_series(1, %(e)s) AS g) AS e
                JOIN bench_p p ON p.n = e.pn
                """,
                params,
            ),
        )
        run(
            """
            UPDATE profiles_profile pr SET first_seen_at = s.first, last_seen_at = s.last
            FROM (SELECT profile_id, min(timestamp) AS first, max(timestamp) AS last
                  FROM profiles_event WHERE workspace_id = %(ws)s GROUP BY profile_id) AS s
            WHERE pr.id = s.profile_id
            """,
            params,
        )
        run("DROP TABLE bench_p", {})
        notice_version = NoticeVersion.objects.filter(notice__workspace=workspace).values_list(
            "pk", flat=True
        )[0]
        consent_purposes = [p.pk for p in purposes if p.legal_basis == LegalBasis.CONSENT]
        _timed(
            f"consent ledger and states in {slug}",
            partial(_consent, run, workspace, notice_version, consent_purposes),
        )
    workspace = profile_selectors.workspace_get(slug=WORKSPACE_SLUG)
    for key, name, kind, prop in (
        ("orders_count", "Orders", ComputedTraitKind.COUNT, ""),
        ("lifetime_value", "Lifetime value", ComputedTraitKind.SUM, "revenue"),
    ):
        _timed(
            f"computed trait {key} (service, every profile)",
            partial(
                activation_services.computed_trait_create,
                workspace=workspace,
                key=key,
                name=name,
                kind=kind,
                event_name="Order Completed",
                property=prop,
            ),
        )


def _consent(
    run: Callable[[str, dict[str, Any]], int], workspace: Any, nv: int, cp: list[int]
) -> None:
    run(
        """
        CREATE UNLOGGED TABLE bench_decision AS
        SELECT id AS profile_id, CASE WHEN r < 0.4 THEN 'granted' ELSE 'denied' END AS final,
               now() - random() * interval '365 days' AS t,
               decode(md5(id::text) || md5(id::text || ':'), 'hex') AS subject_index
        FROM (SELECT id, random() AS r FROM profiles_profile WHERE workspace_id = %(ws)s) AS s
        WHERE r < 0.6
        """,
        {"ws": workspace.pk},
    )
    run(
        """
        INSERT INTO consent_consentrecord (id, workspace_id, profile_id, subject_type,
            subject_index, purpose_id, decision, notice_version_id, method, jurisdiction,
            source_id, client_time, server_time, proof, signals, prev_hash, record_hash)
        SELECT gen_random_uuid(), %(ws)s, d.profile_id, 'anonymous_id', d.subject_index,
            pu.id, d.final, %(nv)s, 'banner', 'DE', NULL, d.t, d.t, '{}'::jsonb, '{}'::jsonb,
            md5(random()::text) || md5(random()::text), md5(random()::text) || md5(random()::text)
        FROM bench_decision d CROSS JOIN unnest(%(purposes)s::bigint[]) AS pu(id)
        """,
        {"ws": workspace.pk, "nv": nv, "purposes": cp},
    )
    run(
        """
        INSERT INTO consent_consentstate (workspace_id, profile_id, purpose_id, decision,
            record_id, updated_at, needs_reconsent)
        SELECT DISTINCT ON (profile_id, purpose_id)
            workspace_id, profile_id, purpose_id, decision, id, server_time, false
        FROM consent_consentrecord WHERE workspace_id = %(ws)s
        ORDER BY profile_id, purpose_id, server_time DESC, id DESC
        """,
        {"ws": workspace.pk},
    )
    run("DROP TABLE bench_decision", {})


# --- the six audiences and their hand-written SQL -------------------------------------------

BASE = (
    "SELECT p.id FROM profiles_profile p "
    "WHERE p.workspace_id = %(ws)s AND p.status = 'active' AND NOT p.restricted"
)

AUDIENCES: list[tuple[str, dict[str, Any], str]] = [
    (
        "premium_browsers",  # the seed's example
        {
            "all": [
                {
                    "event": {
                        "name": "Product Viewed",
                        "where": [{"property": "premium", "op": "=", "value": True}],
                        "count": {"op": ">=", "value": 3},
                        "within_last_days": 7,
                    }
                },
                {"event": {"name": "Order Completed", "within_last_days": 7, "did_not": True}},
            ]
        },
        BASE
        + """
          AND p.id IN (SELECT e.profile_id FROM profiles_event e
                       WHERE e.workspace_id = %(ws)s AND e.name = 'Product Viewed'
                         AND e.timestamp >= %(at)s - interval '7 days' AND e.timestamp <= %(at)s
                         AND e.properties ->> 'premium' = 'true'
                       GROUP BY e.profile_id HAVING count(*) >= 3)
          AND NOT EXISTS (SELECT 1 FROM profiles_event o
                          WHERE o.profile_id = p.id AND o.workspace_id = %(ws)s
                            AND o.name = 'Order Completed'
                            AND o.timestamp >= %(at)s - interval '7 days'
                            AND o.timestamp <= %(at)s)
        """,
    ),
    (
        "vip_recent_buyers",
        {
            "all": [
                {"trait": {"key": "plan", "op": "=", "value": "vip"}},
                {"trait": {"key": "country", "op": "in", "value": ["DE", "FR"]}},
                {"event": {"name": "Order Completed", "within_last_days": 30}},
            ]
        },
        BASE
        + """
          AND p.attributes ->> 'plan' = 'vip' AND p.attributes ->> 'country' IN ('DE', 'FR')
          AND EXISTS (SELECT 1 FROM profiles_event e
                      WHERE e.profile_id = p.id AND e.workspace_id = %(ws)s
                        AND e.name = 'Order Completed'
                        AND e.timestamp >= %(at)s - interval '30 days' AND e.timestamp <= %(at)s)
        """,
    ),
    (
        "repeat_customers",
        {"lifecycle": "repeat_customer"},
        BASE
        + """
          AND p.id IN (SELECT e.profile_id FROM profiles_event e
                       WHERE e.workspace_id = %(ws)s AND e.name = 'Order Completed'
                         AND e.timestamp <= %(at)s
                       GROUP BY e.profile_id HAVING count(*) >= 2)
        """,
    ),
    (
        "high_spenders",
        {
            "event": {
                "name": "Order Completed",
                "within_last_days": 365,
                "aggregate": {"fn": "sum", "property": "revenue", "op": ">=", "value": 500},
            }
        },
        BASE
        + """
          AND p.id IN (SELECT e.profile_id FROM profiles_event e
                       WHERE e.workspace_id = %(ws)s AND e.name = 'Order Completed'
                         AND e.timestamp >= %(at)s - interval '365 days'
                         AND e.timestamp <= %(at)s
                       GROUP BY e.profile_id
                       HAVING sum((e.properties ->> 'revenue')::float8) >= 500)
        """,
    ),
    (
        "cart_abandoners",
        {
            "sequence": {
                "first": {"name": "Product Added"},
                "then": {"name": "Order Completed"},
                "within": {"days": 1},
                "not_followed": True,
                "within_last_days": 30,
            }
        },
        BASE
        + """
          AND EXISTS (SELECT 1 FROM profiles_event a
                      WHERE a.profile_id = p.id AND a.workspace_id = %(ws)s
                        AND a.name = 'Product Added'
                        AND a.timestamp >= %(at)s - interval '30 days'
                        AND a.timestamp <= %(at)s - interval '1 day'
                        AND NOT EXISTS (SELECT 1 FROM profiles_event b
                                        WHERE b.profile_id = a.profile_id
                                          AND b.workspace_id = %(ws)s
                                          AND b.name = 'Order Completed'
                                          AND b.timestamp > a.timestamp
                                          AND b.timestamp <= a.timestamp + interval '1 day'))
        """,
    ),
    (
        "lapsed_valuable",
        {
            "all": [
                {"computed": {"key": "lifetime_value", "op": ">=", "value": 300}},
                {
                    "not": {
                        "profile": {"field": "last_seen_at", "op": "within_last_days", "value": 30}
                    }
                },
            ]
        },
        BASE
        + """
          AND EXISTS (SELECT 1 FROM activation_computedtraitvalue v
                      WHERE v.profile_id = p.id AND v.trait_id = %(ltv)s AND v.number >= 300)
          AND NOT (p.last_seen_at IS NOT NULL AND p.last_seen_at >= %(at)s - interval '30 days'
                   AND p.last_seen_at <= %(at)s)
        """,
    ),
]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from activation.models import ComputedTrait
        from consent import selectors as consent_selectors
        from profiles import selectors as profile_selectors

        self.args = args
        self.workspace = profile_selectors.workspace_get(slug=WORKSPACE_SLUG)
        purpose = consent_selectors.purpose_get(workspace=self.workspace, key="analytics")
        assert purpose is not None
        self.purpose = purpose
        self.gate = consent_selectors.consent_gate_profiles
        self.ltv = ComputedTrait.objects.get(workspace=self.workspace, key="lifetime_value").pk

    def explain(self, label: str, query: str, params: Any) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params)
            plan = "\n".join("    " + row[0] for row in cursor.fetchall())
        print(f"  EXPLAIN ANALYZE, {label}:\n{plan}", flush=True)

    def pairs(
        self, runs: int, pair: dict[str, tuple[Callable[[], Any], Callable[[], Any]]]
    ) -> dict[str, Any]:
        """Run each pair's two sides back to back (after one untimed run of each), alternating
        which goes first; per kind: the two sides' medians, the median of the per-run ratios,
        and each side's answer."""
        times: dict[str, list[tuple[float, float]]] = {kind: [] for kind in pair}
        answers: dict[str, tuple[Any, Any]] = {}
        for first, second in pair.values():  # warm both sides' pages into the cache, untimed
            first()
            second()
        for run in range(runs):
            for kind, (first, second) in pair.items():
                order = [(0, first), (1, second)]
                if run % 2:
                    order.reverse()
                took = [0.0, 0.0]
                got: list[Any] = [None, None]
                for side, action in order:
                    started = time.perf_counter()
                    got[side] = action()
                    took[side] = time.perf_counter() - started
                times[kind].append((took[0], took[1]))
                answers[kind] = (got[0], got[1])
        result = {}
        for kind, runs_ in times.items():
            result[kind] = {
                "a": statistics.median(a for a, _ in runs_),
                "b": statistics.median(b for _, b in runs_),
                "ratio": statistics.median(a / b for a, b in runs_),
                "runs": runs_,
                "answers": answers[kind],
            }
        return result

    def audience(self, key: str, rules: dict[str, Any], hand: str) -> dict[str, float]:
        from django.db import connection
        from django.utils import timezone

        from activation.rules import profiles_matching

        at = timezone.now()
        params: dict[str, Any] = {"ws": self.workspace.pk, "at": at, "ltv": self.ltv}
        started = time.perf_counter()
        ours = profiles_matching(workspace=self.workspace, rules=rules, at=at)
        compile_ms = (time.perf_counter() - started) * 1000
        ours_ids = ours.values_list("pk", flat=True)
        gated = ours & self.gate(workspace=self.workspace, purpose=self.purpose, jurisdiction="EU")
        gated_ids = gated.values_list("pk", flat=True)
        if self.args.explain:
            ours_sql, ours_params = ours_ids.query.sql_with_params()
            self.explain(f"ours {key}", ours_sql, ours_params)
            self.explain(f"hand-written {key}", hand, params)
            gated_sql, gated_params = gated_ids.query.sql_with_params()
            self.explain(f"gated {key}", gated_sql, gated_params)

        def hand_count() -> int:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM ({hand}) AS q", params)
                return int(cursor.fetchone()[0])

        def hand_ids() -> set[Any]:
            with connection.cursor() as cursor:
                cursor.execute(hand, params)
                return {row[0] for row in cursor.fetchall()}

        measured = self.pairs(
            self.args.repeat,
            {
                # .all(): a fresh queryset each run, never a cached result
                "count": (lambda: ours.all().count(), hand_count),
                "ids": (lambda: set(ours_ids.all()), hand_ids),
            },
        )
        count_ours, count_hand = measured["count"]["answers"]
        ids_ours, ids_hand = measured["ids"]["answers"]
        assert count_ours == count_hand, (key, count_ours, count_hand)
        assert ids_ours == ids_hand, f"{key}: the compiled query and the hand-written one disagree"
        gate = self.pairs(
            self.args.repeat, {"gated": (lambda: set(gated_ids.all()), lambda: set(ours_ids.all()))}
        )
        gated_answer, _ = gate["gated"]["answers"]
        assert gated_answer <= ids_ours
        print(f"{key}: {count_ours:,} profiles ({len(gated_answer):,} consented for analytics in "
              f"the EU); compiled in {compile_ms:.0f} ms", flush=True)  # fmt: skip
        for kind in ("count", "ids"):
            m = measured[kind]
            runs = ", ".join(f"{a * 1000:.0f}/{b * 1000:.0f}" for a, b in m["runs"])
            print(
                f"  {kind:5}: ours {m['a'] * 1000:6.0f} ms, hand-written {m['b'] * 1000:6.0f} ms "
                f"(medians), ratio {m['ratio']:.2f}  [runs ours/hand ms: {runs}]",
                flush=True,
            )
        g = gate["gated"]
        runs = ", ".join(f"{a * 1000:.0f}/{b * 1000:.0f}" for a, b in g["runs"])
        print(
            f"  gated: {g['a'] * 1000:6.0f} ms, ungated {g['b'] * 1000:6.0f} ms (medians), "
            f"gated ratio {g['ratio']:.2f}  [runs gated/ungated ms: {runs}]",
            flush=True,
        )
        return {
            "ratio": max(measured["count"]["ratio"], measured["ids"]["ratio"]),
            "gated": g["ratio"],
        }

    def refresh(self, key: str, rules: dict[str, Any], realtime: bool = False) -> Any:
        """Create the audience and time its first full refresh (information)."""
        from activation import services

        audience = services.audience_create(
            workspace=self.workspace, key=key, name=key, rules=rules, realtime=realtime
        )
        started = time.perf_counter()
        delta = services.audience_refresh(audience=audience)
        took = time.perf_counter() - started
        again = time.perf_counter()
        services.audience_refresh(audience=audience)
        print(
            f"  full refresh of {key}: {delta.entered:,} entered in {took:.2f} s; "
            f"a second, unchanged refresh {time.perf_counter() - again:.2f} s",
            flush=True,
        )
        return audience


# --- membership latency --------------------------------------------------------------------


def _latency(args: argparse.Namespace, env: dict[str, str], bench: Bench) -> list[float]:
    from activation import services
    from activation.models import Audience, AudienceMembership
    from profiles import selectors as profile_selectors

    workspace = bench.workspace
    source = profile_selectors.source_list(workspace=workspace).filter(name="Web store").get()
    source.rate_limit_per_minute = 1_000_000
    source.save(update_fields=["rate_limit_per_minute"])
    audience = Audience.objects.filter(workspace=workspace, key="fresh_buyers").first()
    if audience is None:  # a --reuse-db run has it already
        audience = services.audience_create(
            workspace=workspace,
            key="fresh_buyers",
            name="Ordered in the last day",
            rules={"event": {"name": "Order Completed", "within_last_days": 1}},
            realtime=True,
        )
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-n", BROKER_URL.rsplit("/", 1)[1], "FLUSHDB"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    log_dir = Path(tempfile.mkdtemp(prefix="cdp-bench-audiences-"))
    procs = Processes(log_dir)
    samples: list[float] = []
    try:
        procs.start(
            "gunicorn",
            [_tool("gunicorn"), "cdp.wsgi", "-b", f"127.0.0.1:{args.port}", "-w", "2",
             "--worker-class", "sync", "--timeout", "120"],
            env,
        )  # fmt: skip
        procs.start(
            "celery",
            [_tool("celery"), "-A", "cdp", "worker", "-Q", "ingest,default", "-c", "1",
             "--pool", "solo", "-n", "bench-audiences@%h", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            env,
        )  # fmt: skip

        def healthy() -> bool:
            procs.check_alive()
            return _health_ok(args.port)

        _wait_until("gunicorn /health/", healthy, timeout=90)
        from cdp.celery import app

        def worker_ready() -> bool:
            procs.check_alive()
            return len(app.control.ping(timeout=1.0) or []) >= 1

        _wait_until("the Celery worker", worker_ready, timeout=120)
        auth = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()
        for n in range(args.latency_samples + 1):  # the first warms the worker and server
            anonymous_id = f"latency-{uuid.uuid4()}"
            body = orjson.dumps(
                {
                    "type": "track",
                    "event": "Order Completed",
                    "anonymousId": anonymous_id,
                    "messageId": str(uuid.uuid4()),
                    "properties": {"revenue": 42.5, "currency": "EUR"},
                }
            )
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
            started = time.perf_counter()
            conn.request(
                "POST", "/v1/track", body=body,
                headers={"Authorization": auth, "Content-Type": "application/json"},
            )  # fmt: skip
            response = conn.getresponse()
            payload = response.read()
            conn.close()
            if response.status != 200:
                raise RuntimeError(f"POST answered {response.status}: {payload[:300]!r}")

            def member(anonymous_id: str = anonymous_id) -> bool:
                procs.check_alive()
                profile = profile_selectors.profile_find_by_identifier(
                    workspace=workspace, identifier_type="anonymous_id", value=anonymous_id
                )
                return (
                    profile is not None
                    and AudienceMembership.objects.filter(
                        audience=audience, profile=profile
                    ).exists()
                )

            _wait_until(
                "the profile to enter the realtime audience", member, timeout=60, every=0.02
            )
            took = time.perf_counter() - started
            if n:
                samples.append(took)
            print(f"  {'warm-up' if not n else f'sample {n}'}: {took * 1000:.0f} ms", flush=True)
    except (RuntimeError, TimeoutError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        for name, _proc in procs.children:
            print(f"--- {name} log tail ---\n{procs.tail(name)}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
    return samples


def main() -> int:
    args = _parse()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    print(f"bench/audiences.py: {args.profiles:,} profiles, {args.events:,} events, "
          f"repeat {args.repeat}, {args.latency_samples} latency samples")  # fmt: skip
    print(f"machine: {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {load_average()}")  # fmt: skip
    name = bench_database_name(args.database_url)
    keys_file = Path(tempfile.gettempdir()) / f"{name}.keys"
    if not args.reuse_db and keys_file.exists():
        keys_file.unlink()
    env = _environment(args.database_url, keys_file)
    if not args.reuse_db:
        recreate_database(args.database_url)
        subprocess.run(
            [_tool("python"), "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=ROOT_DIR, env=env, check=True, timeout=900,
        )  # fmt: skip
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    if not args.reuse_db:
        print("generating:", flush=True)
        _timed("generation", lambda: _generate(args))
        connection.close()
        _timed("VACUUM ANALYZE", lambda: _vacuum(args.database_url))
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        print(f"database: {cursor.fetchone()[0].split(' on ')[0]}, {name}")
        cursor.execute("SELECT count(*) FROM profiles_event")
        print(f"rows: {cursor.fetchone()[0]:,} events in both workspaces", flush=True)

    bench = Bench(args)
    only = {k for k in args.only.split(",") if k}
    ratios: dict[str, dict[str, float]] = {}
    for key, rules, hand in AUDIENCES:
        if only and key not in only:
            continue
        ratios[key] = bench.audience(key, rules, hand)
    print("membership (full refresh, set-wise, with history; information):", flush=True)
    for key, rules, _hand in AUDIENCES:
        if only and key not in only:
            continue
        if not args.reuse_db or not _audience_exists(bench, key):
            bench.refresh(key, rules, realtime=key == "premium_browsers")
    worst = max(r["ratio"] for r in ratios.values())
    worst_gated = max(r["gated"] for r in ratios.values())
    print(f"ratio: {worst:.2f}  (worst audience, ours / hand-written; bar <= {QUERY_BAR})")
    print(f"gated ratio: {worst_gated:.2f}  (worst audience, gated / ungated; bar <= {GATED_BAR})")
    if not args.skip_latency:
        print("membership latency (POST /v1/track -> member of a realtime audience):", flush=True)
        samples = _latency(args, env, bench)
        print(
            f"latency: median {statistics.median(samples):.2f} s, max {max(samples):.2f} s over "
            f"{len(samples)} samples  (bar < {LATENCY_BAR:.0f} s; load {load_average()})"
        )
    connection.close()
    if not args.keep_db:
        drop_database(args.database_url)
        keys_file.unlink(missing_ok=True)
    return 0


def _audience_exists(bench: Bench, key: str) -> bool:
    from activation.models import Audience

    return Audience.objects.filter(workspace=bench.workspace, key=key).exists()


def _vacuum(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


if __name__ == "__main__":
    sys.exit(main())
