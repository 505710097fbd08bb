"""The intake buffer (validated batches waiting for the identity pipeline) and bulk imports."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from cdp.core.crypto import EncryptedJSONField
from cdp.core.crypto.fields import EncryptedField
from cdp.core.ids import uuid7
from collect.enums import ImportFormat, ImportKind, ImportStatus


class IntakeBatch(models.Model):
    """One request's valid messages, sealed under the workspace's current intake key (they
    hold personal data), deleted as soon as the pipeline has stored them."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey("profiles.Source", on_delete=models.CASCADE, related_name="+")
    received_at = models.DateTimeField()
    message_count = models.PositiveIntegerField()
    payload = EncryptedJSONField(key_field="data_key")
    data_key = models.ForeignKey("profiles.DataKey", on_delete=models.PROTECT, related_name="+")
    attempts = models.PositiveSmallIntegerField(default=0)
    # An error code or exception class, never a message (messages may quote values).
    last_error = models.CharField(max_length=200, blank=True)
    dead = models.BooleanField(default=False)
    # A request's messages are split by a hash of their userId (else anonymousId): one drain
    # at a time per shard, so that concurrent drains rarely wait on each other's identifiers.
    shard = models.PositiveSmallIntegerField(default=0)
    # Messages a drain handed back because another drain held one of their identifiers: the
    # next drain of the shard waits for the identifiers instead (so they are postponed once).
    contended = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "intake batches"
        indexes = [
            models.Index(fields=["dead", "shard", "received_at"], name="intake_shard_pending")
        ]

    def __str__(self) -> str:
        return f"Intake batch {self.id}"


class EncryptedBytesField(EncryptedField):
    """Encrypted raw bytes (a part of an uploaded file, an error file)."""

    _pyi_private_set_type: bytes | None
    _pyi_private_get_type: bytes

    def check_plain(self, value: Any) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"{self.name} takes bytes")
        return bytes(value)

    def to_bytes(self, value: Any) -> bytes:
        return bytes(value)

    def from_bytes(self, data: bytes) -> bytes:
        return data


class ImportJob(models.Model):
    """One bulk import of a file of profiles or events into a workspace, from the command line
    or the admin: what was asked (source, kind, mapping), how far it got, what it counted, and
    the rows that failed (the error file, sealed, no values of personal-data columns in it).

    An uploaded file waits in `ImportChunk` rows sealed under `upload_key` and is deleted, its
    key destroyed, once processed. Both keys are intake keys owned by no profile (see
    collect.imports.storage); the hourly `intake_keys_shred` leaves them alone while in use."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = models.ForeignKey("profiles.Workspace", on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey("profiles.Source", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=ImportKind.choices)
    file_name = models.CharField(max_length=255, blank=True)
    file_format = models.CharField(max_length=8, choices=ImportFormat.choices)
    compressed = models.BooleanField(default=False)
    # The parsed mapping (collect.imports.mapping.ImportMapping.as_dict): column names and
    # targets, never values.
    mapping = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    size_bytes = models.PositiveBigIntegerField(default=0)
    bytes_read = models.PositiveBigIntegerField(default=0)
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_ok = models.PositiveBigIntegerField(default=0)
    rows_failed = models.PositiveBigIntegerField(default=0)
    rows_stored = models.PositiveBigIntegerField(default=0)
    rows_unchanged = models.PositiveBigIntegerField(
        default=0, help_text="Valid rows already stored (by an earlier import, or repeated)."
    )
    rows_dropped = models.PositiveBigIntegerField(
        default=0, help_text="Valid rows of erased (suppressed) people: not stored."
    )
    profiles_created = models.PositiveBigIntegerField(default=0)
    merges = models.PositiveBigIntegerField(default=0)
    conflicts = models.PositiveBigIntegerField(default=0)
    error_counts = models.JSONField(default=dict, blank=True)  # error code -> rows
    errors_truncated = models.BooleanField(default=False)
    # A code and a message naming columns or lines, never a value.
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    upload_key = models.ForeignKey(
        "profiles.DataKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    error_key = models.ForeignKey(
        "profiles.DataKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    error_file = EncryptedBytesField(null=True, key_field="error_key")
    errors_expire_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written with every batch: a job RUNNING without progress for a while lost its worker.
    progress_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "created_at"], name="importjob_ws_created"),
            models.Index(fields=["status"], name="importjob_status"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import {self.id}"

    @property
    def progress(self) -> float:
        """0..1 by bytes of the (possibly compressed) file read; 1 once finished."""
        if self.status in (ImportStatus.DONE, ImportStatus.FAILED):
            return 1.0
        if not self.size_bytes:
            return 0.0
        return min(1.0, self.bytes_read / self.size_bytes)


class ImportChunk(models.Model):
    """One part (up to 1 MiB) of an uploaded import file, sealed under its job's upload key;
    deleted with the key destroyed once the job has run."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    payload = EncryptedBytesField(key_field="data_key")
    data_key = models.ForeignKey("profiles.DataKey", on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="importchunk_job_seq_unique")
        ]

    def __str__(self) -> str:
        return f"Import chunk {self.seq} of {self.job_id}"
