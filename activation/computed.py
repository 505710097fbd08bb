"""Computed traits: per-profile values derived from events (count, sum/avg/min/max of a numeric
property, first/last value, most frequent value, unique count), each over an optional window
and event filter, stored in ComputedTraitValue for audience rules.

Values are computed set-wise, one aggregate query per trait: for every profile (the scheduled
full recompute, which also lets windowed values decay as time passes) or for the profiles a
batch of events touched (the incremental update). Only plain event properties are read: a
property the workspace holds as personal data is sealed at collection, and a trait over it is
refused. A count, unique count or sum of 0 is not stored: no row means 0 (the audience compiler
supplies it), so a workspace of mostly idle profiles keeps few rows."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Avg, Count, F, Max, Min, QuerySet, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from activation.enums import ComputedTraitKind
from activation.exceptions import ComputedTraitInvalid, ComputedTraitKeyTaken, RuleError
from activation.models import ComputedTrait, ComputedTraitValue
from activation.rules.compiler import Compiler, check_schema
from activation.rules.jsonsql import JsonNumber, JsonRawText, JsonTypeOf
from profiles import selectors as profile_selectors

logger = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
WRITE_BATCH = 2000
ID_CHUNK = 500
NUMERIC_AGGREGATES = {
    ComputedTraitKind.SUM: Sum,
    ComputedTraitKind.AVG: Avg,
    ComputedTraitKind.MIN: Min,
    ComputedTraitKind.MAX: Max,
}
ZERO_ABSENT = frozenset(
    {ComputedTraitKind.COUNT, ComputedTraitKind.UNIQUE_COUNT, ComputedTraitKind.SUM}
)
EDITABLE = ("name", "event_name", "event_filter", "property", "window_days", "enabled")


# --- definitions ---------------------------------------------------------------------------


def _check_definition(
    *,
    workspace: Any,
    kind: str,
    event_name: str,
    event_filter: Any,
    property: str,
    window_days: int | None,
) -> None:
    if kind not in ComputedTraitKind.values:
        raise ComputedTraitInvalid("kind", f"unknown kind {kind!r}")
    if kind == ComputedTraitKind.COUNT:
        if property:
            raise ComputedTraitInvalid("property", "an event count reads no property")
    elif not property:
        raise ComputedTraitInvalid("property", f"a {kind} trait needs the property it reads")
    if property and property in profile_selectors.event_property_keys_sealed(workspace=workspace):
        raise ComputedTraitInvalid(
            "property",
            f"event property {property!r} is personal data in this workspace (sealed at "
            "collection): it cannot be aggregated",
        )
    if window_days is not None and (not isinstance(window_days, int) or window_days < 1):
        raise ComputedTraitInvalid("window_days", "the window is a whole number of days, >= 1")
    if not isinstance(event_filter, list):
        raise ComputedTraitInvalid("event_filter", "the event filter is a list of conditions")
    # The filter is the `where` of an event condition: checked by the same schema and rules.
    probe = {"event": {"name": event_name or "*", "where": event_filter}}
    try:
        check_schema(probe)
        Compiler(workspace=workspace, at=timezone.now()).filtered_events(probe["event"], ("event",))
    except RuleError as error:
        inner = error.path.removeprefix("/event/where") or "/"
        raise ComputedTraitInvalid("event_filter", f"{inner}: {error.message}") from None


@transaction.atomic
def computed_trait_create(
    *,
    workspace: Any,
    key: str,
    name: str,
    kind: str,
    event_name: str = "",
    event_filter: list[dict[str, Any]] | None = None,
    property: str = "",
    window_days: int | None = None,
    enabled: bool = True,
    compute: bool = True,
) -> ComputedTrait:
    """Define a computed trait (refused over a personal-data property) and, unless
    `compute=False`, compute it for every profile."""
    if not KEY_PATTERN.fullmatch(key or ""):
        raise ComputedTraitInvalid("key", "a key is 1-64 letters, digits, '-' or '_'")
    if ComputedTrait.objects.filter(workspace=workspace, key=key).exists():
        raise ComputedTraitKeyTaken()
    event_filter = list(event_filter or [])
    _check_definition(
        workspace=workspace,
        kind=kind,
        event_name=event_name,
        event_filter=event_filter,
        property=property,
        window_days=window_days,
    )
    trait = ComputedTrait.objects.create(
        workspace=workspace,
        key=key,
        name=name or key,
        kind=kind,
        event_name=event_name,
        event_filter=event_filter,
        property=property,
        window_days=window_days,
        enabled=enabled,
    )
    if compute and enabled:
        computed_trait_recompute(trait=trait)
    return trait


@transaction.atomic
def computed_trait_update(*, trait: ComputedTrait, **fields: Any) -> ComputedTrait:
    """Change a computed trait's definition (not its key or kind) and recompute it."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ComputedTraitInvalid(sorted(unknown)[0], "this field cannot be changed")
    for name, value in fields.items():
        setattr(trait, name, value)
    _check_definition(
        workspace=trait.workspace,
        kind=trait.kind,
        event_name=trait.event_name,
        event_filter=trait.event_filter,
        property=trait.property,
        window_days=trait.window_days,
    )
    trait.save()
    if trait.enabled:
        computed_trait_recompute(trait=trait)
    else:
        ComputedTraitValue.objects.filter(trait=trait).delete()
    return trait


# --- computing -------------------------------------------------------------------------------


def _events(trait: ComputedTrait, now: datetime, profile_ids: list[Any] | None) -> QuerySet[Any]:
    compiler = Compiler(workspace=trait.workspace, at=now)
    events = profile_selectors.event_list(workspace=trait.workspace)
    if trait.event_name:
        events = events.filter(name=trait.event_name)
    for where in trait.event_filter or ():
        events = events.filter(compiler.json_test("properties", where["property"], where))
    if trait.window_days:
        events = events.filter(timestamp__gte=now - timedelta(days=trait.window_days))
    if profile_ids is not None:
        events = events.filter(profile_id__in=profile_ids)
    return events


def _decode(kind: str | None, raw: Any) -> Any:
    """A JSON value from its type and ->> text (see jsonsql.JsonRawText)."""
    if raw is None or kind in (None, "null"):
        return None
    if kind == "string":
        return str(raw)
    if kind == "boolean":
        return str(raw) == "true"
    if kind == "number":
        number = float(raw)
        return int(number) if number.is_integer() and "." not in str(raw) else number
    return json.loads(raw) if isinstance(raw, str) else raw


def compute_values(
    trait: ComputedTrait, *, now: datetime, profile_ids: list[Any] | None = None
) -> dict[Any, Any]:
    """profile id -> value of the trait (only profiles with a value; 0 counts left out)."""
    events = _events(trait, now, profile_ids)
    kind, prop = trait.kind, trait.property
    per_profile = events.values("profile_id")
    if kind == ComputedTraitKind.COUNT:
        rows = per_profile.annotate(v=Count("pk")).values_list("profile_id", "v")
        return {pid: int(v) for pid, v in rows if v}
    if kind in NUMERIC_AGGREGATES:
        function = NUMERIC_AGGREGATES[ComputedTraitKind(kind)]
        rows = per_profile.annotate(v=function(JsonNumber("properties", prop))).values_list(
            "profile_id", "v"
        )
        values = {pid: _number(v) for pid, v in rows if v is not None}
        if kind == ComputedTraitKind.SUM:
            values = {pid: v for pid, v in values.items() if v != 0}
        return values
    if kind == ComputedTraitKind.UNIQUE_COUNT:
        rows = per_profile.annotate(
            v=Count(JsonRawText("properties", prop), distinct=True)
        ).values_list("profile_id", "v")
        return {pid: int(v) for pid, v in rows if v}
    typed = events.annotate(
        t=JsonTypeOf("properties", prop), raw=JsonRawText("properties", prop)
    ).filter(raw__isnull=False)
    if kind in (ComputedTraitKind.FIRST, ComputedTraitKind.LAST):
        order = (
            [F("timestamp").asc(), F("id").asc()]
            if kind == ComputedTraitKind.FIRST
            else [F("timestamp").desc(), F("id").desc()]
        )
        ranked = typed.annotate(
            rn=Window(RowNumber(), partition_by=[F("profile_id")], order_by=order)
        ).filter(rn=1)
        return {
            pid: _decode(t, raw) for pid, t, raw in ranked.values_list("profile_id", "t", "raw")
        }
    if kind == ComputedTraitKind.MOST_FREQUENT:
        counted = (
            typed.exclude(t__in=["object", "array"])
            .values("profile_id", "t", "raw")
            .annotate(n=Count("pk"))
            .values_list("profile_id", "t", "raw", "n")
        )
        best: dict[Any, tuple[int, str, str]] = {}
        for pid, t, raw, n in counted:
            text = str(raw)
            # most occurrences; ties go to the alphabetically first value
            if pid not in best or (-n, text) < (-best[pid][0], best[pid][2]):
                best[pid] = (n, t, text)
        return {pid: _decode(t, text) for pid, (_n, t, text) in best.items()}
    raise ComputedTraitInvalid("kind", f"unknown kind {kind!r}")


def _number(value: Any) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() else number


def _columns(value: Any) -> tuple[float | None, str | None]:
    """(number, text) columns for a value: numbers compare as numbers, the rest as text."""
    if isinstance(value, bool):
        return None, "true" if value else "false"
    if isinstance(value, int | float):
        return float(value), None
    if isinstance(value, str):
        return None, value
    return None, json.dumps(value, sort_keys=True)


def _write(trait: ComputedTrait, values: dict[Any, Any], now: datetime) -> None:
    rows = []
    for profile_id, value in values.items():
        number, text = _columns(value)
        rows.append(
            ComputedTraitValue(
                trait=trait,
                profile_id=profile_id,
                value=value,
                number=number,
                text=text,
                updated_at=now,
            )
        )
    ComputedTraitValue.objects.bulk_create(
        rows,
        batch_size=WRITE_BATCH,
        update_conflicts=True,
        unique_fields=["trait", "profile"],
        update_fields=["value", "number", "text", "updated_at"],
    )


@transaction.atomic
def computed_trait_recompute(*, trait: ComputedTrait) -> int:
    """Recompute a trait for every profile (windows move on, so values decay); returns how many
    profiles hold a value."""
    now = timezone.now()
    values = compute_values(trait, now=now) if trait.enabled else {}
    _write(trait, values, now)
    ComputedTraitValue.objects.filter(trait=trait, updated_at__lt=now).delete()
    trait.last_computed_at = now
    trait.save(update_fields=["last_computed_at", "updated_at"])
    return len(values)


def _uuids(profile_ids: Iterable[Any]) -> list[uuid.UUID]:
    return sorted({p if isinstance(p, uuid.UUID) else uuid.UUID(str(p)) for p in profile_ids})


@dataclass(frozen=True)
class TraitsUpdated:
    traits: int
    values: int


@transaction.atomic
def computed_traits_update(*, workspace_id: int, profile_ids: Sequence[Any]) -> TraitsUpdated:
    """Recompute every enabled computed trait of the workspace for these profiles only (the
    profiles a batch of events touched), set-wise: one query per trait and chunk of ids."""
    ids = _uuids(profile_ids)
    traits = list(
        ComputedTrait.objects.filter(workspace_id=workspace_id, enabled=True).select_related(
            "workspace"
        )
    )
    now = timezone.now()
    written = 0
    for trait in traits:
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]
            values = compute_values(trait, now=now, profile_ids=chunk)
            _write(trait, values, now)
            ComputedTraitValue.objects.filter(trait=trait, profile_id__in=chunk).exclude(
                profile_id__in=list(values)
            ).delete()
            written += len(values)
    return TraitsUpdated(traits=len(traits), values=written)


def on_keys_personal(workspace_id: int, keys: Sequence[str]) -> None:
    """Trait keys a steward has just classified as personal data (they were plain attributes;
    cdp.core.hooks): a computed trait over an event property of that name holds plain copies
    of, or figures from, what profiles now seals in the events. Each is disabled (an audited
    change, as a steward's) and its values deleted, in the classification's transaction;
    enabling it again is refused like defining it."""
    sealed = profile_selectors.event_property_keys_sealed(
        workspace=profile_selectors.workspace_get_by_id(workspace_id=workspace_id)
    )
    for trait in ComputedTrait.objects.filter(workspace_id=workspace_id, enabled=True).exclude(
        property=""
    ):
        if trait.property not in sealed:
            continue
        trait.enabled = False
        trait.save(update_fields=["enabled", "updated_at"])
        deleted, _ = ComputedTraitValue.objects.filter(trait=trait).delete()
        logger.info(
            "computed trait %s disabled: its property is personal data now (%d values deleted)",
            trait.pk,
            deleted,
        )


def computed_values_drop(*, profile_ids: Sequence[Any]) -> int:
    """Forget the computed values of profiles merged away (their events moved to the
    survivor, whose values are recomputed)."""
    deleted, _ = ComputedTraitValue.objects.filter(profile_id__in=list(profile_ids)).delete()
    return deleted


def computed_trait_list(*, workspace: Any) -> QuerySet[ComputedTrait]:
    return ComputedTrait.objects.filter(workspace=workspace).order_by("key")


def computed_values_for_profile(*, workspace: Any, profile_id: Any) -> dict[str, Any]:
    """Computed trait key -> the profile's value (traits without a value for it left out)."""
    return dict(
        ComputedTraitValue.objects.filter(
            trait__workspace=workspace, profile_id=profile_id, trait__enabled=True
        )
        .order_by("trait__key")
        .values_list("trait__key", "value")
    )
