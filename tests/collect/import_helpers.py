"""Helpers for the bulk-import tests: write a file, run an import the way the command does."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from collect.imports import services
from collect.imports.mapping import mapping_parse
from collect.models import ImportJob


def write_csv(path: Path, lines: list[str], *, compress: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if compress:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_jsonl(path: Path, rows: list[Any], *, compress: bool = False) -> Path:
    lines = [r if isinstance(r, str) else orjson.dumps(r).decode() for r in rows]
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def run_import(
    *,
    workspace: Any,
    source: Any,
    path: Path,
    kind: str = "profiles",
    maps: list[str] | None = None,
    file_format: str | None = None,
    batch_size: int = 1000,
    **options: Any,
) -> ImportJob:
    mapping = mapping_parse(kind=kind, maps=maps or [], **options)
    job = services.import_job_create(
        workspace=workspace,
        source=source,
        mapping=mapping,
        file_name=path.name,
        file_format=file_format,
        size_bytes=path.stat().st_size,
    )
    return services.import_job_run_file(job=job, path=path, batch_size=batch_size)


def destroyed(key: Any) -> bool:
    """Whether a data key (as the job's foreign key gives it) is destroyed now."""
    assert key is not None
    key.refresh_from_db()
    return key.destroyed_at is not None
