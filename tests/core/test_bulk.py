"""cdp.core.bulk: plain inserts, inserts with ON CONFLICT and RETURNING (on PostgreSQL through a
session's temporary table, emptied by the statement that reads it), updates from a list of rows
(a temporary table on PostgreSQL, VALUES on SQLite), and JSON written as the standard library
would write it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction

from cdp.core import bulk
from cdp.core.ids import uuid7
from governance.models import AuditLogEntry
from profiles import services as profile_services
from profiles.enums import ProfileStatus
from profiles.models import Event, Profile, SeenMessage

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def claim(workspace: Any, message_ids: list[str]) -> set[str]:
    rows = bulk.insert(
        SeenMessage,
        ["workspace", "message_id", "received_at"],
        [(workspace.pk, m, NOW) for m in message_ids],
        on_conflict="ON CONFLICT (workspace_id, message_id) DO NOTHING",
        returning=["message_id"],
    )
    return {row[0] for row in rows}


def test_insert_returning_gives_only_the_rows_inserted(workspace: Any) -> None:
    # when: the same ids twice, in one transaction (the temporary table is reused, empty)
    with transaction.atomic():
        first = claim(workspace, ["m-1", "m-2"])
        second = claim(workspace, ["m-2", "m-3"])
    # then
    assert first == {"m-1", "m-2"}
    assert second == {"m-3"}
    assert SeenMessage.objects.filter(workspace=workspace).count() == 3
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_bulk\\_%%' "
                "AND relpersistence = 't'"
            )
            assert cursor.fetchone()[0] >= 1


def test_upsert_returns_ids_of_inserted_and_updated_rows(workspace: Any) -> None:
    # given
    ids = [Profile.objects.create(workspace=workspace).pk for _ in range(2)]
    columns = ["id", "workspace", "status", "attributes", "merge_count", "created_at", "updated_at"]
    clause = "ON CONFLICT (id) DO UPDATE SET merge_count = excluded.merge_count"
    # when: one existing profile, one new
    new_id = Profile(workspace=workspace).pk
    returned = bulk.insert(
        Profile,
        columns,
        [
            (ids[0], workspace.pk, ProfileStatus.ACTIVE, {}, 7, NOW, NOW),
            (new_id, workspace.pk, ProfileStatus.ACTIVE, {}, 1, NOW, NOW),
        ],
        on_conflict=clause,
        returning=["id", "merge_count"],
    )
    # then
    assert sorted(returned, key=str) == sorted([(ids[0], 7), (new_id, 1)], key=str)
    assert Profile.objects.get(pk=ids[0]).merge_count == 7


def test_json_is_written_as_the_standard_library_writes_it(workspace: Any) -> None:
    # given: a key orjson refuses (not a string) and an integer beyond 64 bits
    profile_id = Profile(workspace=workspace).pk
    attributes = {1: "one", "big": 2**70, "text": "é\u2028", "list": [1.5, None, True]}
    # when
    bulk.insert(
        Profile,
        ["id", "workspace", "status", "attributes", "merge_count", "created_at", "updated_at"],
        [(profile_id, workspace.pk, ProfileStatus.ACTIVE, attributes, 0, NOW, NOW)],
    )
    # then
    assert Profile.objects.get(pk=profile_id).attributes == {
        "1": "one",
        "big": 2**70,
        "text": "é\u2028",
        "list": [1.5, None, True],
    }
    assert bulk._json_text({"a": [1, "b"]}) == '{"a":[1,"b"]}'


def test_update_from_values(workspace: Any) -> None:
    # given
    ids = [Profile.objects.create(workspace=workspace).pk for _ in range(3)]
    # when
    bulk.update_from_values(
        Profile,
        key="id",
        names=["merge_count", "attributes"],
        rows=[(ids[0], 4, {"plan": "vip"}), (ids[2], 9, {})],
        assignments=["merge_count = v.column2", "attributes = v.column3"],
    )
    # then
    found = dict(Profile.objects.filter(pk__in=ids).values_list("id", "merge_count"))
    assert [found[i] for i in ids] == [4, 0, 9]
    assert Profile.objects.get(pk=ids[0]).attributes == {"plan": "vip"}


@pytest.mark.django_db(transaction=True)
def test_update_from_values_outside_a_transaction_and_twice_in_a_row(workspace: Any) -> None:
    """On PostgreSQL the rows go through a temporary table that empties at commit and is read
    by the update that deletes them: in autocommit each call still applies its own rows, and
    only those."""
    ids = [Profile.objects.create(workspace=workspace).pk for _ in range(3)]
    for pk, count in ((ids[0], 5), (ids[1], 7)):
        bulk.update_from_values(
            Profile,
            key="id",
            names=["merge_count", "first_seen_at"],
            rows=[(pk, count, None)],
            assignments=["merge_count = t.merge_count + v.column2", "first_seen_at = v.column3"],
        )
    found = dict(Profile.objects.filter(pk__in=ids).values_list("id", "merge_count"))
    assert [found[i] for i in ids] == [5, 7, 0]
    assert not Profile.objects.filter(pk__in=ids, first_seen_at__isnull=False).exists()


def test_a_row_of_the_wrong_width_is_refused(workspace: Any) -> None:
    with pytest.raises(ValueError, match="3 values for 2 columns"):
        bulk.insert(SeenMessage, ["workspace", "message_id"], [(workspace.pk, "m", "extra")])


def test_model_rows_reads_database_values(workspace: Any) -> None:
    seen = SeenMessage(workspace=workspace, message_id="m-1", received_at=NOW)
    assert bulk.model_rows([seen], ["workspace", "message_id"]) == [(workspace.pk, "m-1")]
    assert bulk.model_rows([], ["workspace"]) == []


def test_insert_calls_a_callable_default_per_row(workspace: Any) -> None:
    # given: the primary key (default uuid7) not named
    columns = ["workspace", "status", "attributes", "merge_count", "created_at", "updated_at"]
    row: tuple[Any, ...] = (workspace.pk, ProfileStatus.ACTIVE, {}, 0, NOW, NOW)
    # when: two rows in one call
    bulk.insert(Profile, columns, [row, row])
    # then: each row got its own key, as two saves would give
    assert Profile.objects.filter(workspace=workspace).values("pk").distinct().count() == 2


@pytest.mark.django_db(transaction=True)
def test_insert_returning_outside_a_transaction_writes_and_returns_the_rows(
    workspace: Any,
) -> None:
    # when: called in autocommit (on PostgreSQL the temporary table empties at each commit)
    claimed = claim(workspace, ["m-1", "m-2"])
    # then
    assert claimed == {"m-1", "m-2"}
    assert SeenMessage.objects.filter(workspace=workspace).count() == 2


EVENT_COLUMNS = ["id", "workspace", "profile", "origin_profile_id", "source", "message_id", "type",
                 "name", "timestamp", "original_timestamp", "sent_at", "received_at", "properties",
                 "context", "sealed", "data_key"]  # fmt: skip


def _event_rows(workspace: Any, count: int) -> list[tuple[Any, ...]]:
    profile, key = profile_services.profile_create(workspace=workspace)
    source = profile_services.source_create(workspace=workspace, name="Shop")
    return [
        (uuid7(), workspace.pk, profile.pk, str(profile.pk), source.pk, f"m-{n}", "track",
         "Product Viewed", NOW, None, NOW, NOW, {"sku": "A-1", "price": 12.5, "big": 2**70},
         {"ip": "203.0.113.0", "tags": ["a", None]}, bytes([n]) * 40, key.pk)
        for n in range(count)
    ]  # fmt: skip


def _stored_events(workspace: Any) -> list[tuple[Any, ...]]:
    """What does not depend on the workspace: ids of its own profile, source and key left out,
    but the stored origin profile compared with the profile."""
    rows = Event.objects.filter(workspace=workspace).order_by("message_id")
    return [
        (str(origin) == str(profile), *rest)
        for profile, origin, *rest in rows.values_list(
            "profile", "origin_profile_id", "message_id", "type", "name", "timestamp",
            "original_timestamp", "sent_at", "received_at", "properties", "context")
    ]  # fmt: skip


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_a_binary_copy_stores_what_a_text_copy_stores(
    workspace: Any, other_workspace: Any, monkeypatch: Any
) -> None:
    # given: the same rows for two workspaces; a uuid given as text, a NULL, JSON past 64 bits
    rows = _event_rows(workspace, 3)
    other = [(uuid7(), other_workspace.pk, *row[2:]) for row in _event_rows(other_workspace, 3)]
    # when: one workspace copied in binary, the other with every type left to the text COPY
    with transaction.atomic():
        assert bulk._copy_types(connection.cursor(), "profiles_event", bulk._columns(
            Event, EVENT_COLUMNS)) is not None  # fmt: skip
        bulk.insert(Event, EVENT_COLUMNS, rows)
    monkeypatch.setattr(bulk, "_BINARY_TYPES", {})
    monkeypatch.setattr(bulk, "_column_types", {})
    with transaction.atomic():
        bulk.insert(Event, EVENT_COLUMNS, other)
    # then: the same values, sealed bytes included
    binary, text = _stored_events(workspace), _stored_events(other_workspace)
    assert binary == text
    assert binary[0][0] is True
    assert binary[0][8] == {"sku": "A-1", "price": 12.5, "big": 2**70}
    assert sorted(bytes(s or b"") for s in Event.objects.filter(workspace=workspace).values_list(
        "sealed", flat=True)) == sorted(row[14] for row in rows)  # fmt: skip


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_a_binary_copy_writes_an_address_given_as_text(workspace: Any) -> None:
    # given: audit entries as the auditlog middleware fills them (the address as text)
    entries = [
        AuditLogEntry(content_type=ContentType.objects.get_for_model(Profile), object_pk="1",
                      object_repr="p", action=AuditLogEntry.Action.UPDATE, changes={"a": [1, 2]},
                      remote_addr=address)
        for address in ("203.0.113.7", "2001:db8::1", None)
    ]  # fmt: skip
    # when
    AuditLogEntry.append_many(entries)
    # then
    stored = AuditLogEntry.objects.order_by("-pk").values_list("remote_addr", flat=True)[:3]
    assert list(stored)[::-1] == ["203.0.113.7", "2001:db8::1", None]


def test_json_a_field_encodes_itself_goes_out_as_its_encoder_writes_it() -> None:
    # given: what Django prepares for a JSON field with an encoder of its own (psycopg's Jsonb)
    from psycopg.types.json import Jsonb

    class Money(json.JSONEncoder):
        def default(self, o: Any) -> Any:
            return str(o) if isinstance(o, Decimal) else super().default(o)

    prepared = Jsonb({"price": Decimal("9.90")}, dumps=Money().encode)
    # when / then: the binary jsonb format is a version byte and the text
    assert bulk._jsonb_binary(prepared) == b'\x01{"price": "9.90"}'
    assert bulk._jsonb_binary('{"a":1}') == b'\x01{"a":1}'
    assert bulk._jsonb_binary(None) is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the temporary table is PostgreSQL's")
def test_an_update_of_a_few_rows_probes_the_index_instead_of_reading_the_table(
    workspace: Any,
) -> None:
    """The rows go through a temporary table: without statistics the planner took it for some
    thousand rows and read the whole target table (every profile, every event) per update."""
    columns = ["workspace", "status", "attributes", "merge_count", "created_at", "updated_at"]
    bulk.insert(Profile, columns, [(workspace.pk, ProfileStatus.ACTIVE, {}, 0, NOW, NOW)] * 5000)
    ids = list(Profile.objects.values_list("pk", flat=True)[:2])

    def seq_scans() -> int:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE profiles_profile")
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'profiles_profile'"
            )
            return int(cursor.fetchone()[0])

    before = seq_scans()
    bulk.update_from_values(
        Profile,
        key="id",
        names=["merge_count"],
        rows=[(pk, 3) for pk in ids],
        assignments=["merge_count = v.column2"],
    )
    assert seq_scans() == before
    assert Profile.objects.filter(pk__in=ids, merge_count=3).count() == 2
