"""The audit trail: every audited change becomes an entry chained by hash to the one before it,
the trail is append-only in the ORM and in the database, and `verify_audit_chain` names the
first entry that was tampered with."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from cdp.core.audit import REDACTED, record_access
from cdp.core.crypto import blind_index
from cdp.core.exceptions import InvalidInput
from governance import chain, triggers
from governance.tasks import audit_chain_verify
from profiles import services
from profiles.models import Identity
from tests.profiles.factories import UserFactory, make_profile

AuditLogEntry = get_logentry_model()
TABLE = triggers.TABLE
SENTINEL_EMAIL = "sentinel.person@example.com"


def _entries() -> list[Any]:
    return list(AuditLogEntry.objects.select_related("content_type").order_by("pk"))


def _summary(*models: str) -> list[tuple[str, int, str]]:
    """(model, action, repr) of the entries about `models`, oldest first."""
    return [
        (e.content_type.model, e.action, e.object_repr)
        for e in _entries()
        if e.content_type.model in models
    ]


def _assert_chained(entries: list[Any]) -> None:
    assert entries[0].prev_hash == chain.GENESIS
    assert [e.prev_hash for e in entries[1:]] == [e.entry_hash for e in entries[:-1]]
    for entry in entries:
        assert entry.entry_hash == chain.link_hash(entry.prev_hash, chain.canonical_content(entry))


def _rows() -> list[tuple[Any, ...]]:
    return list(
        AuditLogEntry.objects.order_by("pk").values_list(
            "pk", "object_repr", "changes", "prev_hash", "entry_hash"
        )
    )


@contextmanager
def _append_only_triggers_disabled() -> Iterator[None]:
    """What an attacker with table-owner rights could do; the chain must still tell."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # ALTER TABLE refuses while deferred foreign-key checks of this transaction wait.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
        else:
            for statement in triggers.sqlite_drop():
                cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            else:
                # the statements of migration 0002
                columns = triggers.guarded_columns(AuditLogEntry)
                for statement in triggers.sqlite_create(columns):
                    cursor.execute(statement)


@pytest.fixture
def trail(db: Any) -> list[Any]:
    """An intact audit trail: a workspace (with whatever it is seeded with), an update of it
    and a token, oldest first."""
    workspace = services.workspace_create(slug="acme", name="Acme Store")
    workspace.name = "Acme Shop"
    workspace.save(update_fields=["name"])
    services.api_token_create(workspace=workspace, name="ci", permissions=["view_profiles"])
    entries = _entries()
    assert [(e.content_type.model, e.action) for e in entries[-2:]] == [
        ("workspace", AuditLogEntry.Action.UPDATE),
        ("apitoken", AuditLogEntry.Action.CREATE),
    ]
    return entries


def test_workspace_create_and_update_are_chained_entries(db: Any) -> None:
    # given
    Action = AuditLogEntry.Action

    # when
    workspace = services.workspace_create(slug="acme", name="Acme Store")
    workspace.name = "Acme Shop"
    workspace.save(update_fields=["name"])

    # then
    assert _summary("workspace") == [
        ("workspace", Action.CREATE, "Acme Store"),
        ("workspace", Action.UPDATE, "Acme Shop"),
    ]
    entries = _entries()
    assert entries[-1].changes == {"name": ["Acme Store", "Acme Shop"]}
    _assert_chained(entries)


def test_api_token_create_is_audited_without_its_hash(db: Any) -> None:
    # given
    workspace = services.workspace_create(slug="acme", name="Acme Store")

    # when
    issued = services.api_token_create(
        workspace=workspace, name="ci", permissions=["view_profiles"]
    )
    services.api_token_revoke(token=issued.token)

    # then
    entries = _entries()
    created, revoked = entries[-2:]
    assert _summary("apitoken") == [
        ("apitoken", AuditLogEntry.Action.CREATE, str(issued.token)),
        ("apitoken", AuditLogEntry.Action.UPDATE, str(issued.token)),
    ]
    assert created.object_pk == str(issued.token.pk)
    assert created.changes["name"] == ["None", "ci"]
    assert created.changes["permissions"] == ["None", '["view_profiles"]']
    assert "token_hash" not in created.changes
    stored = json.dumps([created.changes, revoked.changes])
    assert issued.token.token_hash not in stored
    assert issued.secret not in stored
    assert list(revoked.changes) == ["revoked_at"]
    _assert_chained(entries)


def test_steward_role_grant_and_revoke_are_chained_entries(db: Any) -> None:
    # given
    workspace = services.workspace_create(slug="acme", name="Acme Store")
    steward = UserFactory(username="owner")

    # when
    services.steward_grant_roles(
        workspace=workspace, user=steward, roles=["view_profiles", "reveal_pii"]
    )
    services.steward_revoke_roles(workspace=workspace, user=steward, roles=["reveal_pii"])

    # then
    Action = AuditLogEntry.Action
    # roles live in the direct-foreign-key permission table of workspaces
    model = "workspaceuserobjectpermission"
    assert _summary(model) == [
        (model, Action.CREATE, "Acme Store | owner | view_profiles"),
        (model, Action.CREATE, "Acme Store | owner | reveal_pii"),
        (model, Action.DELETE, "Acme Store | owner | reveal_pii"),
    ]
    _assert_chained(_entries())


def test_verify_audit_chain_succeeds_on_an_intact_chain(trail: list[Any]) -> None:
    # given
    out = io.StringIO()

    # when
    call_command("verify_audit_chain", stdout=out)

    # then
    assert out.getvalue() == f"Audit chain intact: {len(trail)} entries verified.\n"


def test_verify_audit_chain_succeeds_on_an_empty_trail(db: Any) -> None:
    # given
    out = io.StringIO()

    # when
    call_command("verify_audit_chain", stdout=out)

    # then
    assert out.getvalue() == "Audit chain intact: 0 entries verified.\n"


def test_an_edited_object_repr_is_detected_and_named(trail: list[Any]) -> None:
    # given
    tampered = trail[1]
    with _append_only_triggers_disabled(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE governance_auditlogentry SET object_repr = %s WHERE id = %s",
            ["Globex", tampered.pk],
        )

    # when
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit_chain")

    # then
    assert str(raised.value) == (
        f"Audit chain broken at entry {tampered.pk}: content does not match its hash "
        "(2 entries checked)."
    )


def test_edited_changes_are_detected_and_named(trail: list[Any]) -> None:
    # given
    tampered = trail[1]
    forged = json.dumps({"name": ["Acme Store", "Acme Store"]})
    sql = (
        "UPDATE governance_auditlogentry SET changes = CAST(%s AS jsonb) WHERE id = %s"
        if connection.vendor == "postgresql"
        else "UPDATE governance_auditlogentry SET changes = %s WHERE id = %s"
    )
    with _append_only_triggers_disabled(), connection.cursor() as cursor:
        cursor.execute(sql, [forged, tampered.pk])
    assert AuditLogEntry.objects.get(pk=tampered.pk).changes == {
        "name": ["Acme Store", "Acme Store"]
    }

    # when
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit_chain")

    # then
    assert str(raised.value) == (
        f"Audit chain broken at entry {tampered.pk}: content does not match its hash "
        "(2 entries checked)."
    )


def test_a_deleted_middle_entry_is_detected_at_the_next_one(trail: list[Any]) -> None:
    # given
    deleted, following = trail[1], trail[2]
    with _append_only_triggers_disabled(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM governance_auditlogentry WHERE id = %s", [deleted.pk])

    # when
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit_chain")

    # then
    assert str(raised.value) == (
        f"Audit chain broken at entry {following.pk}: does not link to the entry before it "
        "(2 entries checked)."
    )


def test_the_triggers_are_back_after_tampering(trail: list[Any]) -> None:
    # given
    with _append_only_triggers_disabled():
        pass
    before = _rows()

    # when
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE governance_auditlogentry SET object_repr = %s", ["Globex"])

    # then
    assert _rows() == before


def test_saving_an_existing_entry_raises(trail: list[Any]) -> None:
    # given
    entry = AuditLogEntry.objects.get(pk=trail[0].pk)
    entry.object_repr = "Globex"
    before = _rows()

    # when
    with pytest.raises(chain.AuditTrailAppendOnly):
        entry.save()

    # then
    assert _rows() == before


def test_deleting_an_entry_raises(trail: list[Any]) -> None:
    # given
    entry = AuditLogEntry.objects.get(pk=trail[0].pk)
    before = _rows()

    # when
    with pytest.raises(chain.AuditTrailAppendOnly):
        entry.delete()

    # then
    assert _rows() == before


def test_queryset_update_is_refused_by_the_database(trail: list[Any]) -> None:
    # given
    before = _rows()

    # when
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLogEntry.objects.filter(pk=trail[0].pk).update(object_repr="Globex")

    # then
    assert _rows() == before


def test_queryset_delete_is_refused_by_the_database(trail: list[Any]) -> None:
    # given
    before = _rows()

    # when
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLogEntry.objects.filter(pk=trail[0].pk).delete()

    # then
    assert _rows() == before


def test_raw_update_is_refused_by_the_database(trail: list[Any]) -> None:
    # given
    before = _rows()

    # when
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE governance_auditlogentry SET object_repr = %s WHERE id = %s",
            ["Globex", trail[0].pk],
        )

    # then
    assert _rows() == before


def test_raw_delete_is_refused_by_the_database(trail: list[Any]) -> None:
    # given
    before = _rows()

    # when
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM governance_auditlogentry WHERE id = %s", [trail[0].pk])

    # then
    assert _rows() == before


def _identity_with_sentinel() -> Identity:
    workspace = services.workspace_create(slug="acme", name="Acme Store")
    profile = make_profile(workspace)
    data_key = profile.data_keys.get()
    now = timezone.now()
    return Identity.objects.create(
        workspace=workspace,
        profile=profile,
        origin_profile_id=profile.pk,
        identifier_type="email",
        blind_index=blind_index(workspace.pk, "email", SENTINEL_EMAIL),
        value=SENTINEL_EMAIL,
        data_key=data_key,
        first_seen_at=now,
        last_seen_at=now,
    )


@pytest.mark.parametrize("reason", ["", "   \n\t"])
def test_record_access_requires_a_reason(db: Any, reason: str) -> None:
    # given
    identity = _identity_with_sentinel()
    steward = UserFactory(username="owner")
    before = _rows()

    # when
    with pytest.raises(InvalidInput) as raised:
        record_access(identity, actor=steward, reason=reason, fields=["value"])

    # then
    assert raised.value.code == "reason_required"
    assert raised.value.message == "A reason is required to reveal personal data."
    assert _rows() == before


def test_record_access_writes_a_chained_access_entry_without_the_plaintext(db: Any) -> None:
    # given
    identity = _identity_with_sentinel()
    steward = UserFactory(username="owner")
    previous = _entries()[-1]

    # when
    entry = record_access(
        identity,
        actor=steward,
        reason="  Ticket 4711: verify identity  ",
        fields=["value"],
        via="api",
    )

    # then
    entry = AuditLogEntry.objects.get(pk=entry.pk)
    assert entry.action == AuditLogEntry.Action.ACCESS
    assert entry.object_pk == str(identity.pk)
    assert entry.actor_id == steward.pk
    assert entry.changes == {"value": [REDACTED, "revealed"]}
    assert entry.additional_data == {
        "reason": "Ticket 4711: verify identity",
        "fields": ["value"],
        "via": "api",
    }
    assert entry.prev_hash == previous.entry_hash
    stored = json.dumps(list(AuditLogEntry.objects.values()), default=str)
    assert SENTINEL_EMAIL not in stored
    assert "sentinel" not in stored
    assert audit_chain_verify() == {
        "checked": AuditLogEntry.objects.count(),
        "ok": True,
        "broken_entry": None,
    }


def test_audit_chain_verify_task_returns_ok(trail: list[Any]) -> None:
    # when
    result = audit_chain_verify.delay().get(timeout=10)

    # then
    assert result == {"checked": len(trail), "ok": True, "broken_entry": None}


def test_audit_chain_verify_task_names_a_broken_entry(trail: list[Any]) -> None:
    # given
    tampered = trail[-1]
    with _append_only_triggers_disabled(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE governance_auditlogentry SET object_repr = %s WHERE id = %s",
            ["Globex", tampered.pk],
        )

    # when
    result = audit_chain_verify.delay().get(timeout=10)

    # then
    assert result == {"checked": len(trail), "ok": False, "broken_entry": tampered.pk}
