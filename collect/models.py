"""The intake buffer: validated batches waiting for the identity pipeline."""

from __future__ import annotations

from django.db import models

from cdp.core.crypto import EncryptedJSONField
from cdp.core.ids import uuid7


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

    class Meta:
        verbose_name_plural = "intake batches"
        indexes = [models.Index(fields=["dead", "received_at"], name="intake_pending")]

    def __str__(self) -> str:
        return f"Intake batch {self.id}"
