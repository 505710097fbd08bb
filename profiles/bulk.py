"""Set-wise SQL for the ingestion pipeline, on PostgreSQL and SQLite.

Django's bulk_create and bulk_update build an expression tree per value (bulk_update a CASE per
row and field), which cost more than the database work itself at ingestion rates. These helpers
adapt each column once through its model field and then write plain rows: COPY on PostgreSQL,
multi-row VALUES statements otherwise, and UPDATE .. FROM (VALUES ..) for set-wise updates."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connection, models
from django.utils import timezone

CHUNK = 500

Adapter = Callable[[Any], Any]


def _adapter(field: models.Field) -> Adapter:
    if connection.vendor == "postgresql" and not isinstance(field, models.JSONField):
        return lambda value: value  # psycopg adapts uuid, datetime, bytes, str and numbers
    prep = field.get_db_prep_value
    return lambda value: None if value is None else prep(value, connection, prepared=False)


def _columns(model: type[models.Model], names: Sequence[str]) -> list[models.Field]:
    fields = []
    for name in names:
        field = model._meta.get_field(name)
        assert isinstance(field, models.Field)
        fields.append(field)
    return fields


def _defaults(model: type[models.Model], named: list[models.Field]) -> list[tuple[Any, Any]]:
    now = timezone.now()
    found = []
    for field in model._meta.concrete_fields:
        if field in named or isinstance(field, models.AutoField):
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            found.append((field, now))
        elif field.has_default():
            found.append((field, field.get_default()))
    return found


def _adapt_rows(fields: list[models.Field], rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    adapters = [_adapter(f) for f in fields]
    return [[a(v) for a, v in zip(adapters, row, strict=True)] for row in rows]


def insert(
    model: type[models.Model],
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    on_conflict: str = "",
) -> None:
    """Insert rows (values in the order of `names`, model field names). With `on_conflict`
    (an `ON CONFLICT ...` clause, identical on both databases) a multi-row INSERT is used,
    otherwise COPY on PostgreSQL."""
    if not rows:
        return
    fields = _columns(model, names)
    # Columns not named take the model's default (or now, for auto_now fields), so that a
    # field added later does not break writers that do not know it.
    defaults = _defaults(model, fields)
    if defaults:
        fields = fields + [f for f, _ in defaults]
        tail = tuple(value for _, value in defaults)
        rows = [tuple(row) + tail for row in rows]
    table = model._meta.db_table
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    values = _adapt_rows(fields, rows)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and not on_conflict:
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
            return
        row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            params = [v for row in chunk for v in row]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES "  # noqa: S608 — names, not data
                + ", ".join([row_sql] * len(chunk))
                + (" " + on_conflict if on_conflict else ""),
                params,
            )


def update_from_values(
    model: type[models.Model],
    *,
    key: str,
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    assignments: Sequence[str],
) -> None:
    """UPDATE model's table from a VALUES list matched on `key`.

    `rows` hold (key value, *values of `names`); in `assignments` the new values are
    `v.column2`, `v.column3`, ... (the names both databases give VALUES columns) and the
    current row is `t`, e.g. `"last_seen_at = v.column2"`."""
    if not rows:
        return
    fields = _columns(model, [key, *names])
    table = model._meta.db_table
    key_column = fields[0].column
    values = _adapt_rows(fields, rows)
    casts = [_cast(f) for f in fields]
    row_sql = "(" + ", ".join(f"%s{c}" for c in casts) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            cursor.execute(
                f"UPDATE {table} AS t SET {', '.join(assignments)} "  # noqa: S608
                f"FROM (VALUES {', '.join([row_sql] * len(chunk))}) AS v "
                f"WHERE t.{key_column} = v.column1",
                [v for row in chunk for v in row],
            )


def _cast(field: models.Field) -> str:
    """PostgreSQL types VALUES columns from their first row's parameters; say it explicitly."""
    if connection.vendor != "postgresql":
        return ""
    return "::" + field.db_type(connection)  # type: ignore[operator]
