"""Consent API benchmark: `GET /v1/consent?anonymousId=` requests/s through gunicorn, with the
answer cached (Django's Redis cache, shared by the workers) and uncached.

    .venv/bin/python bench/consent_api.py [--subjects 2000] [--requests 20000] [--clients 8]
        [--workers 2] [--port 8766] [--redis-url redis://127.0.0.1:6379/13]
        [--database-url postgres://postgres@127.0.0.1:5432/cdp_bench_consent_api] [--keep-db]

What it does:

1. Drops and recreates the bench database and migrates it with `cdp.settings.production` and
   fresh random keys (the helpers of bench/ingest.py), then, in this process with the same
   environment, creates a workspace and a source and records consent for `--subjects`
   anonymous visitors through `consent_submit` (the service behind `POST /v1/consent`).
2. Starts gunicorn (`--workers` sync workers) on 127.0.0.1 twice: once with
   CDP_CONSENT_CACHE_SECONDS=0 (every answer read from PostgreSQL), once with 60 and REDIS_URL
   set (the Redis database is flushed first). Each run warms up, then `--clients` threads send
   `--requests` GETs in all over persistent connections, each for a random known subject, with
   the source's write key; every answer must be 200 with the subject's state.
3. Prints requests/s of both and `ratio` = cached / uncached.

Every process it starts is stopped in a `finally`; every wait is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))

import redis  # noqa: E402

from bench._common import drop_database, load_average, recreate_database  # noqa: E402
from bench.ingest import (  # noqa: E402
    Processes,
    _bench_env,
    _health_ok,
    _tool,
    _wait_until,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cdp_bench_consent_api"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
DECISIONS = ("granted", "denied")
PURPOSES = ("analytics", "personalization", "marketing_email", "advertising", "profiling")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2_000, help="visitors (default 2000)")
    parser.add_argument("--requests", type=int, default=20_000, help="GETs per run (20000)")
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--keep-db", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--timeout", type=float, default=600, help="give up on a run after this (600 s)"
    )
    return parser.parse_args()


class RequestFailed(RuntimeError):
    pass


def _get_all(
    port: int,
    write_key: str,
    subjects: list[tuple[str, dict[str, str]]],
    requests: int,
    clients: int,
    deadline: float,
    seed: int,
) -> float:
    """Send `requests` GETs from `clients` threads; the seconds they took. Every answer is
    checked against the subject's recorded state."""
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": auth, "Accept": "application/json"}
    lock = threading.Lock()
    remaining = [requests]
    errors: list[str] = []

    def take() -> bool:
        with lock:
            if remaining[0] <= 0 or errors:
                return False
            remaining[0] -= 1
            return True

    def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while take():
                if time.monotonic() > deadline:
                    raise RequestFailed("timed out")
                anonymous_id, expected = rng.choice(subjects)
                conn.request("GET", f"/v1/consent?anonymousId={anonymous_id}", headers=headers)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RequestFailed(f"HTTP {response.status}: {body[:300]!r}")
                if json.loads(body)["state"] != expected:
                    raise RequestFailed(f"wrong state for {anonymous_id}: {body[:300]!r}")
        except Exception as exc:  # any failure stops every thread and the run
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, deadline - time.monotonic()))
    elapsed = time.perf_counter() - started
    if any(thread.is_alive() for thread in threads):
        raise RequestFailed("client threads still running at the deadline")
    if errors:
        raise RequestFailed(errors[0])
    return elapsed


def _seed(subjects: int) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """A workspace, a source and `subjects` visitors with consent; (write key, subjects)."""
    from consent.services import ConsentSubmission, consent_submit, purposes_ensure_defaults
    from profiles.services import source_create, workspace_create

    workspace = workspace_create(slug="bench", name="Consent API benchmark")
    purposes_ensure_defaults(workspace=workspace)
    source = source_create(
        workspace=workspace, name="bench-store", rate_limit_per_minute=2_000_000_000
    )
    rng = random.Random(7)
    seeded = []
    for n in range(subjects):
        anonymous_id = f"bench-anon-{n:06d}"
        decisions = {key: rng.choice(DECISIONS) for key in PURPOSES}
        consent_submit(
            source=source,
            submission=ConsentSubmission(decisions=decisions, anonymous_id=anonymous_id),
        )
        seeded.append((anonymous_id, decisions))
    return source.write_key, seeded


def _run(
    args: argparse.Namespace,
    env: dict[str, str],
    write_key: str,
    subjects: list[tuple[str, dict[str, str]]],
    label: str,
) -> float:
    """One gunicorn with `env`, warmed up, then timed; requests/s."""
    log_dir = Path(tempfile.mkdtemp(prefix=f"cdp-bench-consent-api-{label}-"))
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

        def alive_and_healthy() -> bool:
            procs.check_alive()
            return _health_ok(args.port)

        _wait_until(f"gunicorn /health/ ({label})", alive_and_healthy, timeout=60)
        deadline = time.monotonic() + args.timeout
        # Warm every worker's imports and connection (and, cached, a part of the answers).
        _get_all(args.port, write_key, subjects, 20 * args.workers, 2, deadline, seed=1)
        load_before = load_average()
        elapsed = _get_all(
            args.port, write_key, subjects, args.requests, args.clients, deadline, seed=2
        )
        rate = args.requests / elapsed
        print(
            f"{label}: {args.requests} GETs in {elapsed:.2f} s = {rate:,.0f} requests/s "
            f"(load {load_before} -> {load_average()}; logs in {log_dir})"
        )
        return rate
    except (RequestFailed, RuntimeError, TimeoutError) as exc:
        print(f"FAILED ({label}): {exc}", file=sys.stderr)
        for name, _proc in procs.children:
            print(f"--- {name} log tail ---\n{procs.tail(name)}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()


def main() -> int:
    args = _parse()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    print(
        f"bench/consent_api.py: {args.subjects} subjects, {args.requests} GETs per run, "
        f"{args.clients} clients, gunicorn {args.workers} sync workers"
    )
    print(f"machine: {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {load_average()}")  # fmt: skip

    env = _bench_env(args.database_url, 0)
    env["CDP_CONSENT_CACHE_SECONDS"] = "0"
    recreate_database(args.database_url)
    migrate = subprocess.run(
        [_tool("python"), "manage.py", "migrate", "--no-input", "-v", "0"],
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
    from django.db import connection

    started = time.perf_counter()
    write_key, subjects = _seed(args.subjects)
    print(f"seed: {len(subjects)} subjects with consent in {time.perf_counter() - started:.1f} s")
    connection.close()

    try:
        uncached = _run(args, env, write_key, subjects, "uncached")
        redis.Redis.from_url(args.redis_url).flushdb()
        cached_env = {**env, "CDP_CONSENT_CACHE_SECONDS": "60", "REDIS_URL": args.redis_url}
        cached = _run(args, cached_env, write_key, subjects, "cached")
    except (RequestFailed, RuntimeError, TimeoutError):
        return 1
    finally:
        redis.Redis.from_url(args.redis_url).flushdb()
        if not args.keep_db:
            drop_database(args.database_url)
    print(f"ratio: {cached / uncached:.2f}  (cached / uncached requests/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
