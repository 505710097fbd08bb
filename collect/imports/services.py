"""Bulk import: create a job, run it (from the command line on a local file, or in a worker on
an uploaded file), read its error file. See collect/imports/__init__.py for the whole story."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cdp.core.audit import record_access
from cdp.core.exceptions import ApplicationError, InvalidInput, NotFound
from collect.enums import ImportStatus
from collect.exceptions import SourceDisabled
from collect.imports import storage
from collect.imports.mapping import ImportMapping
from collect.imports.readers import detect_format
from collect.imports.runner import DEFAULT_BATCH_SIZE, ImportCounts, Progress, import_stream
from collect.models import ImportJob
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.enums import SourceKind

logger = logging.getLogger(__name__)
STALE_AFTER = timedelta(minutes=10)


class ImportNotReady(InvalidInput):
    code = "errors_not_available"
    default_message = "This import has no error file (no row failed, or it has expired)."


def import_source_get_or_create(*, workspace: Any, name: str) -> tuple[Any, bool]:
    """The workspace's source of that name, else a new source of kind import."""
    name = name.strip()
    if not name:
        raise InvalidInput("A source name is required.", code="invalid_source")
    existing = profile_selectors.source_list(workspace=workspace).filter(name=name).first()
    if existing is not None:
        return existing, False
    return profile_services.source_create(
        workspace=workspace, name=name, kind=SourceKind.IMPORT
    ), True


@transaction.atomic
def import_job_create(
    *,
    workspace: Any,
    source: Any,
    mapping: ImportMapping,
    file_name: str,
    file_format: str | None = None,
    created_by: Any = None,
    upload: Iterable[bytes] | None = None,
    size_bytes: int = 0,
) -> ImportJob:
    """Record an import of `file_name` (format given, else from the extension). With `upload`
    (the file's bytes, e.g. from the admin) the file is sealed into the job and the job is
    queued for a worker once this transaction commits."""
    if source.workspace_id != workspace.pk:
        raise NotFound("No such source in this workspace.", code="source_not_found")
    if not source.enabled:
        raise SourceDisabled()
    job = ImportJob(
        workspace=workspace,
        source=source,
        kind=mapping.kind,
        file_name=Path(file_name).name[:255],
        file_format=detect_format(file_name, file_format),
        mapping=mapping.as_dict(),
        size_bytes=size_bytes,
        created_by=created_by,
    )
    job.save(force_insert=True)
    if upload is not None:
        job.size_bytes = storage.upload_store(job=job, parts=upload)
        ImportJob.objects.filter(pk=job.pk).update(size_bytes=job.size_bytes)
        from collect import tasks

        job_id = str(job.pk)
        transaction.on_commit(lambda: tasks.import_job_run.delay(job_id))
    return job


def import_job_run(*, job_id: Any, batch_size: int = DEFAULT_BATCH_SIZE) -> ImportJob:
    """Run a queued job on its uploaded file (in a worker), then delete the upload and destroy
    its key. A redelivered task leaves alone a job that finished, or that another worker is
    running (progress within STALE_AFTER); it takes over one whose worker was lost."""
    now = timezone.now()
    stale = now - STALE_AFTER
    claimed = (
        ImportJob.objects.filter(pk=job_id)
        .filter(
            Q(status=ImportStatus.QUEUED)
            | Q(status=ImportStatus.RUNNING, progress_at__lt=stale)
            | Q(status=ImportStatus.RUNNING, progress_at__isnull=True, started_at__lt=stale)
        )
        .update(status=ImportStatus.RUNNING, progress_at=now)
    )
    job = ImportJob.objects.select_related("source__workspace").get(pk=job_id)
    if not claimed:
        logger.info("import %s not run: it is %s", job.pk, job.status)
        return job
    try:
        with storage.upload_open(job=job) as raw:
            return _run(job=job, raw=raw, on_progress=None, batch_size=batch_size)
    finally:
        storage.upload_discard(job=job)


def import_job_run_file(
    *,
    job: ImportJob,
    path: str | Path,
    on_progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportJob:
    """Run a job on a local file (the management commands; the bench)."""
    with Path(path).open("rb") as raw:
        return _run(job=job, raw=raw, on_progress=on_progress, batch_size=batch_size)


def _run(
    *, job: ImportJob, raw: IO[bytes], on_progress: Progress | None, batch_size: int
) -> ImportJob:
    job.status = ImportStatus.RUNNING
    job.started_at = job.progress_at = timezone.now()
    job.save(update_fields=["status", "started_at", "progress_at"])

    def progress(counts: ImportCounts) -> None:
        ImportJob.objects.filter(pk=job.pk).update(**counts.as_fields(), progress_at=timezone.now())
        if on_progress is not None:
            on_progress(counts)

    errors = None
    try:
        _counts, errors = import_stream(
            job=job, raw=raw, on_progress=progress, batch_size=batch_size
        )
    except ApplicationError as exc:
        job.failure_code, job.failure_message = exc.code, exc.message[:500]
        job.status = ImportStatus.FAILED
        errors = exc.extra.get("error_file")
    except Exception as exc:
        # Never the exception's text: it may quote a value.
        logger.error("import %s stopped: %s", job.pk, type(exc).__name__)
        job.failure_code = "internal_error"
        job.failure_message = (
            f"The import stopped on an unexpected error ({type(exc).__name__}); the rows "
            "stored before it stay stored. See the worker's log."
        )
        job.status = ImportStatus.FAILED
        _finish(job, None)
        raise
    else:
        job.status = ImportStatus.DONE
    _finish(job, errors)
    return job


def _finish(job: ImportJob, errors: Any) -> None:
    job.refresh_from_db(fields=[*ImportCounts().as_fields(), "compressed"])
    if errors is not None:
        job.errors_truncated = errors.truncated
        storage.errors_store(job=job, data=errors.content())
    job.finished_at = timezone.now()
    job.save(
        update_fields=[
            "status", "failure_code", "failure_message", "errors_truncated", "error_key",
            "error_file", "errors_expire_at", "finished_at",
        ]
    )  # fmt: skip


def import_errors_read(*, job: ImportJob, actor: Any) -> bytes:
    """The job's error file, decrypted for `actor`, who is recorded in the audit trail."""
    available = ImportJob.objects.filter(
        pk=job.pk, error_file__isnull=False, errors_expire_at__gt=timezone.now()
    ).exists()
    if not available:
        raise ImportNotReady()
    record_access(job, actor=actor, reason="import error file download", fields=["error_file"])
    data = job.error_file
    assert data is not None
    return data


def import_files_expire() -> int:
    """Delete expired error files and destroy their keys (hourly, with the intake keys)."""
    return storage.import_files_expire()
