"""Set-wise SQL for rows written in bulk (ingestion and the writes it triggers), on PostgreSQL
and SQLite.

Django's bulk_create and bulk_update build an expression tree per value (bulk_update a CASE per
row and field), and psycopg parses a multi-row `INSERT .. VALUES` in Python on every call (it
caches the parse only for statements up to 4 KB and 50 parameters): both cost more than the
database work itself at ingestion rates. These helpers adapt each column once and write plain
rows:

- PostgreSQL: `COPY` straight into the table; with `ON CONFLICT` or `RETURNING`, `COPY` into a
  temporary table of the same columns and one `INSERT .. SELECT` from it (a fifth of the client
  CPU of multi-row VALUES, half the time: docs/benchmarks.md). The `COPY` is binary when every
  column has a type in `_BINARY_TYPES` (text otherwise): psycopg then writes uuids, times and
  numbers without formatting them as text, and the server does not parse them back. JSON goes
  out as orjson text.
- SQLite: multi-row VALUES statements.
- Updates: on PostgreSQL, `COPY` into a temporary table and one `UPDATE .. FROM` it (a
  VALUES list of thousands of parameters cost more to compose in psycopg than the update
  itself); on SQLite, `UPDATE .. FROM (VALUES ..)`.

Rows hold database values in the order of `names` (model field names): sealed bytes for
encrypted fields, ids for foreign keys. A plain value of an encrypted field cannot be adapted
and fails the statement.

The temporary tables (`_bulk_<hash>`) live as long as the database session, are emptied by the
statement that reads them and again at every commit (`ON COMMIT DELETE ROWS`); a connection
pooler in transaction mode (which hands sessions around) would need `CDP_BULK_COPY=False`."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.string import BytesBinaryDumper

CHUNK = 500

Adapter = Callable[[Any], Any]


def _json_text(value: Any) -> str | None:
    """JSON for a jsonb column: orjson, or the standard library where orjson refuses a value
    (non-string keys, integers beyond 64 bits) so that what is stored never differs."""
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _identity(value: Any) -> Any:
    return value


def _prep(field: models.Field, value: Any) -> Any:
    return None if value is None else field.get_db_prep_value(value, connection, prepared=False)


def _adapter(field: models.Field) -> Adapter:
    if connection.vendor == "postgresql":
        if isinstance(field, models.JSONField) and field.encoder is None:
            return _json_text
        if not isinstance(field, models.JSONField):
            return _identity  # psycopg adapts uuid, datetime, bytes, str and numbers
    return partial(_prep, field)


def _columns(model: type[models.Model], names: Sequence[str]) -> list[models.Field]:
    fields = []
    for name in names:
        field = model._meta.get_field(name)
        assert isinstance(field, models.Field)
        fields.append(field)
    return fields


def _defaults(
    model: type[models.Model], named: list[models.Field]
) -> list[tuple[models.Field, Callable[[], Any]]]:
    """The fields not named that take a default, each with what gives its value for a row: a
    callable default (a uuid7 key, a token) is called per row, as Django's save would."""
    now = timezone.now()
    found: list[tuple[models.Field, Callable[[], Any]]] = []
    for field in model._meta.concrete_fields:
        if field in named or isinstance(field, models.AutoField):
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            found.append((field, partial(_identity, now)))
        elif field.has_default():
            if callable(field.default):
                found.append((field, field.get_default))
            else:
                found.append((field, partial(_identity, field.get_default())))
    return found


def _adapt_rows(
    fields: list[models.Field],
    rows: Iterable[Sequence[Any]],
    then: Sequence[Adapter | None] = (),
) -> list[Any]:
    """Rows with each column adapted once, touching only the columns that need it; `then`
    (per column, optional) is applied after (to None too)."""
    adapters = []
    for i, adapt in enumerate(_adapter(f) for f in fields):
        after = then[i] if i < len(then) else None
        if after is not None:
            adapters.append((i, after if adapt is _identity else partial(_then, adapt, after)))
        elif adapt is not _identity:
            adapters.append((i, adapt))
    width = len(fields)
    adapted: list[Any] = []
    for given in rows:
        if len(given) != width:
            raise ValueError(f"a row has {len(given)} values for {width} columns")
        if not adapters:
            adapted.append(given)
            continue
        row = list(given)
        for i, adapt in adapters:
            row[i] = adapt(row[i])
        adapted.append(row)
    return adapted


def _then(first: Adapter, second: Adapter, value: Any) -> Any:
    return second(first(value))


def _use_copy() -> bool:
    return connection.vendor == "postgresql" and getattr(settings, "CDP_BULK_COPY", True)


def _temp_table(cursor: Any, table: str, columns: str) -> str:
    """A session-wide temporary table with the types of `columns` of `table`. Made if missing
    on every use: one cheap statement, and always right (a creation rolled back with its
    transaction is simply made again)."""
    name = "_bulk_" + hashlib.sha256(f"{table}({columns})".encode()).hexdigest()[:24]
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {name} ON COMMIT DELETE ROWS AS "  # noqa: S608
        f"SELECT {columns} FROM {table} WITH NO DATA"
    )
    return name


# Column types a binary COPY writes with psycopg's own dumpers (chosen by the column's type, not
# the value's), and how a value the text COPY would accept is turned into what that dumper
# takes. A table with any other column type is copied as text.
_JSONB_BINARY_VERSION = b"\x01"


def _jsonb_binary(value: Any) -> bytes | None:
    """orjson text from `_json_text`, or psycopg's Jsonb wrapper that a JSON field with an
    encoder of its own prepares (`_prep`)."""
    if value is None:
        return None
    if not isinstance(value, str):
        dumped = (value.dumps or json.dumps)(value.obj)
        value = dumped.decode() if isinstance(dumped, bytes) else dumped
    return _JSONB_BINARY_VERSION + value.encode()


def _inet(value: Any) -> Any:
    return ipaddress.ip_interface(value) if isinstance(value, str) else value


def _numeric(value: Any) -> Any:
    return value if value is None or isinstance(value, Decimal) else Decimal(str(value))


def _text(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else str(value)


def _uuid(value: Any) -> Any:
    return value if value is None or isinstance(value, UUID) else UUID(str(value))


# Each converter passes None through.
_BINARY_TYPES: dict[str, Adapter | None] = {
    "uuid": _uuid,
    "text": _text,
    "varchar": _text,
    "bool": None,
    "int2": None,
    "int4": None,
    "int8": None,
    "float8": None,
    "date": None,
    "timestamptz": None,
    "bytea": None,
    "jsonb": _jsonb_binary,  # after _json_text: the binary jsonb format is a version byte + text
    "inet": _inet,
    "numeric": _numeric,
}


class _JsonbBinaryDumper(Dumper):
    """jsonb values that `_jsonb_binary` already made bytes."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


_column_types: dict[tuple[str, str, str], list[tuple[int, str]] | None] = {}


def _copy_types(
    cursor: Any, table: str, fields: list[models.Field]
) -> list[tuple[int, str]] | None:
    """(type oid, type name) of each column of `table`, or None if one has a type a binary COPY
    does not write here. Cached per database and table (a schema change restarts the app)."""
    key = (str(connection.settings_dict["NAME"]), table, ",".join(str(f.column) for f in fields))
    if key not in _column_types:
        cursor.execute(
            "SELECT a.attname, a.atttypid::int, t.typname FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            [table],
        )
        found: dict[str, tuple[int, str]] = {
            name: (oid, type_name) for name, oid, type_name in cursor.fetchall()
        }
        types = [found.get(str(f.column), (0, "")) for f in fields]
        _column_types[key] = None if any(t[1] not in _BINARY_TYPES for t in types) else types
    return _column_types[key]


def _copy_rows(
    raw: Any, statement: str, types: list[tuple[int, str]] | None, values: list[Any]
) -> None:
    """COPY `values` with `statement` (`COPY t (columns) FROM STDIN`): binary when `types`
    (the values then adapted with `_binary_converters`)."""
    if types is not None:
        # By type oid only (what `set_types` looks up), for this cursor: jsonb as made above,
        # and bytes, bytearray or memoryview as bytea (the registry's default dumper for the
        # bytea oid expects the DB-API `Binary` wrapper).
        raw.adapters.register_dumper(None, _JsonbBinaryDumper)
        raw.adapters.register_dumper(None, BytesBinaryDumper)
        statement += " (FORMAT BINARY)"
    with raw.copy(statement) as copy:
        if types is not None:
            copy.set_types([oid for oid, _name in types])
        for row in values:
            copy.write_row(row)


def _binary_converters(types: list[tuple[int, str]] | None) -> list[Adapter | None]:
    return [] if types is None else [_BINARY_TYPES[name] for _oid, name in types]


def insert(
    model: type[models.Model],
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    on_conflict: str = "",
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert rows (values in the order of `names`, model field names), optionally with an
    `ON CONFLICT ...` clause (identical on both databases) and `RETURNING` these columns (the
    rows inserted, or updated by `DO UPDATE`, in no particular order). Returns the returned
    rows ([] without `returning`).

    One statement per call on PostgreSQL: an `ON CONFLICT DO UPDATE` must not meet the same
    key twice in one call."""
    if not rows:
        return []
    fields = _columns(model, names)
    # Columns not named take the model's default (or now, for auto_now fields), so that a
    # field added later does not break writers that do not know it.
    defaults = _defaults(model, fields)
    if defaults:
        fields = fields + [f for f, _ in defaults]
        makers = [make for _, make in defaults]
        rows = [tuple(row) + tuple(make() for make in makers) for row in rows]
    table = model._meta.db_table
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(f.column)) for f in fields)
    returned = _columns(model, returning)
    tail_sql = (" " + on_conflict if on_conflict else "") + (
        " RETURNING " + ", ".join(quote(str(f.column)) for f in returned) if returning else ""
    )
    found: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if _use_copy():
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            types = _copy_types(cursor, table, fields)
            values = _adapt_rows(fields, rows, _binary_converters(types))
            if not tail_sql:
                _copy_rows(raw, f"COPY {table} ({columns}) FROM STDIN", types, values)
                return []
            # The temporary table empties at every commit: in autocommit the COPY would commit
            # alone and the INSERT find nothing, so the two always share a transaction.
            with transaction.atomic():
                temp = _temp_table(cursor, table, columns)
                _copy_rows(raw, f"COPY {temp} ({columns}) FROM STDIN", types, values)
                # The temporary rows are deleted by the statement that reads them.
                cursor.execute(
                    f"WITH v AS (DELETE FROM {temp} RETURNING {columns}) "  # noqa: S608
                    f"INSERT INTO {table} ({columns}) SELECT {columns} FROM v{tail_sql}"
                )
                return [tuple(row) for row in cursor.fetchall()] if returning else []
        values = _adapt_rows(fields, rows)
        row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            params = [v for row in chunk for v in row]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES "  # noqa: S608 — names, not data
                + ", ".join([row_sql] * len(chunk))
                + tail_sql,
                params,
            )
            if returning:
                # SQLite hands back what it stores (uuids as hex text): as Python values.
                found.extend(
                    tuple(f.to_python(v) for f, v in zip(returned, row, strict=True))
                    for row in cursor.fetchall()
                )
    return found


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
    with connection.cursor() as cursor:
        if _use_copy():
            _update_by_copy(cursor, table, fields, rows, assignments)
            return
        values = _adapt_rows(fields, rows)
        casts = [_cast(f) for f in fields]
        row_sql = "(" + ", ".join(f"%s{c}" for c in casts) + ")"
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            cursor.execute(
                f"UPDATE {table} AS t SET {', '.join(assignments)} "  # noqa: S608
                f"FROM (VALUES {', '.join([row_sql] * len(chunk))}) AS v "
                f"WHERE t.{key_column} = v.column1",
                [v for row in chunk for v in row],
            )


def _update_by_copy(
    cursor: Any,
    table: str,
    fields: list[models.Field],
    rows: Sequence[Sequence[Any]],
    assignments: Sequence[str],
) -> None:
    """update_from_values on PostgreSQL: the rows are COPYed (binary where the types allow)
    into a temporary table whose columns are named as VALUES names them (`column1`, ...), and
    one UPDATE reads them from it. A VALUES list of some thousand parameters was composed and
    quoted by psycopg in Python, value by value: a twentieth of the drain's CPU."""
    quote = connection.ops.quote_name
    names = ", ".join(f"column{n}" for n in range(1, len(fields) + 1))
    select = ", ".join(f"{quote(str(f.column))} AS column{n}" for n, f in enumerate(fields, 1))
    types = _copy_types(cursor, table, fields)
    values = _adapt_rows(fields, rows, _binary_converters(types))
    with transaction.atomic():  # the temporary table empties at commit (see insert)
        temp = _temp_table(cursor, table, select)
        _copy_rows(cursor.cursor, f"COPY {temp} ({names}) FROM STDIN", types, values)
        # The planner must know how few rows there are: a temporary table without statistics
        # is estimated at some thousand, and the join then read the whole target table
        # (profiles, events) instead of probing its index row by row.
        cursor.execute(f"ANALYZE {temp}")
        cursor.execute(
            f"WITH v AS (DELETE FROM {temp} RETURNING {names}) "  # noqa: S608 — names, not data
            f"UPDATE {table} AS t SET {', '.join(assignments)} "
            f"FROM v WHERE t.{quote(str(fields[0].column))} = v.column1"
        )


def _cast(field: models.Field) -> str:
    """PostgreSQL types VALUES columns from their first row's parameters; say it explicitly."""
    if connection.vendor != "postgresql":
        return ""
    return "::" + field.db_type(connection)  # type: ignore[operator]


def model_rows(objs: Sequence[models.Model], names: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows for `insert` from model instances that hold database values in these fields (no
    encrypted fields: their instance values are plain)."""
    attnames = [_columns(type(objs[0]), [n])[0].attname for n in names] if objs else []
    return [tuple(getattr(obj, a) for a in attnames) for obj in objs]
