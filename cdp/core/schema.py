"""Schema operations for migrations that run on PostgreSQL and on SQLite."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db.migrations import AddIndex, AlterField
from django.db.migrations.operations.base import Operation
from django.db.models import Index


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    """`AddIndexConcurrently` on PostgreSQL, where a plain CREATE INDEX would block every write
    to a large table while it builds; a plain `AddIndex` elsewhere (SQLite has no CONCURRENTLY,
    and the demo's database no writers to spare). Its migration sets `atomic = False`."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class DropLeadingFieldIndex(AlterField):
    """`AlterField` to `db_index=False`, for a field whose own index repeats the first column
    of a composite index (which serves the same lookups and the foreign key's checks). Every
    written row pays for each index it is in (docs/benchmarks.md).

    Only the index is dropped, found by introspection (the field's single-column, non-unique
    indexes that are not a `Meta` index), CONCURRENTLY on PostgreSQL. A plain `AlterField`
    would drop and re-create a constrained foreign key on PostgreSQL, re-checking every row
    of a large table under lock, and rebuild the whole table on SQLite. Its migration sets
    `atomic = False`."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        column = model._meta.get_field(self.name).column
        meta = {index.name for index in model._meta.indexes}
        names = schema_editor._constraint_names(
            model, [column], index=True, type_=Index.suffix, exclude=meta
        )
        for name in sorted(names):
            if not name.endswith("_like"):  # a text column's pattern twin: DropPatternIndex
                _drop_index(schema_editor, model, name)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        field = model._meta.get_field(self.name)
        name = schema_editor._create_index_name(model._meta.db_table, [field.column])
        _create_index(schema_editor, model, name, schema_editor.quote_name(field.column))


class DropPatternIndex(Operation):
    """Drop the `varchar_pattern_ops` index PostgreSQL's schema editor adds beside the index of
    a `CharField` with `db_index` or `unique`, for `LIKE 'prefix%'`, where nothing looks the
    column up by prefix (a hash, a correlation id). Found in the catalog by its operator
    class, not by the name Django would give it. Other databases have no such index, and the
    model's state is unchanged: Django keeps no record of it. Its migration sets
    `atomic = False`."""

    reversible = True

    def __init__(self, model_name: str, name: str) -> None:
        self.model_name = model_name
        self.name = name

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return self.__class__.__qualname__, [], {"model_name": self.model_name, "name": self.name}

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        column = model._meta.get_field(self.name).column
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT c.relname FROM pg_index i
                JOIN pg_class c ON c.oid = i.indexrelid
                JOIN pg_opclass o ON o.oid = i.indclass[0]
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                WHERE i.indrelid = %s::regclass AND i.indnatts = 1 AND a.attname = %s
                  AND o.opcname IN ('varchar_pattern_ops', 'text_pattern_ops')
                """,
                [schema_editor.quote_name(model._meta.db_table), column],
            )
            names = sorted(row[0] for row in cursor.fetchall())
        for name in names:
            _drop_index(schema_editor, model, name)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        column = model._meta.get_field(self.name).column
        name = schema_editor._create_index_name(model._meta.db_table, [column], suffix="_like")
        _create_index(
            schema_editor, model, name, f"{schema_editor.quote_name(column)} varchar_pattern_ops"
        )

    def describe(self) -> str:
        return f"Drop the pattern (LIKE) index of {self.model_name}.{self.name}"

    @property
    def migration_name_fragment(self) -> str:
        return f"drop_pattern_index_{self.model_name.lower()}_{self.name.lower()}"


def _drop_index(schema_editor: Any, model: Any, name: str) -> None:
    """DROP INDEX, CONCURRENTLY on PostgreSQL (no lock on the table's writes while it goes)."""
    quoted = schema_editor.quote_name(name)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quoted}")
    else:
        schema_editor.execute(f"DROP INDEX IF EXISTS {quoted}")


def _create_index(schema_editor: Any, model: Any, name: str, columns: str) -> None:
    """CREATE INDEX, CONCURRENTLY on PostgreSQL. An index of that name left invalid by an
    interrupted build is dropped first: IF NOT EXISTS would keep it, unusable."""
    _drop_index(schema_editor, model, name)
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    table = schema_editor.quote_name(model._meta.db_table)
    schema_editor.execute(
        f"CREATE INDEX {concurrently}{schema_editor.quote_name(name)} ON {table} ({columns})"
    )
