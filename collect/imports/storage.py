"""Where an import's files wait, sealed: the uploaded file in `ImportChunk` rows (1 MiB each)
under the job's upload key, the error file on the job under its error key. Both keys are
unowned intake keys (`DataKeyPurpose.INTAKE`: data on its way into the pipeline, and the rows
that could not get in). The upload is deleted and its key destroyed once the job has run; the
error file and its key when it expires (COLLECT_IMPORT_ERRORS_DAYS, default 14). The hourly
`intake_keys_shred` destroys intake keys not in use: `import_keys_in_use` names the ones an
import still needs."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from collect.enums import ImportStatus
from collect.models import ImportChunk, ImportJob
from profiles import services as profile_services
from profiles.enums import DataKeyPurpose

CHUNK_BYTES = 1024 * 1024


def errors_ttl() -> timedelta:
    return timedelta(days=int(getattr(settings, "COLLECT_IMPORT_ERRORS_DAYS", 14)))


def _rechunk(parts: Iterable[bytes], size: int) -> Iterator[bytes]:
    pending = bytearray()
    for part in parts:
        pending += part
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def upload_store(*, job: ImportJob, parts: Iterable[bytes]) -> int:
    """Seal an uploaded file into the job's chunks under a new upload key; returns its size."""
    job.upload_key_id = profile_services.data_key_create_unowned(
        workspace_id=job.workspace_id, purpose=DataKeyPurpose.INTAKE
    )
    job.save(update_fields=["upload_key"])
    size = 0
    for seq, data in enumerate(_rechunk(parts, CHUNK_BYTES)):
        chunk = ImportChunk(job=job, seq=seq, data_key_id=job.upload_key_id)
        chunk.payload = data
        chunk.save(force_insert=True)
        size += len(data)
    return size


class _ChunkReader(io.RawIOBase):
    """The decrypted upload, one chunk in memory at a time."""

    def __init__(self, chunk_ids: list[Any]) -> None:
        self.chunk_ids = chunk_ids
        self.position = 0
        self.current = b""
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.offset >= len(self.current):
            if self.position >= len(self.chunk_ids):
                return 0
            chunk = ImportChunk.objects.get(pk=self.chunk_ids[self.position])
            self.current, self.offset = chunk.payload, 0
            self.position += 1
        size = min(len(buffer), len(self.current) - self.offset)
        buffer[:size] = self.current[self.offset : self.offset + size]
        self.offset += size
        return size


def upload_open(*, job: ImportJob) -> IO[bytes]:
    ids = list(ImportChunk.objects.filter(job=job).order_by("seq").values_list("pk", flat=True))
    return io.BufferedReader(_ChunkReader(ids), buffer_size=CHUNK_BYTES)


@transaction.atomic
def upload_discard(*, job: ImportJob) -> None:
    """Delete the upload and destroy its key (copies in backups become unreadable too)."""
    ImportChunk.objects.filter(job=job).delete()
    if job.upload_key_id is not None:
        profile_services.data_keys_destroy(key_ids=[job.upload_key_id])


def errors_store(*, job: ImportJob, data: bytes) -> None:
    """Seal the error file on the job (fields saved by the caller)."""
    if not data:
        return
    job.error_key_id = profile_services.data_key_create_unowned(
        workspace_id=job.workspace_id, purpose=DataKeyPurpose.INTAKE
    )
    job.error_file = data
    job.errors_expire_at = timezone.now() + errors_ttl()


def import_keys_in_use() -> set[Any]:
    """Intake keys an import still needs: uploads not yet processed, error files not expired."""
    now = timezone.now()
    uploads = ImportJob.objects.filter(
        status__in=(ImportStatus.QUEUED, ImportStatus.RUNNING), upload_key__isnull=False
    ).values_list("upload_key_id", flat=True)
    errors = ImportJob.objects.filter(
        error_file__isnull=False, errors_expire_at__gt=now
    ).values_list("error_key_id", flat=True)
    return set(uploads) | set(errors)


@transaction.atomic
def import_files_expire() -> int:
    """Delete expired error files and destroy their keys; returns how many."""
    now = timezone.now()
    expired = list(
        ImportJob.objects.filter(error_file__isnull=False)
        .filter(Q(errors_expire_at__lte=now) | Q(errors_expire_at__isnull=True))
        .values_list("pk", "error_key_id")
    )
    if not expired:
        return 0
    ImportJob.objects.filter(pk__in=[pk for pk, _ in expired]).update(error_file=None)
    profile_services.data_keys_destroy(key_ids=[key for _, key in expired if key])
    return len(expired)
