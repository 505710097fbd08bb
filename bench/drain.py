"""The intake drain alone, in one process: where the CPU of storing a collected event goes.

    .venv/bin/python bench/drain.py [--events 20000] [--people 2000] [--seed 7]
        [--gc tuned|default] [--fk all|none] [--log-statements]
        [--database-url postgres://postgres@127.0.0.1:5432/cdp_bench_drain] [--keep-db]

bench/ingest.py measures the whole stack (HTTP, broker, two drains, PostgreSQL) as a user
sees it; its figures move with everything else the machine does. This one isolates the part
that costs the most, so that a change to the pipeline can be judged in a minute:

1. Drops and recreates the bench database, migrates it (`cdp.settings.production`, fresh
   random keys), creates a workspace and a source.
2. Passes the synthetic store stream (`collect.synthetic.store_traffic`) in batches of 100
   through `collect.services.collect_messages`, as the collection API does (validation, size
   limits, the intake buffer); not timed, and no drain is queued.
3. Runs `collect.intake.intake_drain()` until the buffer is empty, in this process, and
   prints the wall time, this process's CPU and the CPU of its PostgreSQL backend, per event.
   `--gc tuned` (the default) first applies `cdp.core.gc.gc_tune()`, as a worker does when it
   starts; `--gc default` leaves CPython's collector as it is. `--fk none` measures what the
   remaining foreign-key checks cost (`session_replication_role = replica`; a measurement
   only, never how the application runs). `--log-statements` logs each statement's duration
   to the server log (`log_min_duration_statement = 0` for the drain's session).
4. COPYs the same rows into a bare table in the same run (as bench/ingest.py does) and prints
   the CPU ratio: the COPY's CPU per event over the drain's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT_DIR = Path(__file__).resolve().parent.parent
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))

from bench._common import drop_database, load_average, proc_cpu, recreate_database  # noqa: E402
from bench.ingest import _bench_env, _copy_baseline, _copy_rows, _tool  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cdp_bench_drain"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--people", type=int, default=0, help="default: events / 10")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gc", choices=["tuned", "default"], default="tuned")
    parser.add_argument("--fk", choices=["all", "none"], default="all")
    parser.add_argument("--log-statements", action="store_true")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    return parser.parse_args()


def _fill_intake(source: Any, messages: list[dict[str, Any]]) -> None:
    """Through the collection service, as the API calls it (validation, size limits, the
    asynchronous intake); the drain it would queue is the one timed below."""
    from django.utils import timezone

    from collect import tasks
    from collect.services import RequestMeta, collect_messages
    from collect.synthetic import batches

    with mock.patch.object(tasks.intake_drain, "delay"):
        for batch in batches(iter(messages), 100):
            result = collect_messages(
                source=source,
                payloads=batch,
                request_meta=RequestMeta(received_at=timezone.now(), ip="203.0.113.7"),
                enforce_rate_limit=False,
            )
            if result.rejected:
                raise SystemExit(
                    f"the synthetic stream has an invalid message: {result.rejected[0]}"
                )


def main() -> int:
    args = _parse()
    if args.events < 1:
        raise SystemExit("--events must be at least 1")
    people = args.people or max(1, args.events // 10)
    print(f"bench/drain.py: {args.events} events, {people} people, gc {args.gc}, fk {args.fk}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_average()}")
    env = _bench_env(args.database_url, processing_workers=0)
    env["COLLECT_ASYNC_INTAKE"] = "true"  # no broker here: the drain below is run by hand
    db_name = recreate_database(args.database_url)
    subprocess.run(
        [_tool("python"), "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT_DIR, env=env, check=True, timeout=600,
    )  # fmt: skip
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    from cdp.core.gc import gc_tune
    from collect import intake
    from collect.synthetic import store_traffic
    from profiles.models import Event
    from profiles.services import source_create, workspace_create

    try:
        workspace = workspace_create(slug="bench", name="Drain benchmark")
        source = source_create(workspace=workspace, name="store")
        messages = list(store_traffic(people=people, events=args.events, seed=args.seed))
        _fill_intake(source, messages)
        print(f"intake: {len(messages)} messages sealed in the buffer (not timed)")

        connection.close()  # a fresh backend: its CPU is the drain's alone
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
            if args.log_statements:
                cursor.execute("SET log_min_duration_statement = 0")
            if args.fk == "none":
                cursor.execute("SET session_replication_role = replica")
        if args.gc == "tuned":
            gc_tune()
        db_before = proc_cpu(backend) or 0.0
        cpu_before = time.process_time()
        started = time.perf_counter()
        stored = intake.intake_drain(max_rounds=1_000_000)
        wall = time.perf_counter() - started
        py_cpu = time.process_time() - cpu_before
        db_cpu = (proc_cpu(backend) or 0.0) - db_before
        if stored != len(messages) or Event.objects.count() != len(messages):
            raise SystemExit(f"the drain stored {stored} of {len(messages)} messages")
        per = 1e6 / stored
        print(
            f"drain: {stored} events in {wall:.2f} s; cpu {py_cpu + db_cpu:.2f} s = "
            f"{(py_cpu + db_cpu) * per:.0f} us/event (python {py_cpu * per:.0f}, postgres "
            f"{db_cpu * per:.0f}); load {load_average()}"
        )
        rows = _copy_rows(messages, workspace.pk, binary=False)
        connection.close()
        copy_s, copy_cpu = _copy_baseline(args.database_url, rows, binary=False)
        print(
            f"copy: {len(rows)} rows in {copy_s:.2f} s, cpu {copy_cpu:.2f} s = "
            f"{copy_cpu * 1e6 / len(rows):.0f} us/row"
        )
        print(f"ratio: {copy_cpu / (py_cpu + db_cpu):.3f}  (CPU per event, COPY / drain)")
    finally:
        connection.close()
        if not args.keep_db:
            drop_database(args.database_url)
    print(f"database: {db_name} {'kept' if args.keep_db else 'dropped'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
