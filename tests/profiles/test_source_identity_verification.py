"""A source's identity verification: the services that turn it on, rotate its secret and turn
it off; the secret sealed under a data key of its own (never in plaintext in any table, audit
entry or session); the admin actions that show it once and are audited with the steward's
name; and `create_source --identity-verification`."""

from __future__ import annotations

import json
import re
from io import StringIO
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from profiles import selectors, services
from profiles.enums import DataKeyPurpose
from profiles.exceptions import (
    IdentityVerificationFailed,
    IdentityVerificationOff,
    IdentityVerificationOn,
    IdentityVerificationRequired,
)
from profiles.models import DataKey, Source, SourceSecret
from tests.profiles.factories import UserFactory
from tests.test_no_plaintext_pii import scan_all_tables

LogEntry = get_logentry_model()


@pytest.fixture
def source(workspace: Any) -> Source:
    return services.source_create(workspace=workspace, name="Web shop")


@pytest.fixture
def superuser(db: Any) -> Any:
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def entries_about(*objects: Any) -> list[Any]:
    """The audit entries about `objects`, oldest first."""
    pks = {(type(o)._meta.model_name, str(o.pk)) for o in objects}
    return [
        e
        for e in LogEntry.objects.select_related("content_type").order_by("pk")
        if (e.content_type.model, e.object_pk) in pks
    ]


def shown(response: Any) -> list[str]:
    """The secrets an admin page showed."""
    return re.findall(r'<code class="identity-secret">([^<]+)</code>', response.content.decode())


def secret_forms(secret: str) -> dict[str, str]:
    """The secret as issued, and its random part alone (as a scan would miss a re-prefixed
    copy otherwise)."""
    return {"secret": secret, "random_part": secret.removeprefix(services.SOURCE_SECRET_PREFIX)}


# --- services ---------------------------------------------------------------------------------


def test_enable_issues_a_secret_sealed_under_a_data_key_of_its_own(source: Source) -> None:
    # when
    issued = services.source_identity_verification_enable(source=source)
    # then
    source.refresh_from_db()
    stored = SourceSecret.objects.get(source=source)
    key = DataKey.objects.get(pk=stored.data_key_id)
    assert source.identity_verification is True
    assert issued.secret.startswith("cdp_iv_") and len(issued.secret) >= 48
    assert stored.secret == issued.secret  # readable back through the keys, to verify
    assert (key.purpose, key.profile_id, key.workspace_id) == (
        DataKeyPurpose.SOURCE,
        None,
        source.workspace_id,
    )
    assert selectors.source_identity_secret_issued_at(source=source) == stored.created_at


def test_rotate_replaces_the_secret_and_shreds_the_old_key(source: Source) -> None:
    # given
    first = services.source_identity_verification_enable(source=source)
    old_key = SourceSecret.objects.get(source=source).data_key_id
    # when
    second = services.source_identity_secret_rotate(source=source)
    # then
    stored = SourceSecret.objects.get(source=source)
    assert second.secret != first.secret
    assert stored.secret == second.secret
    assert stored.data_key_id != old_key and stored.rotated_at is not None
    shredded = DataKey.objects.get(pk=old_key)
    assert (shredded.wrapped, shredded.destroyed_at is not None) == (None, True)
    with pytest.raises(IdentityVerificationFailed):
        selectors.source_user_hash_verify(
            source=source,
            user_id="ada",
            user_hash=selectors.user_hash_for(secret=first.secret, user_id="ada"),
        )
    selectors.source_user_hash_verify(
        source=source,
        user_id="ada",
        user_hash=selectors.user_hash_for(secret=second.secret, user_id="ada"),
    )


def test_rotate_is_refused_while_verification_is_off(source: Source) -> None:
    # when / then
    with pytest.raises(IdentityVerificationOff):
        services.source_identity_secret_rotate(source=source)
    assert not SourceSecret.objects.exists()
    assert not DataKey.objects.filter(purpose=DataKeyPurpose.SOURCE).exists()


def test_disable_destroys_the_secret_and_enable_issues_a_new_one(source: Source) -> None:
    # given
    first = services.source_identity_verification_enable(source=source)
    key_id = SourceSecret.objects.get(source=source).data_key_id
    # when
    services.source_identity_verification_disable(source=source)
    off = Source.objects.get(pk=source.pk).identity_verification
    again = services.source_identity_verification_enable(source=source)
    # then
    assert off is False
    assert DataKey.objects.get(pk=key_id).destroyed_at is not None
    assert again.secret != first.secret
    assert SourceSecret.objects.get(source=source).secret == again.secret


def test_the_check_needs_the_hash_only_of_a_user_id_where_verification_is_on(
    source: Source,
) -> None:
    # given: off
    selectors.source_user_hash_verify(source=source, user_id="ada", user_hash=None)
    issued = services.source_identity_verification_enable(source=source)
    # when / then: on
    selectors.source_user_hash_verify(source=source, user_id=None, user_hash=None)
    selectors.source_user_hash_verify(source=source, user_id="", user_hash=None)
    with pytest.raises(IdentityVerificationRequired):
        selectors.source_user_hash_verify(source=source, user_id="ada", user_hash=None)
    with pytest.raises(IdentityVerificationFailed):
        selectors.source_user_hash_verify(source=source, user_id="ada", user_hash="ab" * 32)
    selectors.source_user_hash_verify(
        source=source,
        user_id="ada",
        user_hash=selectors.user_hash_for(secret=issued.secret, user_id="ada"),
    )


def test_a_source_switched_on_without_a_secret_refuses_every_hash(source: Source) -> None:
    # given: the flag set by hand, no secret issued
    Source.objects.filter(pk=source.pk).update(identity_verification=True)
    source.refresh_from_db()
    # when / then: fails closed
    with pytest.raises(IdentityVerificationFailed):
        selectors.source_user_hash_verify(source=source, user_id="ada", user_hash="00" * 32)


# --- the secret never in plaintext --------------------------------------------------------------


def test_no_table_holds_the_secret_in_plaintext(superuser: Any, workspace: Any) -> None:
    # given: secrets issued every way there is: the admin's actions (the steward's session and
    # the audit trail written on the way), a rotation, and the command
    client = client_for(superuser)
    created = StringIO()
    call_command(
        "create_source",
        "--workspace",
        "acme",
        "--name",
        "App backend",
        "--identity-verification",
        stdout=created,
        stderr=StringIO(),
    )
    from_command = created.getvalue().split()[1]
    web = services.source_create(workspace=workspace, name="Web shop")
    url = reverse("admin:profiles_source_changelist")
    on = client.post(url, {"action": "identity_verification_on", "_selected_action": [web.pk]})
    from_service = services.source_identity_secret_rotate(source=web).secret
    rotated = client.post(url, {"action": "identity_secret_rotate", "_selected_action": [web.pk]})
    # when
    secrets_issued = [from_command, *shown(on), from_service, *shown(rotated)]
    # then
    assert on.status_code == rotated.status_code == 200
    assert len(set(secrets_issued)) == 4
    # the current ones, read back through the keys
    assert {s.secret for s in SourceSecret.objects.all()} == {from_command, shown(rotated)[0]}
    for number, secret in enumerate(secrets_issued):
        sentinels = {f"{name}-{number}": value for name, value in secret_forms(secret).items()}
        assert scan_all_tables(sentinels) == [], number
    stored = json.dumps([e.changes for e in LogEntry.objects.all()])
    assert all(secret not in stored for secret in secrets_issued)


# --- admin --------------------------------------------------------------------------------------


def test_turning_it_on_in_the_admin_shows_the_secret_once_and_is_audited(
    superuser: Any, source: Source
) -> None:
    # given
    client = client_for(superuser)
    url = reverse("admin:profiles_source_changelist")
    # when
    response = client.post(
        url, {"action": "identity_verification_on", "_selected_action": [source.pk]}
    )
    # then: the page the action answers shows the secret, uncached, and nothing else does
    source.refresh_from_db()
    secret = SourceSecret.objects.get(source=source).secret
    assert source.identity_verification is True
    assert response.status_code == 200
    assert response.content.count(secret.encode()) == 1
    assert "no-store" in response["Cache-Control"]
    change = client.get(reverse("admin:profiles_source_change", args=[source.pk]))
    listing = client.get(url)
    assert secret.encode() not in change.content and secret.encode() not in listing.content
    assert b"issued " in change.content
    # and: audited with the steward's name, without the secret
    stored = SourceSecret.objects.get(source=source)
    entries = entries_about(source, stored)[-2:]  # after the source's creation
    assert [(e.content_type.model, e.action, e.actor_id) for e in entries] == [
        ("sourcesecret", LogEntry.Action.CREATE, superuser.pk),
        ("source", LogEntry.Action.UPDATE, superuser.pk),
    ]
    assert entries[1].changes_dict == {"identity_verification": ["False", "True"]}
    assert "secret" not in entries[0].changes_dict


def test_turning_it_on_again_keeps_the_secret(superuser: Any, source: Source) -> None:
    # given
    issued = services.source_identity_verification_enable(source=source)
    # when
    response = client_for(superuser).post(
        reverse("admin:profiles_source_changelist"),
        {"action": "identity_verification_on", "_selected_action": [source.pk]},
        follow=True,
    )
    # then: a rotation is its own action; the site's hashes keep working
    assert SourceSecret.objects.get(source=source).secret == issued.secret
    assert b"was on already" in response.content


def test_rotating_in_the_admin_shows_the_new_secret_once_and_is_audited(
    superuser: Any, source: Source
) -> None:
    # given
    old = services.source_identity_verification_enable(source=source)
    stored = SourceSecret.objects.get(source=source)
    old_key = stored.data_key_id
    # when
    response = client_for(superuser).post(
        reverse("admin:profiles_source_changelist"),
        {"action": "identity_secret_rotate", "_selected_action": [source.pk]},
    )
    # then
    new = SourceSecret.objects.get(source=source).secret
    assert new != old.secret
    assert response.content.count(new.encode()) == 1
    assert old.secret.encode() not in response.content
    rotation = (
        LogEntry.objects.filter(object_pk=str(stored.pk), action=LogEntry.Action.UPDATE)
        .order_by("pk")
        .last()
    )
    assert rotation is not None
    assert rotation.actor_id == superuser.pk
    assert set(rotation.changes_dict) == {"data_key", "rotated_at"}
    assert rotation.changes_dict["data_key"][0] == str(old_key)
    assert DataKey.objects.get(pk=old_key).destroyed_at is not None


def test_turning_it_off_in_the_admin_destroys_the_secret_and_is_audited(
    superuser: Any, source: Source
) -> None:
    # given
    services.source_identity_verification_enable(source=source)
    stored = SourceSecret.objects.get(source=source)
    # when
    client_for(superuser).post(
        reverse("admin:profiles_source_changelist"),
        {"action": "identity_verification_off", "_selected_action": [source.pk]},
    )
    # then
    source.refresh_from_db()
    assert source.identity_verification is False
    assert not SourceSecret.objects.exists()
    assert DataKey.objects.get(pk=stored.data_key_id).destroyed_at is not None
    deleted = LogEntry.objects.get(object_pk=str(stored.pk), action=LogEntry.Action.DELETE)
    assert deleted.actor_id == superuser.pk


def test_a_steward_cannot_turn_it_on_or_see_a_secret(owner: Any, source: Source) -> None:
    # when
    response = client_for(owner).post(
        reverse("admin:profiles_source_changelist"),
        {"action": "identity_verification_on", "_selected_action": [source.pk]},
    )
    # then
    assert response.status_code in (200, 302)
    assert b"cdp_iv_" not in response.content
    source.refresh_from_db()
    assert source.identity_verification is False
    assert not SourceSecret.objects.exists()


# --- the command --------------------------------------------------------------------------------


def test_create_source_command_turns_it_on_and_prints_the_secret_once(workspace: Any) -> None:
    # given
    out, err = StringIO(), StringIO()
    # when
    call_command(
        "create_source",
        "--workspace",
        "acme",
        "--name",
        "Shop website",
        "--identity-verification",
        stdout=out,
        stderr=err,
    )
    # then: the write key, then the secret, on stdout; stderr says which is which
    source = Source.objects.get(workspace=workspace, name="Shop website")
    write_key, secret = out.getvalue().split()
    assert write_key == source.write_key
    assert source.identity_verification is True
    assert SourceSecret.objects.get(source=source).secret == secret
    assert secret not in err.getvalue()
    assert "not shown again" in err.getvalue()


def test_create_source_command_leaves_it_off_by_default(workspace: Any) -> None:
    # given
    out = StringIO()
    # when
    call_command(
        "create_source", "--workspace", "acme", "--name", "Shop", stdout=out, stderr=StringIO()
    )
    # then
    source = Source.objects.get(workspace=workspace, name="Shop")
    assert out.getvalue().split() == [source.write_key]
    assert source.identity_verification is False
    assert not SourceSecret.objects.exists()


def test_turning_it_on_again_is_refused_and_keeps_the_secret_shown(source: Source) -> None:
    # given: on, its secret shown to the steward (and deployed by the site)
    shown = services.source_identity_verification_enable(source=source)
    # when: a second click, or a second steward, turns it on again
    with pytest.raises(IdentityVerificationOn):
        services.source_identity_verification_enable(source=source)
    # then: the secret the site has still works
    assert SourceSecret.objects.get(source=source).secret == shown.secret


def test_a_rotation_in_the_admin_of_a_source_turned_off_meanwhile_is_no_error(
    superuser: Any, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: on when the list was read, turned off by another steward before the lock
    services.source_identity_verification_enable(source=source)

    def turned_off(*, source: Source) -> Any:
        raise IdentityVerificationOff()

    monkeypatch.setattr(services, "source_identity_secret_rotate", turned_off)
    # when
    response = client_for(superuser).post(
        reverse("admin:profiles_source_changelist"),
        {"action": "identity_secret_rotate", "_selected_action": [source.pk]},
        follow=True,
    )
    # then: the steward is told there was nothing to rotate, not shown a server error
    assert response.status_code == 200
    assert b"nothing to rotate" in response.content
