"""Bulk-import benchmark: a profile CSV imported through the product path against a bare COPY of
the same rows, with the import's peak memory, on a PostgreSQL database of its own.

    .venv/bin/python bench/import.py [--rows 1000000] [--memory-rows 100000] [--batch-size 1000]
        [--bad-every 200] [--analyze-every 60] [--seed 7]
        [--database-url postgres://postgres@127.0.0.1:5432/cdp_bench_import] [--keep-db]

For each size (`--memory-rows`, when given and smaller, then `--rows`):

1. Drops and recreates the database, migrates it (`cdp.settings.production`, fresh random keys,
   LOG_LEVEL=WARNING) and writes the CSV (not timed): one customer a row with a CRM id, email,
   phone, first and last name, country, loyalty tier, lifetime value and signup date, every
   `--bad-every`-th row with a broken email (those rows go to the error file).
2. Runs the import in a child process, the way `manage.py import_profiles` does
   (`collect.imports.services.import_job_run_file`: streaming reader, validation, batches of
   `--batch-size` through `profiles.services.ingest_messages`, the sealed error file). The child
   reports its wall time, its own and its PostgreSQL backend's CPU seconds, and its resident
   memory: before the import (Django loaded), sampled after each batch, and the peak
   (`getrusage(RUSAGE_SELF).ru_maxrss`).
3. COPYs the same file into a bare table (the CSV's columns, text/numeric/date types, a primary
   key on crm_id) in one `COPY .. FROM STDIN (FORMAT csv, HEADER)`, timed the same way.
4. Prints rows/s of both, `ratio` = import rows/s / COPY rows/s, the CPU-based figures, and the
   memory. `ratio:` is printed for the largest size.

The server here runs with autovacuum off; an ANALYZE every `--analyze-every` seconds (default
60, 0 = never) stands in for autovacuum's, as in bench/ingest.py.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import math
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parent.parent
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))

import psycopg  # noqa: E402

from bench._common import (  # noqa: E402
    drop_database,
    load_average,
    proc_cpu,
    recreate_database,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cdp_bench_import"
PYTHON = str(ROOT_DIR / ".venv" / "bin" / "python")
FIRST = ["Ada", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jonas"]
LAST = ["Abbott", "Berg", "Costa", "Duarte", "Evans", "Fischer", "Garcia", "Hansen", "Ito"]
COUNTRIES = ["DE", "FR", "GB", "US", "NL", "SE", "ES", "IT"]
TIERS = ["bronze", "silver", "gold", "platinum"]
HEADER = [
    "crm_id", "email", "phone", "first_name", "last_name", "country", "loyalty_tier",
    "lifetime_value", "signup_date",
]  # fmt: skip
MAPS = [
    "email=identifier:email",
    "phone=identifier:phone",
    "first_name=trait:first_name",
    "last_name=trait:last_name",
    "country=trait:country",
    "loyalty_tier=trait:loyalty_tier",
    "lifetime_value=trait:lifetime_value:number",
    "signup_date=trait:signup_date:date",
]
BARE_TABLE = """
CREATE TABLE bench_profiles (
    crm_id text PRIMARY KEY, email text, phone text, first_name text, last_name text,
    country text, loyalty_tier text, lifetime_value numeric, signup_date date
)"""


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1000000)")
    parser.add_argument(
        "--memory-rows",
        type=int,
        default=100_000,
        help="a smaller import run first, to compare peak memory (default 100000; 0: none)",
    )
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--bad-every", type=int, default=200, help="a broken email every N rows")
    parser.add_argument("--analyze-every", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--keep-db", action="store_true", help="leave the last database")
    parser.add_argument("--child", metavar="CSV", help=argparse.SUPPRESS)
    return parser.parse_args()


# --- data -----------------------------------------------------------------------------------


def write_csv(path: Path, rows: int, *, seed: int, bad_every: int) -> int:
    """The CRM export; returns how many rows carry a broken email."""
    rng = random.Random(seed)
    bad = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for n in range(1, rows + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{first}.{last}.{n}@example.com".lower()
            if bad_every and n % bad_every == 0:
                email = email.replace("@", ".at.")
                bad += 1
            writer.writerow(
                [
                    f"CRM-{n:08d}",
                    email,
                    f"+1415{n % 10_000_000:07d}",
                    first,
                    last,
                    rng.choice(COUNTRIES),
                    rng.choice(TIERS),
                    f"{rng.randint(0, 500_000) / 100:.2f}",
                    f"20{rng.randint(10, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                ]
            )
    return bad


# --- processes and database -------------------------------------------------------------------


def _env(database_url: str) -> dict[str, str]:
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
    return env


def _proc_cpu(pid: int) -> float:
    """The CPU seconds of the bench's own PostgreSQL backend (it lives as long as the run)."""
    used = proc_cpu(pid)
    if used is None:
        raise RuntimeError(f"process {pid} is gone")
    return used


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Analyzer(threading.Thread):
    """ANALYZE every `every` seconds, standing in for autovacuum (off on this server)."""

    def __init__(self, database_url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.database_url, self.every = database_url, every
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
            self.join(timeout=300)


# --- the child: the product path ------------------------------------------------------------


def child(csv_path: str, batch_size: int) -> None:
    """Import the CSV as `manage.py import_profiles` would; print one JSON line of figures."""
    import django

    django.setup()
    from django.db import connection

    from collect.imports import services
    from collect.imports.mapping import mapping_parse
    from collect.imports.runner import ImportCounts
    from profiles.services import workspace_create

    workspace = workspace_create(slug="bench", name="Import benchmark")
    source, _ = services.import_source_get_or_create(workspace=workspace, name="CRM")
    mapping = mapping_parse(kind="profiles", maps=MAPS, id_column="crm_id", id_type="crm_id")
    path = Path(csv_path)
    job = services.import_job_create(
        workspace=workspace,
        source=source,
        mapping=mapping,
        file_name=path.name,
        size_bytes=path.stat().st_size,
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = int(cursor.fetchone()[0])
    rss_before = _rss_mb()
    samples: list[tuple[int, float]] = []
    last_print = [time.monotonic()]

    def progress(counts: ImportCounts) -> None:
        samples.append((counts.rows_total, _rss_mb()))
        if time.monotonic() - last_print[0] > 30:
            last_print[0] = time.monotonic()
            print(
                f"  ... {counts.rows_total} rows, rss {samples[-1][1]:.0f} MB",
                file=sys.stderr,
                flush=True,
            )

    db_cpu, own_cpu = _proc_cpu(backend), time.process_time()
    started = time.perf_counter()
    job = services.import_job_run_file(
        job=job, path=path, on_progress=progress, batch_size=batch_size
    )
    seconds = time.perf_counter() - started
    own_cpu, db_cpu = time.process_time() - own_cpu, _proc_cpu(backend) - db_cpu
    from cdp.core.crypto import envelope

    print(
        json.dumps(
            {
                "status": job.status,
                "failure": job.failure_code,
                "seconds": seconds,
                "cpu_python": own_cpu,
                "cpu_postgres": db_cpu,
                "rows_total": job.rows_total,
                "rows_ok": job.rows_ok,
                "rows_failed": job.rows_failed,
                "rows_stored": job.rows_stored,
                "profiles_created": job.profiles_created,
                "errors_truncated": job.errors_truncated,
                "rss_before_mb": rss_before,
                "rss_samples": samples,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "data_key_cache": len(envelope._cache) // 2,
            }
        )
    )


# --- the parent ------------------------------------------------------------------------------


def _copy(database_url: str, path: Path) -> dict[str, float]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(BARE_TABLE)
        conn.execute("CHECKPOINT")
        backend = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        db_cpu, own_cpu = _proc_cpu(backend), time.process_time()
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cursor,
            cursor.copy("COPY bench_profiles FROM STDIN (FORMAT csv, HEADER true)") as copy,
            path.open("rb") as handle,
        ):
            while block := handle.read(1 << 20):
                copy.write(block)
        seconds = time.perf_counter() - started
        rows = int(conn.execute("SELECT count(*) FROM bench_profiles").fetchone()[0])  # type: ignore[index]
        return {
            "seconds": seconds,
            "rows": rows,
            "cpu_python": time.process_time() - own_cpu,
            "cpu_postgres": _proc_cpu(backend) - db_cpu,
        }


def run_size(args: argparse.Namespace, rows: int, workdir: Path) -> dict[str, Any]:
    print(f"\n== {rows:,} rows ==", flush=True)
    recreate_database(args.database_url)
    env = _env(args.database_url)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT_DIR, env=env, check=True
    )
    path = workdir / f"profiles-{rows}.csv"
    started = time.perf_counter()
    bad = write_csv(path, rows, seed=args.seed, bad_every=args.bad_every)
    print(
        f"csv: {rows:,} rows ({bad:,} with a broken email), {path.stat().st_size / 1e6:.1f} MB, "
        f"written in {time.perf_counter() - started:.1f} s (not timed)",
        flush=True,
    )
    analyzer = Analyzer(args.database_url, args.analyze_every) if args.analyze_every else None
    if analyzer:
        analyzer.start()
    try:
        proc = subprocess.run(
            [PYTHON, __file__, "--child", str(path), "--batch-size", str(args.batch_size)],
            cwd=ROOT_DIR,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        if analyzer:
            analyzer.stop()
    if proc.returncode != 0:
        raise SystemExit(f"the import child failed ({proc.returncode})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["status"] != "done" or result["rows_ok"] != rows - bad:
        raise SystemExit(f"the import did not store what it should: {result}")
    copied = _copy(args.database_url, path)
    if copied["rows"] != rows:
        raise SystemExit(f"COPY loaded {copied['rows']} rows, not {rows}")
    ours = rows / result["seconds"]
    theirs = rows / copied["seconds"]
    ours_cpu = result["cpu_python"] + result["cpu_postgres"]
    theirs_cpu = copied["cpu_python"] + copied["cpu_postgres"]
    print(
        f"import: {rows:,} rows in {result['seconds']:.1f} s = {ours:,.0f} rows/s "
        f"({result['rows_ok']:,} valid stored as {result['profiles_created']:,} profiles, "
        f"{result['rows_failed']:,} in the error file"
        + (", truncated" if result["errors_truncated"] else "")
        + f"; ANALYZE runs {analyzer.runs if analyzer else 0})"
    )
    print(f"copy: {rows:,} rows in {copied['seconds']:.2f} s = {theirs:,.0f} rows/s")
    print(f"ratio at {rows:,}: {ours / theirs:.4f}")
    print(
        f"cpu: import {ours_cpu:.1f} cpu-s (python {result['cpu_python']:.1f}, postgres "
        f"{result['cpu_postgres']:.1f}) = {rows / ours_cpu:,.0f} rows/cpu-s; copy "
        f"{theirs_cpu:.2f} cpu-s = {rows / theirs_cpu:,.0f} rows/cpu-s; cpu ratio: "
        f"{theirs_cpu / ours_cpu:.4f}"
    )
    samples = result["rss_samples"]
    picks = sorted({max(0, math.ceil(len(samples) * q) - 1) for q in (0.1, 0.25, 0.5, 0.75, 1.0)})
    marks = [samples[i] for i in picks] if samples else []
    print(
        f"memory: rss before import {result['rss_before_mb']:.0f} MB; after "
        + ", ".join(f"{n:,} rows {mb:.0f} MB" for n, mb in marks)
        + f"; peak {result['peak_rss_mb']:.0f} MB (ru_maxrss); data keys cached "
        f"{result['data_key_cache']:,}"
    )
    path.unlink()
    if not args.keep_db:
        drop_database(args.database_url)
    return {"rows": rows, "ours": ours, "copy": theirs, "peak": result["peak_rss_mb"]}


def main() -> None:
    args = _parse()
    if args.child:
        child(args.child, args.batch_size)
        return
    sizes = sorted({args.rows, *([args.memory_rows] if 0 < args.memory_rows < args.rows else [])})
    print(
        f"bulk-import benchmark: sizes {', '.join(f'{s:,}' for s in sizes)}, batch "
        f"{args.batch_size}, a broken email every {args.bad_every} rows, load "
        f"{load_average()}"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="cdp-bench-import-") as workdir:
        for rows in sizes:
            results.append(run_size(args, rows, Path(workdir)))
    print()
    for r in results:
        print(
            f"{r['rows']:>10,} rows: import {r['ours']:,.0f} rows/s, COPY {r['copy']:,.0f} rows/s, "
            f"peak rss {r['peak']:.0f} MB"
        )
    if len(results) > 1:
        print(
            f"peak rss growth {results[0]['rows']:,} -> {results[-1]['rows']:,} rows: "
            f"{results[-1]['peak'] - results[0]['peak']:+.0f} MB"
        )
    print(f"load after: {load_average()}")
    print(f"ratio: {results[-1]['ours'] / results[-1]['copy']:.4f}")


if __name__ == "__main__":
    main()
