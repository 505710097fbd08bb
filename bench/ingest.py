"""Ingestion benchmark: the real HTTP stack against a bare COPY, and the identity rebuild against
a plain union-find, in one run on one PostgreSQL database.

    .venv/bin/python bench/ingest.py [--events 200000] [--people 20000] [--clients 4]
        [--workers 2] [--batch 100] [--processing-workers 0] [--port 8765]
        [--database-url postgres://postgres@127.0.0.1:5432/cdp_bench] [--keep-db]
        [--analyze-every SECONDS] [--db-setting NAME=VALUE] [--copy-format text|binary]

What it does:

1. Drops and recreates the bench database, migrates it with `cdp.settings.production` and fresh
   random keys (CDP_MASTER_KEYS, CDP_INDEX_KEY, DJANGO_SECRET_KEY), and creates a workspace and a
   source whose rate limit cannot be reached.
2. Generates the synthetic store traffic once (`collect.synthetic.store_traffic`: people on one
   to three devices, identified later with userId, email and phone, so identifiers overlap
   across devices) and orjson-encodes the batches before anything is timed.
3. Starts gunicorn (sync workers) on 127.0.0.1, plus `--processing-workers` Celery workers on
   the ingest queue when asked (for an asynchronous intake), and posts every batch to
   `/v1/batch` from `--clients` threads. Every answer must be exactly 200 {"success": true};
   any other answer aborts the run. The ingest time runs from the first POST until every event
   is stored (`profiles_event` holds them all and, if a `collect_intakebatch` table exists, it
   is empty): events/s.
4. Right after, in the same run, COPYs the same rows (built from the same messages before the
   timer starts) into a bare table `bench_events` with the event columns and a unique index on
   message_id, in one COPY and one transaction: events/s, and `ratio` = ours / COPY.
   Because other load on a shared machine skews wall time, the CPU seconds both sides used are
   printed too (server processes and the PostgreSQL backends of the bench database, sampled
   from /proc; the posting client is not counted): events per CPU-second and `cpu ratio`.
5. Times `identities_rebuild(workspace=..., apply=False)` against a plain union-find over the
   same identities and links, the union-find's time including its two SELECTs (median of
   `--rebuild-repeat` alternating runs): `rebuild ratio` = rebuild / union-find. Both cluster
   counts are printed, with the active profiles (equal when resolution was correct and no
   rule refused a link).

Every process it starts is stopped in a `finally`; every wait is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parent.parent
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))

import orjson  # noqa: E402
import psycopg  # noqa: E402

from bench._common import (  # noqa: E402
    drop_database,
    load_average,
    proc_cpu,
    recreate_database,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cdp_bench"
BROKER_URL = "redis://127.0.0.1:6379/14"
VENV_BIN = ROOT_DIR / ".venv" / "bin"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="messages (default 200000)")
    parser.add_argument("--people", type=int, default=20_000, help="people (default 20000)")
    parser.add_argument("--clients", type=int, default=4, help="posting threads (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--batch", type=int, default=100, help="messages per POST (default 100)")
    parser.add_argument(
        "--processing-workers",
        type=int,
        default=int(os.environ.get("BENCH_PROCESSING_WORKERS", "0") or 0),
        help="Celery workers on the ingest queue, for an asynchronous intake "
        "(default $BENCH_PROCESSING_WORKERS or 0)",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--copy-format", choices=("text", "binary"), default="text", help="COPY format"
    )
    parser.add_argument("--rebuild-repeat", type=int, default=3, help="rebuild runs (median)")
    parser.add_argument(
        "--wait-timeout", type=float, default=1800.0, help="seconds to wait for storage"
    )
    parser.add_argument(
        "--analyze-every",
        type=float,
        default=0.0,
        help="run ANALYZE on the bench database every N seconds while ingesting, standing in "
        "for autovacuum's analyze where the server runs without autovacuum (default 0: off)",
    )
    parser.add_argument(
        "--db-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="ALTER DATABASE .. SET for the bench database (diagnostics, e.g. "
        "session_preload_libraries=auto_explain); repeatable",
    )
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    return parser.parse_args()


# --- processes and environment -------------------------------------------------------------


def _bench_env(database_url: str, processing_workers: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DJANGO_DEBUG"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="cdp.settings.production",
        DATABASE_URL=database_url,
        CDP_MASTER_KEYS="bench:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        CDP_INDEX_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        # Nothing here sends mail; the shell's EMAIL_BACKEND (the console one, say) could
        # only make the production settings refuse to load.
        EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if processing_workers > 0:
        env["CELERY_BROKER_URL"] = BROKER_URL
    return env


def _tool(name: str) -> str:
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found (expected in {VENV_BIN})")
    return found


class Processes:
    """Child processes started in their own session, stopped group by group."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            list(argv),
            cwd=ROOT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.children.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self, timeout: float = 20.0) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _name, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.children.clear()


def _wait_until(what: str, check: Callable[[], bool], timeout: float, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _health_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health/", headers={"Accept": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        conn.close()


# --- CPU accounting (a shared machine's load skews wall time; CPU seconds much less) -------


def _descendants(roots: Sequence[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


class CpuSampler(threading.Thread):
    """CPU seconds used by the app processes (and their children) and by the PostgreSQL
    backends connected to the bench database, sampled twice a second so that a backend that
    disconnects mid-run loses at most half a second. The sampler's own connection and the
    `exclude` backends (the bench process's) are not counted."""

    def __init__(
        self, database_url: str, roots: Callable[[], list[tuple[str, int]]], exclude: set[int]
    ) -> None:
        super().__init__(daemon=True)
        self.database_url = database_url
        self.roots = roots
        self.exclude = set(exclude)
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.halt = threading.Event()
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.exclude.add(self.conn.info.backend_pid)
        self.sample(initial=True)

    def sample(self, initial: bool = False) -> None:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()
        pids = [("db", pid) for (pid,) in rows if pid not in self.exclude]
        for name, root in self.roots():
            pids += [(name.split("-")[0], pid) for pid in _descendants([root])]
        for kind, pid in pids:
            cpu = proc_cpu(pid)
            if cpu is None:
                continue
            self.first.setdefault((kind, pid), cpu if initial else 0.0)
            self.last[(kind, pid)] = cpu

    def run(self) -> None:
        while not self.halt.wait(0.5):
            self.sample()

    def finish(self) -> dict[str, float]:
        self.halt.set()
        self.join(timeout=10)
        self.sample()
        self.conn.close()
        used: dict[str, float] = {"db": 0.0}
        for key, cpu in self.last.items():
            used[key[0]] = used.get(key[0], 0.0) + cpu - self.first[key]
        return used


class Analyzer(threading.Thread):
    """ANALYZE the bench database every `every` seconds (its CPU is counted with the
    database's: autovacuum's analyze would cost the same)."""

    def __init__(self, database_url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.database_url = database_url
        self.every = every
        self.halt = threading.Event()
        self.runs = 0

    def run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.halt.wait(self.every):
                conn.execute("ANALYZE")
                self.runs += 1

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(timeout=120)


# --- the stream ----------------------------------------------------------------------------


def _stream(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[bytes]]:
    from collect.synthetic import batches, store_traffic

    messages = list(store_traffic(people=args.people, events=args.events, seed=args.seed))
    bodies = [orjson.dumps({"batch": batch}) for batch in batches(iter(messages), args.batch)]
    return messages, bodies


class PostFailed(RuntimeError):
    pass


def _post_all(
    port: int, write_key: str, bodies: list[bytes], clients: int, stop_check: Callable[[], None]
) -> tuple[float, list[float]]:
    """POST every body from `clients` threads; returns (start time, latencies). Raises on the
    first answer that is not exactly 200 {"success": true}."""
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    errors: list[str] = []

    def take() -> int | None:
        with lock:
            if errors or next_index[0] >= len(bodies):
                return None
            index = next_index[0]
            next_index[0] += 1
            return index

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        mine: list[float] = []
        try:
            while (index := take()) is not None:
                body = bodies[index]
                started = time.perf_counter()
                try:
                    conn.request(
                        "POST",
                        "/v1/batch",
                        body=body,
                        headers={
                            "Authorization": auth,
                            "Content-Type": "application/json",
                            "Connection": "keep-alive",
                        },
                    )
                    response = conn.getresponse()
                    payload = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        errors.append(f"batch {index}: {type(exc).__name__}: {exc}")
                    return
                mine.append(time.perf_counter() - started)
                ok = response.status == 200
                if ok:
                    try:
                        ok = orjson.loads(payload) == {"success": True}
                    except orjson.JSONDecodeError:
                        ok = False
                if not ok:
                    with lock:
                        errors.append(f"batch {index}: {response.status} {payload[:500]!r}")
                    return
                if response.will_close:
                    conn.close()  # reopened by the next request
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(timeout=1.0)
        if not errors:
            stop_check()  # a server that died fails the run instead of hanging it
    if errors:
        raise PostFailed(f"{len(errors)} failed request(s); first: {errors[0]}")
    return start, latencies


# --- database checks -----------------------------------------------------------------------


def _scalar(query: str, params: Sequence[Any] = ()) -> Any:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params)
        row = cursor.fetchone()
    return row[0] if row else None


def _all_stored(expected: int) -> Callable[[], bool]:
    """True once no intake batch waits (if that table exists) and every event is stored. The
    cheap intake check comes first, so that polling costs the database little while it works."""
    has_intake = _scalar("SELECT to_regclass('collect_intakebatch') IS NOT NULL")

    def check() -> bool:
        if has_intake:
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT coalesce(bool_or(dead), false), count(*) FROM "
                    "(SELECT dead FROM collect_intakebatch LIMIT 1000) AS pending"
                )
                dead, pending = cursor.fetchone()
            if dead:
                raise RuntimeError(f"intake batches set aside as dead: {_progress()}")
            if pending:
                return False
        return _scalar("SELECT count(*) FROM profiles_event") >= expected

    return check


def _progress() -> str:
    """Where storage stands: events stored, and the intake buffer's state if there is one."""
    text = f"{_scalar('SELECT count(*) FROM profiles_event')} events stored"
    if _scalar("SELECT to_regclass('collect_intakebatch') IS NOT NULL"):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT dead, last_error, count(*), sum(message_count) FROM collect_intakebatch "
                "GROUP BY dead, last_error ORDER BY dead, last_error"
            )
            groups = cursor.fetchall()
        text += "; intake batches (dead, last error, batches, messages): " + (
            ", ".join(str(tuple(g)) for g in groups) or "none"
        )
    return text


# --- COPY baseline -------------------------------------------------------------------------

COPY_TABLE = """
CREATE TABLE bench_events (
    id uuid PRIMARY KEY,
    workspace_id integer NOT NULL,
    profile_key text NOT NULL,
    message_id text NOT NULL,
    type text NOT NULL,
    name text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    sent_at timestamptz,
    received_at timestamptz NOT NULL,
    properties jsonb NOT NULL,
    context jsonb NOT NULL
);
CREATE UNIQUE INDEX bench_events_message_id ON bench_events (message_id);
"""
COPY_COLUMNS = (
    "id, workspace_id, profile_key, message_id, type, name, timestamp, sent_at, received_at, "
    "properties, context"
)
COPY_TYPES = [
    "uuid", "int4", "text", "text", "text", "text", "timestamptz", "timestamptz",
    "timestamptz", "jsonb", "jsonb",
]  # fmt: skip


def _copy_rows(messages: list[dict[str, Any]], workspace_id: int, binary: bool) -> list[tuple]:
    from psycopg.types.json import Jsonb

    from cdp.core.ids import uuid7

    def parse(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    def as_json(value: Any) -> Any:
        return (
            Jsonb(value, dumps=lambda v: orjson.dumps(v).decode())
            if binary
            else (orjson.dumps(value).decode())
        )

    received = datetime.now(UTC)
    rows = []
    for m in messages:
        rows.append(
            (
                uuid7(), workspace_id, m.get("userId") or m["anonymousId"], m["messageId"],
                m["type"], m.get("event") or m.get("name") or "", parse(m["timestamp"]),
                parse(m.get("sentAt")), received, as_json(m.get("properties") or m.get("traits")
                or {}), as_json(m.get("context") or {}),
            )
        )  # fmt: skip
    return rows


def _copy_baseline(database_url: str, rows: list[tuple], binary: bool) -> tuple[float, float]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_events")
        conn.execute(COPY_TABLE)
        conn.execute("CHECKPOINT")  # start from clean buffers, as the ingest did (fresh DB)
    with psycopg.connect(database_url) as conn:
        backend = conn.info.backend_pid
        backend_before = proc_cpu(backend) or 0.0
        client_before = time.process_time()
        started = time.perf_counter()
        with conn.cursor() as cursor:
            statement = f"COPY bench_events ({COPY_COLUMNS}) FROM STDIN"
            if binary:
                statement += " (FORMAT BINARY)"
            with cursor.copy(statement) as copy:
                if binary:
                    copy.set_types(COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - client_before + (proc_cpu(backend) or 0.0) - backend_before
        stored = conn.execute("SELECT count(*) FROM bench_events").fetchone()
    if not stored or stored[0] != len(rows):
        raise RuntimeError(f"COPY stored {stored} rows, expected {len(rows)}")
    return elapsed, cpu


# --- rebuild vs union-find -----------------------------------------------------------------


def _union_find(workspace_id: int) -> int:
    """Clusters of the workspace's identities joined by every stored link, reading both."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM profiles_identity WHERE workspace_id = %s", [workspace_id])
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT left_id, right_id FROM profiles_identitylink WHERE workspace_id = %s",
            [workspace_id],
        )
        links = cursor.fetchall()
    position = {identity_id: i for i, identity_id in enumerate(ids)}
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    for left, right in links:
        a, b = position.get(left), position.get(right)
        if a is None or b is None:
            continue
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
    return sum(1 for i in range(len(parent)) if find(i) == i)


def _rebuild_vs_union_find(workspace: Any, repeat: int) -> dict[str, Any]:
    from profiles.services import identities_rebuild

    rebuild_times: list[float] = []
    uf_times: list[float] = []
    report: Any = None
    uf_clusters = 0
    for run in range(max(1, repeat)):
        order = ("rebuild", "uf") if run % 2 == 0 else ("uf", "rebuild")
        for which in order:
            started = time.perf_counter()
            if which == "rebuild":
                report = identities_rebuild(workspace=workspace, apply=False)
                rebuild_times.append(time.perf_counter() - started)
            else:
                uf_clusters = _union_find(workspace.pk)
                uf_times.append(time.perf_counter() - started)
    return {
        "rebuild": statistics.median(rebuild_times),
        "union_find": statistics.median(uf_times),
        "report": report,
        "uf_clusters": uf_clusters,
    }


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    args = _parse()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows when logged to a file
    print(
        f"bench/ingest.py: {args.events} events, {args.people} people, batches of {args.batch}, "
        f"{args.clients} clients, gunicorn {args.workers} sync workers, "
        f"{args.processing_workers} processing workers"
    )
    print(f"machine: {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {load_average()}")  # fmt: skip

    env = _bench_env(args.database_url, args.processing_workers)
    db_name = recreate_database(args.database_url, args.db_setting)
    python = _tool("python")
    migrate = subprocess.run(
        [python, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if migrate.returncode != 0:
        print(migrate.stdout, migrate.stderr, file=sys.stderr)
        return 1

    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from profiles.enums import ProfileStatus
    from profiles.models import Event, Profile
    from profiles.services import source_create, workspace_create

    workspace = workspace_create(slug="bench", name="Ingestion benchmark")
    source = source_create(
        workspace=workspace, name="bench-store", rate_limit_per_minute=2_000_000_000
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        print(f"database: {cursor.fetchone()[0].split(' on ')[0]}, {db_name}")
        cursor.execute("SELECT current_setting('autovacuum')")
        autovacuum = cursor.fetchone()[0]
    if autovacuum != "on":
        print(
            f"note: this server runs with autovacuum={autovacuum}: the application analyzes "
            "the tables ingestion grows itself (cdp.core.dbstats, after each drain round)"
            + (
                f"; and ANALYZE every {args.analyze_every:g} s stands in for autovacuum"
                if args.analyze_every
                else ""
            )
        )

    started = time.perf_counter()
    messages, bodies = _stream(args)
    print(
        f"stream: {len(messages)} messages in {len(bodies)} batches, "
        f"{sum(map(len, bodies)) / 1e6:.1f} MB JSON, generated in "
        f"{time.perf_counter() - started:.1f} s (not timed)"
    )

    log_dir = Path(tempfile.mkdtemp(prefix="cdp-bench-ingest-"))
    procs = Processes(log_dir)
    try:
        procs.start(
            "gunicorn",
            [
                _tool("gunicorn"), "cdp.wsgi", "-b", f"127.0.0.1:{args.port}",
                "-w", str(args.workers), "--worker-class", "sync", "--timeout", "120",
            ],
            env,
        )  # fmt: skip
        for n in range(args.processing_workers):
            procs.start(
                f"celery-{n + 1}",
                [
                    _tool("celery"), "-A", "cdp", "worker", "-Q", "ingest", "-c", "1",
                    "--pool", "solo", "-n", f"bench{n + 1}@%h", "--without-gossip",
                    "--without-mingle", "--without-heartbeat",
                ],
                env,
            )  # fmt: skip

        def alive_and_healthy() -> bool:
            procs.check_alive()
            return _health_ok(args.port)

        _wait_until("gunicorn /health/", alive_and_healthy, timeout=60)
        if args.processing_workers:
            from cdp.celery import app

            def workers_ready() -> bool:
                procs.check_alive()
                return len(app.control.ping(timeout=1.0) or []) >= args.processing_workers

            _wait_until("Celery workers", workers_ready, timeout=90)
        # Warm every gunicorn worker's imports and connection (an empty batch stores nothing).
        _post_all(
            args.port, source.write_key, [b'{"batch": []}'] * (4 * args.workers), 2, lambda: None
        )

        mode = (
            "asynchronous intake"
            if getattr(settings, "COLLECT_ASYNC_INTAKE", False)
            else ("synchronous")
        )
        print(f"posting ({mode} ingestion; logs in {log_dir}) ...")
        load_before = load_average()
        sampler = CpuSampler(
            args.database_url,
            lambda: [(name, proc.pid) for name, proc in procs.children],
            {_scalar("SELECT pg_backend_pid()")},
        )
        sampler.start()
        analyzer = Analyzer(args.database_url, args.analyze_every)
        if args.analyze_every > 0:
            analyzer.start()
        client_before = time.process_time()
        t0, latencies = _post_all(
            args.port, source.write_key, bodies, args.clients, procs.check_alive
        )
        posted = time.perf_counter()
        stored = _all_stored(len(messages))
        try:
            _wait_until("every event to be stored", stored, timeout=args.wait_timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} ({_progress()})") from None
        ingest_s = time.perf_counter() - t0
        client_cpu = time.process_time() - client_before
        analyzer.stop()
        used = sampler.finish()
        db_cpu = used.pop("db")
        app_cpu = sum(used.values())
        app_detail = ", ".join(f"{name} {cpu:.1f}" for name, cpu in sorted(used.items()))
        load_after = load_average()
    except (PostFailed, RuntimeError, TimeoutError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        for name, _proc in procs.children:
            print(f"--- {name} log tail ---\n{procs.tail(name)}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()

    events = Event.objects.filter(workspace=workspace).count()
    ingest_rate = len(messages) / ingest_s
    with connection.cursor() as cursor:  # planner statistics and whole-table scans, as a check
        cursor.execute(
            "SELECT coalesce(sum(analyze_count), 0), string_agg(relname || ' ' || seq_scan || "
            "'/' || seq_tup_read, ', ' ORDER BY seq_tup_read DESC) FILTER (WHERE relname IN "
            "('profiles_event', 'profiles_identity', 'profiles_trait', 'profiles_profile', "
            "'profiles_datakey')) FROM pg_stat_user_tables"
        )
        analyzes, scans = cursor.fetchone()
    latencies.sort()
    print(
        f"ingest: {len(messages)} events in {ingest_s:.2f} s = {ingest_rate:,.0f} events/s "
        f"(posting took {posted - t0:.2f} s; POST latency p50 "
        f"{latencies[len(latencies) // 2] * 1000:.0f} ms, p95 "
        f"{latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms; load {load_before} -> "
        f"{load_after}; {events} events stored)"
    )
    print(f"planner: {analyzes} ANALYZE runs during ingestion; sequential scans/rows read: {scans}")

    binary = args.copy_format == "binary"
    rows = _copy_rows(messages, workspace.pk, binary)
    connection.close()
    copy_s, copy_cpu = _copy_baseline(args.database_url, rows, binary)
    copy_rate = len(rows) / copy_s
    print(f"copy: {len(rows)} rows in {copy_s:.2f} s = {copy_rate:,.0f} events/s "
          f"({args.copy_format} COPY, one transaction, load {load_average()})")  # fmt: skip
    print(f"ratio: {ingest_rate / copy_rate:.2f}  (bar >= 0.12, goal 0.33)")
    ours_cpu = app_cpu + db_cpu
    print(
        f"cpu: ingest {ours_cpu:.1f} cpu-s ({app_detail}, postgres backends "
        f"{db_cpu:.1f}; client {client_cpu:.1f} not counted) = "
        f"{len(messages) / ours_cpu:,.0f} events/cpu-s; copy {copy_cpu:.2f} cpu-s = "
        f"{len(rows) / copy_cpu:,.0f} events/cpu-s; cpu ratio: {copy_cpu / ours_cpu:.2f}"
    )

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    result = _rebuild_vs_union_find(workspace, args.rebuild_repeat)
    report = result["report"]
    active = Profile.objects.filter(workspace=workspace, status=ProfileStatus.ACTIVE).count()
    print(
        f"rebuild: {result['rebuild']:.2f} s, union-find: {result['union_find']:.2f} s, "
        f"rebuild ratio: {result['rebuild'] / result['union_find']:.2f}  (bar <= 3; median of "
        f"{max(1, args.rebuild_repeat)}, {report.identities} identities, {report.links} links)"
    )
    print(
        f"clusters: rebuild {report.clusters}, union-find {result['uf_clusters']}, "
        f"active profiles {active}; rebuild would merge {len(report.merges)}, split "
        f"{len(report.splits)}, refused links {report.refused_links}, blocked {report.blocked}"
    )
    connection.close()
    if not args.keep_db:
        drop_database(args.database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
