"""The import loop: rows are read as a stream, validated one by one, and the valid ones handed
to the identity pipeline (`profiles.services.ingest_messages`) in batches, each batch in its
own transaction. Memory stays constant whatever the file's size: one batch of messages, the
error file (capped at COLLECT_IMPORT_MAX_ERROR_LINES lines), the reader's buffers, and the
data keys of one batch (see flush).

Re-importing is a no-op. Every message id is derived from the row (collect.imports.rows), and
before a batch is handed over the ids already stored as events are left out, so an import
repeated after the dedup window (when `SeenMessage` no longer remembers the ids) stores
nothing either: no event, no trait written again, no identity touched. Within the window the
pipeline's own dedup would catch them as well."""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cdp.core.crypto import envelope
from cdp.core.exceptions import ApplicationError
from cdp.core.spreadsheet import spreadsheet_safe
from collect.enums import ImportFormat
from collect.imports.mapping import ImportMapping
from collect.imports.readers import (
    CountingReader,
    RawRow,
    csv_header,
    csv_rows,
    jsonl_rows,
    open_text,
)
from collect.imports.rows import RowBuilder, RowError
from collect.models import ImportJob
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.contracts import InboundMessage

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000


def max_error_lines() -> int:
    return int(getattr(settings, "COLLECT_IMPORT_MAX_ERROR_LINES", 10_000))


@dataclass
class ImportCounts:
    rows_total: int = 0
    rows_ok: int = 0
    rows_failed: int = 0
    rows_stored: int = 0
    rows_unchanged: int = 0
    rows_dropped: int = 0
    profiles_created: int = 0
    merges: int = 0
    conflicts: int = 0
    bytes_read: int = 0
    error_counts: Counter[str] = field(default_factory=Counter)

    def as_fields(self) -> dict[str, Any]:
        return {
            "rows_total": self.rows_total,
            "rows_ok": self.rows_ok,
            "rows_failed": self.rows_failed,
            "rows_stored": self.rows_stored,
            "rows_unchanged": self.rows_unchanged,
            "rows_dropped": self.rows_dropped,
            "profiles_created": self.profiles_created,
            "merges": self.merges,
            "conflicts": self.conflicts,
            "bytes_read": self.bytes_read,
            "error_counts": dict(sorted(self.error_counts.items())),
        }


class ErrorFile:
    """The rows that failed, as CSV: row, line, column, code, message, then the row itself with
    personal data masked (RowBuilder.masked). Capped: past the cap, errors are counted only."""

    def __init__(self, *, columns: list[str] | None, limit: int) -> None:
        self.columns = columns  # the CSV header; None for JSON Lines (one `row` column)
        self.limit = limit
        self.lines = 0
        self.truncated = False
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer)
        tail = [spreadsheet_safe(c) for c in columns] if columns is not None else ["row_masked"]
        self.writer.writerow(["row", "line", "column", "code", "message", *tail])

    def add(self, row: RawRow, errors: list[RowError], masked: dict[str, str]) -> None:
        for error in errors:
            if self.lines >= self.limit:
                self.truncated = True
                return
            if self.columns is not None:
                tail = [masked.get(c, "") for c in self.columns]
            else:
                tail = [spreadsheet_safe(_json(masked)) if masked else ""]
            column = spreadsheet_safe(error.column)
            self.writer.writerow([row.number, row.line, column, error.code, error.message, *tail])
            self.lines += 1

    def content(self) -> bytes:
        return self.buffer.getvalue().encode() if self.lines else b""


def _json(value: dict[str, str]) -> str:
    return orjson.dumps(value).decode()


Progress = Callable[[ImportCounts], None]


def import_stream(
    *,
    job: ImportJob,
    raw: IO[bytes],
    on_progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[ImportCounts, ErrorFile]:
    """Read `raw` (the job's file) and store its valid rows; returns the counts and the error
    file. Raises ImportFileError / ImportMappingError when the file cannot be read on; the
    batches stored until then stay stored (a re-import after a fix is idempotent)."""
    mapping = ImportMapping.from_dict(job.mapping)
    source = job.source
    workspace = source.workspace
    counting = CountingReader(raw)
    text, compressed = open_text(counting)
    if compressed != job.compressed:
        job.compressed = compressed
        ImportJob.objects.filter(pk=job.pk).update(compressed=compressed)
    builder = RowBuilder(
        mapping=mapping,
        workspace_id=workspace.pk,
        source_id=source.pk,
        job_id=job.pk,
        received_at=timezone.now(),
        checker=profile_selectors.identifier_checker(workspace=workspace),
        attribute_traits=profile_selectors.trait_keys_attribute(workspace=workspace),
        sealed_properties=profile_selectors.event_property_keys_sealed(workspace=workspace),
    )
    rows: Iterator[RawRow]
    if job.file_format == ImportFormat.CSV:
        header, reader = csv_header(text, mapping.delimiter)
        mapping.check_header(header)
        rows = csv_rows(reader, header)
        errors = ErrorFile(columns=header, limit=max_error_lines())
    else:
        rows = jsonl_rows(text)
        errors = ErrorFile(columns=None, limit=max_error_lines())
    counts = ImportCounts()
    batch: list[InboundMessage] = []

    def flush() -> None:
        if batch:
            _store(job=job, source=source, messages=batch, counts=counts)
            batch.clear()
            # Each new profile's data key is cached as it is made (2.7 KB each); an import of
            # a million people would fill the cache to its cap (100,000 keys, ~270 MB) with
            # keys it never uses again. Dropping them after each batch bounds the memory to
            # one batch's keys; a key needed later is unwrapped again (~10 us).
            envelope.clear_data_key_cache()
        counts.bytes_read = counting.count
        if on_progress is not None:
            on_progress(counts)

    try:
        for row in rows:
            counts.rows_total += 1
            if row.error is not None or row.values is None:
                code, message = row.error or ("invalid_row", "The row cannot be read.")
                _fail(counts, errors, row, [RowError("", code, message)], {})
                continue
            built = builder.build(row.values, row.number)
            if isinstance(built, list):
                _fail(counts, errors, row, built, builder.masked(row.values))
                continue
            counts.rows_ok += 1
            batch.append(built)
            if len(batch) >= batch_size:
                flush()
    except ApplicationError as exc:
        flush()  # the valid rows read before the file could not be read on are kept
        exc.extra["error_file"] = errors  # and the rows that failed before it are listed
        raise
    flush()
    return counts, errors


def _fail(
    counts: ImportCounts,
    errors: ErrorFile,
    row: RawRow,
    row_errors: list[RowError],
    masked: dict[str, str],
) -> None:
    counts.rows_failed += 1
    for code in dict.fromkeys(e.code for e in row_errors):
        counts.error_counts[code] += 1
    errors.add(row, row_errors, masked)


def _store(
    *, job: ImportJob, source: Any, messages: list[InboundMessage], counts: ImportCounts
) -> None:
    """Hand one batch to the pipeline, leaving out messages stored before (see the module
    docstring); one transaction."""
    ids = [m.message_id for m in messages]
    with transaction.atomic():
        stored = profile_selectors.event_message_ids_stored(
            workspace=source.workspace, message_ids=ids
        )
        fresh = [m for m in messages if m.message_id not in stored]
        counts.rows_unchanged += len(messages) - len(fresh)
        if not fresh:
            return
        outcome = profile_services.ingest_messages(source=source, messages=fresh)
    counts.rows_stored += outcome.stored
    counts.rows_unchanged += outcome.duplicates
    counts.rows_dropped += outcome.dropped
    counts.profiles_created += outcome.profiles_created
    counts.merges += outcome.merges
    counts.conflicts += outcome.conflicts
