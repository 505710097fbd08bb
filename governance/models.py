"""The audit trail: django-auditlog's entries, chained by hash and append-only."""

from __future__ import annotations

from typing import Any

from auditlog.models import AbstractLogEntry
from django.db import models, transaction

from governance import chain


class AuditLogEntry(AbstractLogEntry):
    """An auditlog entry that stores the hash of the previous entry and of its own canonical
    content. Entries are only ever inserted; `verify_audit_chain` recomputes the chain."""

    actor_ref = models.CharField(max_length=64, blank=True, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    entry_hash = models.CharField(max_length=64, editable=False, unique=True)

    class Meta(AbstractLogEntry.Meta):
        swappable = "AUDITLOG_LOGENTRY_MODEL"
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"

    def __str__(self) -> str:
        return f"Audit entry {self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise chain.AuditTrailAppendOnly()
        with transaction.atomic(using=kwargs.get("using")):
            super().save(*args, **kwargs)

    def _save_table(self, *args: Any, **kwargs: Any) -> Any:
        # Sealed here, after pre_save: auditlog's set_actor() (the middleware, on every admin
        # request) fills actor, cid and remote address in a pre_save hook, and those are hashed.
        chain.seal_new_entry(self)
        return super()._save_table(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise chain.AuditTrailAppendOnly()
