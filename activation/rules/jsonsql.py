"""Typed reads of one key of a JSON column, the same on PostgreSQL (jsonb) and SQLite (JSON1).

Django's key lookups compare JSON values loosely across the two databases (SQLite orders text
above every number; PostgreSQL orders jsonb by type first), and a plain cast of `->>` text to a
number fails the whole query on the first non-numeric value. So the rule language reads a key
through these expressions instead: a number only when the value is a JSON number, text only
when it is a JSON string (compared bytewise, `COLLATE "C"`, as SQLite does), and each
predicate is definite: FALSE, never NULL, when the key is missing or of another type, so that
NOT of a condition is its complement (see JsonPredicate.definite)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import BooleanField, Expression, F, FloatField, TextField
from django.db.models.fields.json import compile_json_path  # type: ignore[attr-defined]

NUMBER = "number"
STRING = "string"


class _Dialect(ABC):
    """SQL snippets for one key of one JSON column; each returns (sql, params)."""

    def __init__(self, col: str, key: str) -> None:
        self.col = col
        self.key = key

    @abstractmethod
    def typeof(self) -> tuple[str, list[Any]]:
        """The JSON type, normalized: string, number, boolean, object, array, null."""

    @abstractmethod
    def number(self) -> tuple[str, list[Any]]:
        """The value when it is a JSON number, else NULL."""

    @abstractmethod
    def text(self) -> tuple[str, list[Any]]:
        """The value when it is a JSON string, else NULL."""

    @abstractmethod
    def raw_text(self) -> tuple[str, list[Any]]:
        """The value as text whatever its type."""

    @abstractmethod
    def equals(self, value: Any) -> tuple[str, list[Any]]:
        """Typed equality with a scalar."""

    @abstractmethod
    def array_has(self, value: Any) -> tuple[str, list[Any]]:
        """The value is an array holding the scalar."""

    def binary(self, sql: str) -> str:
        return sql

    def present(self) -> tuple[str, list[Any]]:
        sql, params = self.typeof()
        return f"{sql} <> 'null'", params

    def any_equal(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        for value in values:
            sql, p = self.equals(value)
            parts.append(sql)
            params += p
        return "(" + " OR ".join(parts) + ")", params


def _plain_text(value: Any) -> bool:
    """A string that no other JSON value prints as (`->>` gives "90" for the number 90, "true"
    for true, JSON text for objects): comparing `->>` text with it is typed equality."""
    if not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except ValueError:
        return True
    return False


class _Postgres(_Dialect):
    def typeof(self) -> tuple[str, list[Any]]:
        return f"jsonb_typeof({self.col} -> %s)", [self.key]

    def number(self) -> tuple[str, list[Any]]:
        # CASE guarantees the cast runs only on JSON numbers (AND does not order evaluation).
        return (
            f"(CASE WHEN jsonb_typeof({self.col} -> %s) = 'number' "
            f"THEN ({self.col} ->> %s)::double precision END)",
            [self.key, self.key],
        )

    def text(self) -> tuple[str, list[Any]]:
        return (
            f"(CASE WHEN jsonb_typeof({self.col} -> %s) = 'string' THEN {self.col} ->> %s END)",
            [self.key, self.key],
        )

    def raw_text(self) -> tuple[str, list[Any]]:
        return f"({self.col} ->> %s)", [self.key]

    def equals(self, value: Any) -> tuple[str, list[Any]]:
        if _plain_text(value):
            # text equality: what a hand-written query does, cheaper than comparing jsonb
            return f"({self.col} ->> %s) = %s", [self.key, value]
        # jsonb equality is typed: "5" is not 5, and 5 equals 5.0.
        return f"({self.col} -> %s) = %s::jsonb", [self.key, json.dumps(value)]

    def any_equal(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        if all(_plain_text(v) for v in values):
            marks = ", ".join(["%s"] * len(values))
            return f"({self.col} ->> %s) IN ({marks})", [self.key, *values]
        marks = ", ".join(["%s::jsonb"] * len(values))
        return f"({self.col} -> %s) IN ({marks})", [self.key, *(json.dumps(v) for v in values)]

    def array_has(self, value: Any) -> tuple[str, list[Any]]:
        return (
            f"(jsonb_typeof({self.col} -> %s) = 'array' AND ({self.col} -> %s) @> %s::jsonb)",
            [self.key, self.key, json.dumps([value])],
        )

    def binary(self, sql: str) -> str:
        return f'{sql} COLLATE "C"'


_SQLITE_TYPES = (
    "CASE json_type({col}, %s) WHEN 'text' THEN 'string' WHEN 'integer' THEN 'number' "
    "WHEN 'real' THEN 'number' WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' "
    "ELSE json_type({col}, %s) END"
)


def _sqlite_number(value: int | float) -> int | float:
    """SQLite binds integers as 64-bit (a larger one raises OverflowError) and its JSON keeps
    a larger one as a real: compare it as one."""
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


class _Sqlite(_Dialect):
    @property
    def path(self) -> str:
        return compile_json_path([self.key])

    def typeof(self) -> tuple[str, list[Any]]:
        return "(" + _SQLITE_TYPES.format(col=self.col) + ")", [self.path, self.path]

    def number(self) -> tuple[str, list[Any]]:
        return (
            f"(CASE WHEN json_type({self.col}, %s) IN ('integer', 'real') "
            f"THEN json_extract({self.col}, %s) END)",
            [self.path, self.path],
        )

    def text(self) -> tuple[str, list[Any]]:
        return (
            f"(CASE WHEN json_type({self.col}, %s) = 'text' THEN json_extract({self.col}, %s) END)",
            [self.path, self.path],
        )

    def raw_text(self) -> tuple[str, list[Any]]:
        # What PostgreSQL's ->> gives: strings unquoted, true/false, numbers and JSON as text.
        return (
            f"(CASE json_type({self.col}, %s) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            f"WHEN 'null' THEN NULL ELSE CAST(json_extract({self.col}, %s) AS TEXT) END)",
            [self.path, self.path],
        )

    def equals(self, value: Any) -> tuple[str, list[Any]]:
        if isinstance(value, bool):
            return f"json_type({self.col}, %s) = %s", [self.path, "true" if value else "false"]
        if isinstance(value, int | float):
            return (
                f"(json_type({self.col}, %s) IN ('integer', 'real') "
                f"AND json_extract({self.col}, %s) = %s)",
                [self.path, self.path, _sqlite_number(value)],
            )
        return (
            f"(json_type({self.col}, %s) = 'text' AND json_extract({self.col}, %s) = %s)",
            [self.path, self.path, value],
        )

    def array_has(self, value: Any) -> tuple[str, list[Any]]:
        params: list[Any]
        if isinstance(value, bool):
            test, params = "je.type = %s", ["true" if value else "false"]
        elif isinstance(value, int | float):
            test, params = (
                "je.type IN ('integer', 'real') AND je.value = %s",
                [_sqlite_number(value)],
            )
        else:
            test, params = "je.type = 'text' AND je.value = %s", [value]
        return (
            f"(json_type({self.col}, %s) = 'array' AND EXISTS "  # noqa: S608 - names, not data
            f"(SELECT 1 FROM json_each({self.col}, %s) AS je WHERE {test}))",
            [self.path, self.path, *params],
        )


def _dialect(connection: Any, col: str, key: str) -> _Dialect:
    if connection.vendor == "postgresql":
        return _Postgres(col, key)
    if connection.vendor == "sqlite":
        return _Sqlite(col, key)
    raise ImproperlyConfigured(
        f"JSON rules are written for PostgreSQL and SQLite, not {connection.vendor}"
    )


def like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


_COMPARISONS = {"<": "<", ">": ">", "<=": "<=", ">=": ">=", "=": "=", "!=": "<>"}


class _JsonKey(Expression):
    """Base: one key of one JSON column (a field name, or an expression such as OuterRef)."""

    def __init__(self, column: str | Any, key: str, output_field: Any) -> None:
        super().__init__(output_field=output_field)
        self.column = F(column) if isinstance(column, str) else column
        self.key = key

    def get_source_expressions(self) -> list[Any]:
        return [self.column]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        (self.column,) = exprs

    def _column(self, compiler: Any, connection: Any) -> _Dialect:
        sql, params = compiler.compile(self.column)
        if params:  # a column reference takes no parameters; the snippets repeat it
            raise ValueError("a JSON column expression with parameters is not supported")
        return _dialect(connection, sql, self.key)


class JsonNumber(_JsonKey):
    """The key's value when it is a JSON number, else NULL."""

    def __init__(self, column: str | Any, key: str) -> None:
        super().__init__(column, key, FloatField())

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        sql, params = self._column(compiler, connection).number()
        return sql, tuple(params)


class JsonText(_JsonKey):
    """The key's value when it is a JSON string, else NULL."""

    def __init__(self, column: str | Any, key: str) -> None:
        super().__init__(column, key, TextField())

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        sql, params = self._column(compiler, connection).text()
        return sql, tuple(params)


class JsonRawText(_JsonKey):
    """The key's value as text whatever its type (strings unquoted, `true`, `5`, JSON for
    objects), NULL when missing or JSON null; read with JsonTypeOf to decode it."""

    def __init__(self, column: str | Any, key: str) -> None:
        super().__init__(column, key, TextField())

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        sql, params = self._column(compiler, connection).raw_text()
        return sql, tuple(params)


class JsonTypeOf(_JsonKey):
    """The key's JSON type: string, number, boolean, object, array or null; NULL if missing."""

    def __init__(self, column: str | Any, key: str) -> None:
        super().__init__(column, key, TextField())

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        sql, params = self._column(compiler, connection).typeof()
        return sql, tuple(params)


class JsonPredicate(_JsonKey):
    """A test of one key: `op` is a rule-language operator and `value` its operand; `bounds`
    carries the (lower, upper) ISO texts of `within_last_days`. With `definite` it is FALSE,
    never NULL, when the key is missing or of another type: needed under a NOT. Elsewhere (a
    WHERE, AND/OR outside any NOT) NULL filters like FALSE, and the bare test lets PostgreSQL
    estimate it as it would a hand-written one (a COALESCE gets a default selectivity)."""

    conditional = True

    def __init__(
        self,
        column: str | Any,
        key: str,
        op: str,
        value: Any = None,
        *,
        bounds: tuple[str, str] | None = None,
        definite: bool = True,
    ) -> None:
        super().__init__(column, key, BooleanField())
        self.op = op
        self.value = value
        self.bounds = bounds
        self.definite = definite

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        sql, params = self._test(self._column(compiler, connection))
        if self.definite:
            return f"COALESCE(({sql}), FALSE)", tuple(params)
        return f"({sql})", tuple(params)

    def _test(self, d: _Dialect) -> tuple[str, list[Any]]:
        op, value = self.op, self.value
        if op == "exists":
            return d.present()
        if op == "not_exists":
            sql, params = d.present()
            return f"NOT COALESCE(({sql}), FALSE)", params
        if op == "=":
            return d.equals(value)
        if op in ("!=", "not_in"):
            present, p1 = d.present()
            equal, p2 = d.any_equal([value] if op == "!=" else value)
            return f"({present} AND NOT COALESCE({equal}, FALSE))", p1 + p2
        if op == "in":
            return d.any_equal(value)
        if op in ("<", ">", "<=", ">="):
            if isinstance(value, int | float) and not isinstance(value, bool):
                sql, params = d.number()
                return f"{sql} {_COMPARISONS[op]} %s", [*params, float(value)]
            sql, params = d.text()
            return f"{d.binary(sql)} {_COMPARISONS[op]} %s", [*params, str(value)]
        if op == "within_last_days":
            assert self.bounds is not None
            sql, params = d.text()
            lower, upper = self.bounds
            return (
                f"({d.binary(sql)} >= %s AND {d.binary(sql)} < %s)",
                [*params, lower, *params, upper],
            )
        if op == "contains":
            has, p_has = d.array_has(value)
            if not isinstance(value, str):
                return has, p_has
            text, p_text = d.text()
            return (
                f"(lower({text}) LIKE %s ESCAPE '\\' OR {has})",
                [*p_text, like_pattern(value), *p_has],
            )
        raise ValueError(f"unknown operator {op!r}")
