"""Audit helpers used by every app, on top of django-auditlog.

- `register(model)`: registers a model with auditlog so that encrypted and blind-index fields are
  never part of a diff (auditlog would read, and so decrypt, them otherwise); a test checks that
  every domain model is registered this way.
- `record_access(obj, actor, reason, fields)`: an ACCESS entry for each reveal of decrypted PII.
- `record_discard(obj, actor, reason, details)`: a DELETE entry for a row a steward removed on
  purpose from a store not audited on every change.
- `record_decision(obj, actor, reason, changes, details)`: an UPDATE entry for a change a
  steward decided on purpose and must justify (lifting a restriction of processing).
- `log_changes([(old, new), ...])`: the entries of rows a service wrote set-wise (no signals),
  appended at once, or at the end of a `deferred_entries()` block.
- `unattributed()`: a block whose entries name no actor, even within a steward's request.
The hash chain over entries is kept by the log-entry model itself (governance.AuditLogEntry)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from auditlog import get_logentry_model
from auditlog.cid import get_cid
from auditlog.context import auditlog_disabled, auditlog_value
from auditlog.diff import get_field_value, model_instance_diff, track_field
from auditlog.registry import auditlog
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from django.db.models.signals import pre_save
from django.utils.encoding import smart_str

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
    obj: models.Model,
    *,
    actor: Any,
    reason: str,
    fields: list[str],
    via: str = "admin",
    how: str = "revealed",
    details: dict[str, Any] | None = None,
) -> models.Model:
    """Write an ACCESS entry: who read which decrypted fields of `obj` (`how`: revealed on a
    page, exported to a file), and why; `details` adds counts (never personal data)."""
    return _record_with_reason(
        obj,
        action="ACCESS",
        changes={name: [REDACTED, how] for name in fields},
        actor=actor,
        reason=reason,
        refused="A reason is required to reveal personal data.",
        data={**(details or {}), "fields": fields, "via": via},
    )


def record_discard(
    obj: models.Model,
    *,
    actor: Any,
    reason: str,
    details: dict[str, Any],
    via: str = "admin",
) -> models.Model:
    """Write a DELETE entry for a row a steward removed on purpose, with why and what it held
    (`details`: counts and codes, never personal data); for models not audited on every
    change (a transient buffer)."""
    return _record_with_reason(
        obj,
        action="DELETE",
        changes={},
        actor=actor,
        reason=reason,
        refused="A reason is required to discard data.",
        data={**details, "via": via},
    )


def record_decision(
    obj: models.Model,
    *,
    actor: Any,
    reason: str,
    changes: dict[str, list[str]],
    details: dict[str, Any],
    via: str = "admin",
) -> models.Model:
    """Write an UPDATE entry for a change a steward decided, with why (`changes`: field ->
    [before, after], plain values only; `details`: counts, codes and ids, never personal
    data). The automatic entry of the save says what changed; this one says who chose it and
    why, even where the save's own entry names no actor (a worker, an API token)."""
    return _record_with_reason(
        obj,
        action="UPDATE",
        changes=changes,
        actor=actor,
        reason=reason,
        refused="A reason is required for this change.",
        data={**details, "via": via},
    )


def _record_with_reason(
    obj: models.Model,
    *,
    action: str,
    changes: dict[str, Any],
    actor: Any,
    reason: str,
    refused: str,
    data: dict[str, Any],
) -> models.Model:
    """A steward's deliberate act on `obj`, with the reason they gave (required)."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput(refused, code="reason_required")
    entry_model = get_logentry_model()
    entry: models.Model = entry_model.objects.log_create(
        obj,
        force_log=True,
        action=getattr(entry_model.Action, action),
        changes=changes,
        actor=actor,
        additional_data={**data, "reason": reason[:500]},
    )
    return entry


# --- auditlog's diff, fast -------------------------------------------------------------------
#
# auditlog.diff.model_instance_diff reads each field through exception handlers (every field
# of a new row takes two) and looks the field up again per value: at ingestion rates (a few
# consent states per event) that showed in the drain's profile. `_diff` computes the same
# dict for the plain cases (no masked, included or JSON-kept fields, no reverse relations on
# the model, foreign keys as ids) and hands everything else to auditlog; a test compares both.

_NONE = smart_str(None)
_fast_plans: dict[type[models.Model], list[tuple[models.Field, str]] | None] = {}


def _fast_plan(model: type[models.Model]) -> list[tuple[models.Field, str]] | None:
    if model in _fast_plans:
        return _fast_plans[model]
    plan: list[tuple[models.Field, str]] | None = None
    registered = auditlog.get_model_fields(model)
    tracked = [f for f in model._meta.get_fields() if track_field(f)]
    if not (
        getattr(settings, "AUDITLOG_USE_FK_STRING_REPRESENTATION", False)
        or registered["include_fields"]
        or registered["mask_fields"]
        or set(tracked) != set(model._meta.fields)
    ):
        found: list[tuple[models.Field, str]] = []
        for field in model._meta.fields:
            if field.name in registered["exclude_fields"]:
                continue
            if isinstance(field, models.DateTimeField):
                kind = "datetime"
            elif isinstance(field, models.JSONField):
                kind = "json"
            elif (field.one_to_one or field.many_to_one) and hasattr(field, "rel_class"):
                kind = "fk"
            elif field.is_relation:
                break
            else:
                kind = "plain"
            found.append((field, kind))
        else:
            plan = found
    _fast_plans[model] = plan
    return plan


def _value(obj: models.Model | None, field: models.Field, kind: str) -> Any:
    """auditlog.diff.get_field_value (use_json_for_changes off) for the kinds of _fast_plan."""
    if obj is None:
        return _NONE
    try:
        if kind == "fk":
            return smart_str(getattr(obj, field.attname), strings_only=True)
        if kind == "plain":
            value = smart_str(getattr(obj, field.name))
            return str(value) if type(value).__name__ == "__proxy__" else value
    except (ObjectDoesNotExist, AttributeError):
        return get_field_value(obj, field, False)
    return get_field_value(obj, field, False)  # datetime and JSON: rare in diffs, kept exact


def _diff(old: models.Model | None, new: models.Model | None, use_json: bool) -> Any:
    instance = new if new is not None else old
    assert instance is not None
    plan = None if use_json else _fast_plan(type(instance))
    if plan is None:
        return model_instance_diff(old, new, use_json_for_changes=use_json)
    diff = {}
    for field, kind in plan:
        before, after = _value(old, field, kind), _value(new, field, kind)
        if before != after:
            diff[field.name] = (smart_str(before), smart_str(after))
    return diff or None


@contextmanager
def unattributed() -> Iterator[None]:
    """Within the block, audit entries name no actor and no address, also inside a request
    whose actor auditlog's middleware (or `set_actor`) set: for work a steward's action sets off
    but that is not theirs, such as storing other people's pending messages before an erasure.
    auditlog fills the actor in a pre_save receiver that acts only while its own context is
    the current one; a context of no actor, current here, makes every such receiver pass."""
    token = auditlog_value.set({"signal_duid": ("cdp.core.audit.unattributed", id(object()))})
    try:
        yield
    finally:
        auditlog_value.reset(token)


# Entries of log_changes kept for the end of a `deferred_entries()` block (see there).
_deferred: ContextVar[list[Any] | None] = ContextVar("cdp_audit_deferred", default=None)


@contextmanager
def deferred_entries() -> Iterator[None]:
    """Within the block, the entries `log_changes` makes are kept and appended together when
    the block ends without an error (inside the caller's transaction; dropped with it on an
    error). Appending takes the trail's lock (one writer at a time, until commit), so a long
    transaction that audits early would hold every other auditing writer back for the rest of
    its work: the ingestion drain defers its entries to its very end."""
    outer = _deferred.get()
    token = _deferred.set([])
    try:
        yield
        entries = _deferred.get() or []
    finally:
        _deferred.reset(token)
    if outer is not None:
        outer.extend(entries)
    else:
        _append(entries)


def _append(entries: list[Any]) -> None:
    if not entries:
        return
    entry_model = get_logentry_model()
    append_many = getattr(entry_model, "append_many", None)
    if append_many is not None:
        append_many(entries)
    else:
        for entry in entries:
            entry.save()


def log_changes(changes: Sequence[tuple[models.Model | None, models.Model | None]]) -> int:
    """The audit entries per-row saves and deletes would have written, for rows written
    set-wise (bulk writes send no signals): for each `(old, new)`, in order, a CREATE (old
    None), an UPDATE, or a DELETE (new None) entry with auditlog's own diff, and the request's
    actor and address (auditlog's context) as auditlog would fill them. They are appended to
    the trail in one go where the log-entry model can (`append_many`, the hash-chained model in
    governance), one by one otherwise, or at the end of a `deferred_entries()` block.
    Unregistered models and changes with no difference write nothing. Returns the entries."""
    if auditlog_disabled.get():
        return 0
    entry_model = get_logentry_model()
    use_json = bool(getattr(settings, "AUDITLOG_STORE_JSON_CHANGES", False))
    entries = []
    # auditlog's set_actor context fills actor and address in a pre_save receiver: sent only
    # when one listens (the signal costs more than building the entry otherwise).
    listened = pre_save.has_listeners(entry_model)
    for old, new in changes:
        instance = new if new is not None else old
        assert instance is not None
        if not auditlog.contains(type(instance)):
            continue
        diff = _diff(old, new, use_json)
        if not diff:
            continue
        if old is None:
            action = entry_model.Action.CREATE
        elif new is None:
            action = entry_model.Action.DELETE
        else:
            action = entry_model.Action.UPDATE
        pk = entry_model.objects._get_pk_value(instance)
        fields: dict[str, Any] = {
            "content_type": ContentType.objects.get_for_model(instance),
            "object_pk": pk,
            "object_repr": smart_str(instance),
            "serialized_data": entry_model.objects._get_serialized_data_or_none(instance),
            "action": action,
            "changes": diff,
            "cid": get_cid(),
            # The defaults, given: the model would look each up (a foreign key's is slow).
            "object_id": None,
            "changes_text": "",
            "actor_id": None,
            "actor_email": None,
            "remote_addr": None,
            "remote_port": None,
            "additional_data": None,
        }
        if isinstance(pk, int):
            fields["object_id"] = pk
        get_additional_data = getattr(instance, "get_additional_data", None)
        if callable(get_additional_data):
            fields["additional_data"] = get_additional_data()
        entry = entry_model(**fields)
        if listened:
            pre_save.send(
                sender=entry_model, instance=entry, raw=False, using=None, update_fields=None
            )
        entries.append(entry)
    deferred = _deferred.get()
    if deferred is not None:
        deferred.extend(entries)
    else:
        _append(entries)
    return len(entries)
