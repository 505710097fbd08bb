"""The tables every collected event writes, and those audiences and syncs write per member,
carry no index that another one makes redundant: each written row pays for each index it is
in (docs/benchmarks.md, "Redundant indexes")."""

from __future__ import annotations

import pytest
from django.db import connection, models

from activation.models import AudienceMembership, ComputedTraitValue, Delivery, MembershipChange
from consent.models import ConsentRecord, ConsentState, Receipt
from governance.models import AuditLogEntry
from profiles.models import (
    DataKey,
    Event,
    Identity,
    IdentityLink,
    Profile,
    SeenMessage,
    Trait,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="pattern indexes and the catalog read here are PostgreSQL's",
    ),
]

INGESTION_MODELS = [Event, SeenMessage, Identity, IdentityLink, Trait, DataKey, Profile,
                    ConsentRecord, ConsentState, Receipt, AuditLogEntry, AudienceMembership,
                    MembershipChange, ComputedTraitValue, Delivery]  # fmt: skip


def _indexes(table: str) -> list[tuple[str, bool, bool, list[int], str]]:
    """(name, unique, partial, key columns by number, definition) of the table's indexes."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, i.indisunique, i.indpred IS NOT NULL,
                   (i.indkey::int2[])[0:i.indnkeyatts - 1], pg_get_indexdef(i.indexrelid)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = %s::regclass
            """,
            [table],
        )
        return [(name, unique, partial, list(keys), sql) for name, unique, partial, keys, sql
                in cursor.fetchall()]  # fmt: skip


def _redundant(indexes: list[tuple[str, bool, bool, list[int], str]]) -> list[str]:
    """Plain indexes that another index makes redundant: a single column that leads a
    composite index, or the same columns as an index listed before it."""
    plain = [(name, keys) for name, unique, partial, keys, _sql in indexes
             if not unique and not partial]  # fmt: skip
    others = [(name, keys) for name, _unique, partial, keys, _sql in indexes if not partial]
    found = []
    for position, (name, keys) in enumerate(plain):
        leads = len(keys) == 1 and any(len(o) > 1 and o[0] == keys[0] for _n, o in others)
        repeats = any(o == keys for _n, o in plain[:position])
        if leads or repeats:
            found.append(name)
    return found


@pytest.mark.parametrize("model", INGESTION_MODELS, ids=lambda m: m.__name__)
def test_no_index_is_made_redundant_by_another(model: type[models.Model]) -> None:
    assert _redundant(_indexes(model._meta.db_table)) == []


@pytest.mark.parametrize("model", INGESTION_MODELS, ids=lambda m: m.__name__)
def test_no_pattern_index(model: type[models.Model]) -> None:
    # Hashes, request ids and object keys are looked up whole, never by prefix (LIKE 'x%').
    patterns = [
        name for name, *_rest, sql in _indexes(model._meta.db_table) if "pattern_ops" in sql
    ]
    assert patterns == []
