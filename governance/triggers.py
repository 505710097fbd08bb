"""The SQL that makes the audit table append-only (used by migration 0002, and by the test
suite, which must empty the table between transactional tests on SQLite).

UPDATE of any column and DELETE raise. One exception: `actor_id` may be set to NULL, because
deleting a user nulls that foreign key (SET_NULL); who acted stays in the hashed `actor_ref`."""

from __future__ import annotations

from typing import Any

TABLE = "governance_auditlogentry"
_ABORT = "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;"


def guarded_columns(model: Any) -> list[str]:
    return [f.column for f in model._meta.concrete_fields if f.column != "actor_id"]


def postgres_create(columns: list[str]) -> list[str]:
    cols = ", ".join(columns)
    return [
        """CREATE OR REPLACE FUNCTION cdp_audit_append_only() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION 'the audit trail is append-only';
        END;
        $$ LANGUAGE plpgsql;""",
        f"""CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE OF {cols} OR DELETE ON {TABLE}
            FOR EACH ROW EXECUTE FUNCTION cdp_audit_append_only();""",
        f"""CREATE TRIGGER {TABLE}_actor_only_null BEFORE UPDATE OF actor_id ON {TABLE}
            FOR EACH ROW WHEN (NEW.actor_id IS NOT NULL)
            EXECUTE FUNCTION cdp_audit_append_only();""",
    ]


def postgres_drop() -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {TABLE}_no_update ON {TABLE}",
        f"DROP TRIGGER IF EXISTS {TABLE}_actor_only_null ON {TABLE}",
        "DROP FUNCTION IF EXISTS cdp_audit_append_only()",
    ]


def sqlite_create(columns: list[str]) -> list[str]:
    cols = ", ".join(columns)
    return [
        f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE OF {cols} ON {TABLE} "
        f"{_ABORT}",
        f"CREATE TRIGGER IF NOT EXISTS {TABLE}_actor_only_null BEFORE UPDATE OF actor_id "
        f"ON {TABLE} WHEN NEW.actor_id IS NOT NULL {_ABORT}",
        f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE} {_ABORT}",
    ]


def sqlite_drop() -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {TABLE}_no_update",
        f"DROP TRIGGER IF EXISTS {TABLE}_actor_only_null",
        f"DROP TRIGGER IF EXISTS {TABLE}_no_delete",
    ]


def create_statements(vendor: str, columns: list[str]) -> list[str]:
    if vendor == "postgresql":
        return postgres_create(columns)
    if vendor == "sqlite":
        return sqlite_create(columns)
    return []


def drop_statements(vendor: str) -> list[str]:
    return {"postgresql": postgres_drop, "sqlite": sqlite_drop}.get(vendor, list)()
