"""Audit helpers used by every app, on top of django-auditlog.

- `register(model)`: registers a model with auditlog so that encrypted and blind-index fields are
  never part of a diff (auditlog would read, and so decrypt, them otherwise); a test checks that
  every domain model is registered this way.
- `record_access(obj, actor, reason, fields)`: an ACCESS entry for each reveal of decrypted PII.
The hash chain over entries is kept by the log-entry model itself (governance.AuditLogEntry)."""

from __future__ import annotations

from typing import Any

from auditlog import get_logentry_model
from auditlog.registry import auditlog
from django.db import models

from cdp.core.crypto.fields import personal_data_fields
from cdp.core.exceptions import InvalidInput

REDACTED = "[redacted]"


def register(model: type[models.Model], *, exclude_fields: tuple[str, ...] = ()) -> None:
    """Audit every change to `model`, without personal-data or binary fields in the diffs
    (auditlog would decrypt the former and cannot print the latter)."""
    binary = {f.name for f in model._meta.concrete_fields if isinstance(f, models.BinaryField)}
    hidden = {f.name for f in personal_data_fields(model)} | binary | set(exclude_fields)
    auditlog.register(model, exclude_fields=sorted(hidden), serialize_data=False)


def is_registered(model: type[models.Model]) -> bool:
    return auditlog.contains(model)


def excluded_fields(model: type[models.Model]) -> set[str]:
    return set(auditlog.get_model_fields(model).get("exclude_fields", ()))


def record_access(
    obj: models.Model, *, actor: Any, reason: str, fields: list[str], via: str = "admin"
) -> models.Model:
    """Write an ACCESS entry: who read which decrypted fields of `obj`, and why."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput("A reason is required to reveal personal data.", code="reason_required")
    entry_model = get_logentry_model()
    entry = entry_model.objects.log_create(
        obj,
        force_log=True,
        action=entry_model.Action.ACCESS,
        changes={name: [REDACTED, "revealed"] for name in fields},
        actor=actor,
        additional_data={"reason": reason[:500], "fields": fields, "via": via},
    )
    return entry
