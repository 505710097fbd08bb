"""Schema operations for migrations that run on PostgreSQL and on SQLite."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db.migrations import AddIndex, AlterField
from django.db.migrations.operations.base import Operation


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
    written row pays for each index it is in; these were a tenth of the intake drain's index
    writes (docs/benchmarks.md).

    On PostgreSQL only the index is dropped, CONCURRENTLY: a plain `AlterField` would drop and
    re-create a constrained foreign key, re-checking every row of a large table under lock.
    Elsewhere, `AlterField` as usual. Its migration sets `atomic = False`."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        _table, name, _column = self._index(app_label, schema_editor, from_state)
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        table, name, column = self._index(app_label, schema_editor, to_state)
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column})"
        )

    def _index(self, app_label: str, schema_editor: Any, state: Any) -> tuple[str, str, str]:
        """The table, the name Django gave the field's index, and the column, quoted."""
        model = state.apps.get_model(app_label, self.model_name)
        field = model._meta.get_field(self.name)
        table = model._meta.db_table
        name = schema_editor._create_index_name(table, [field.column])
        quote = schema_editor.quote_name
        return quote(table), quote(name), quote(field.column)


class DropPatternIndex(Operation):
    """Drop the `varchar_pattern_ops` index PostgreSQL's schema editor adds beside the index of
    a `CharField` with `db_index` or `unique`, for `LIKE 'prefix%'`, where nothing looks the
    column up by prefix (a hash, a correlation id). Other databases have no such index, and
    the model's state is unchanged: Django keeps no record of it. Its migration sets
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
        if schema_editor.connection.vendor == "postgresql":
            _table, name, _column = self._index(app_label, schema_editor, to_state)
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            table, name, column = self._index(app_label, schema_editor, to_state)
            schema_editor.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} "
                f"({column} varchar_pattern_ops)"
            )

    def describe(self) -> str:
        return f"Drop the pattern (LIKE) index of {self.model_name}.{self.name}"

    @property
    def migration_name_fragment(self) -> str:
        return f"drop_pattern_index_{self.model_name.lower()}_{self.name.lower()}"

    def _index(self, app_label: str, schema_editor: Any, state: Any) -> tuple[str, str, str]:
        model = state.apps.get_model(app_label, self.model_name)
        field = model._meta.get_field(self.name)
        table = model._meta.db_table
        name = schema_editor._create_index_name(table, [field.column], suffix="_like")
        quote = schema_editor.quote_name
        return quote(table), quote(name), quote(field.column)
