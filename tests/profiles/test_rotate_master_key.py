"""Master-key rotation: `rotate_master_key` (services.data_keys_rewrap) re-wraps every live data
key under the primary KEK and never touches the data ciphertexts."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass
from io import StringIO
from typing import cast

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from cdp.core.crypto import blind_index, envelope
from cdp.core.crypto.envelope import clear_data_key_cache
from cdp.core.crypto.exceptions import DataKeyShredded, DecryptionError
from cdp.core.crypto.keyring import LocalKeyring, WrappedKey
from profiles import services
from profiles.models import DataKey, Identity, Profile, Workspace

pytestmark = pytest.mark.django_db

OLD = "k1:" + base64.b64encode(b"\x11" * 32).decode()
NEW = "k2:" + base64.b64encode(b"\x22" * 32).decode()
SEEN = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)
ADDRESSES = ["ada@example.com", "grace@example.com", "katherine@example.com"]


@dataclass
class World:
    identities: dict[uuid.UUID, str]  # identity id -> address
    live_keys: list[uuid.UUID]
    destroyed_key: uuid.UUID
    destroyed_identity: uuid.UUID


def make_identity(profile: Profile, key: DataKey, address: str) -> Identity:
    return Identity.objects.create(
        workspace_id=profile.workspace_id,
        profile=profile,
        origin_profile_id=profile.id,
        identifier_type="email",
        blind_index=blind_index(profile.workspace_id, "email", address),
        value=address,
        data_key=key,
        first_seen_at=SEEN,
        last_seen_at=SEEN,
    )


def raw_value(identity_id: uuid.UUID) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT value FROM profiles_identity WHERE id = %s",
            [Identity._meta.pk.get_db_prep_value(identity_id, connection)],
        )
        (value,) = cursor.fetchone()
    return bytes(value)


def wrapped_keys() -> dict[uuid.UUID, tuple[str, bytes | None]]:
    return {
        key_id: (kek_id, None if wrapped is None else bytes(wrapped))
        for key_id, kek_id, wrapped in DataKey.objects.values_list("id", "kek_id", "wrapped")
    }


def read_all(world: World) -> dict[uuid.UUID, str]:
    clear_data_key_cache()  # unwrap every data key again through the keyring in force
    return {pk: cast(str, Identity.objects.get(pk=pk).value) for pk in world.identities}


def rotate(batch_size: int = 2) -> str:
    out = StringIO()
    call_command("rotate_master_key", batch_size=batch_size, stdout=out)
    return out.getvalue()


@pytest.fixture
def world(workspace: Workspace) -> World:
    """Three profiles with an identity each, and a fourth whose data key was destroyed, all
    made while the old master key was the only one."""
    with override_settings(CDP_MASTER_KEYS=OLD):
        identities: dict[uuid.UUID, str] = {}
        live_keys = []
        for address in ADDRESSES:
            profile, key = services.profile_create(workspace=workspace)
            identities[make_identity(profile, key, address).pk] = address
            live_keys.append(key.id)
        doomed, doomed_key = services.profile_create(workspace=workspace)
        doomed_identity = make_identity(doomed, doomed_key, "erased@example.com")
        services.data_keys_destroy(key_ids=[doomed_key.id])
    return World(
        identities=identities,
        live_keys=live_keys,
        destroyed_key=doomed_key.id,
        destroyed_identity=doomed_identity.pk,
    )


def test_rotation_rewraps_every_live_key_and_leaves_data_untouched(world: World) -> None:
    # given
    ciphertexts = {pk: raw_value(pk) for pk in world.identities}
    before = wrapped_keys()
    assert {before[key_id][0] for key_id in world.live_keys} == {"k1"}

    with override_settings(CDP_MASTER_KEYS=f"{NEW},{OLD}"):
        # when
        output = rotate(batch_size=2)

        # then
        assert output == "Re-wrapped 3 data keys under k2; 0 were already under it.\n"
        after = wrapped_keys()
        for key_id in world.live_keys:
            assert after[key_id][0] == "k2"
            assert after[key_id][1] != before[key_id][1]
        assert after[world.destroyed_key] == ("k1", None)
        assert {pk: raw_value(pk) for pk in world.identities} == ciphertexts
        assert read_all(world) == world.identities


def test_rotation_records_when_each_key_was_rewrapped(world: World) -> None:
    # given
    with override_settings(CDP_MASTER_KEYS=f"{NEW},{OLD}"):
        # when
        rotate()

    # then
    rewrapped = dict(DataKey.objects.values_list("id", "rewrapped_at"))
    assert all(rewrapped[key_id] is not None for key_id in world.live_keys)
    assert rewrapped[world.destroyed_key] is None


def test_a_rewrapped_key_is_the_same_data_key_under_the_new_master_key(world: World) -> None:
    # given
    before = wrapped_keys()

    # when
    with override_settings(CDP_MASTER_KEYS=f"{NEW},{OLD}"):
        rotate()

    # then
    after = wrapped_keys()
    old_ring, new_ring = LocalKeyring(OLD), LocalKeyring(NEW)
    for key_id in world.live_keys:
        old_kek, old_blob = before[key_id]
        new_kek, new_blob = after[key_id]
        assert old_blob is not None
        assert new_blob is not None
        assert new_ring.unwrap(
            WrappedKey(kek_id=new_kek, blob=new_blob), context=key_id.bytes
        ) == old_ring.unwrap(WrappedKey(kek_id=old_kek, blob=old_blob), context=key_id.bytes)


def test_running_the_rotation_again_rewraps_nothing(world: World) -> None:
    # given
    with override_settings(CDP_MASTER_KEYS=f"{NEW},{OLD}"):
        rotate()
        first = wrapped_keys()

        # when
        output = rotate()

        # then
        assert output == "Re-wrapped 0 data keys under k2; 3 were already under it.\n"
        assert wrapped_keys() == first


def test_after_rotation_the_old_master_key_can_be_removed(world: World) -> None:
    # given
    with override_settings(CDP_MASTER_KEYS=f"{NEW},{OLD}"):
        rotate()

    # when
    with override_settings(CDP_MASTER_KEYS=NEW):
        values = read_all(world)

        # then
        assert values == world.identities
        with pytest.raises(DataKeyShredded):
            _ = Identity.objects.get(pk=world.destroyed_identity).value


def test_without_rotation_removing_the_old_master_key_makes_data_unreadable(
    world: World,
) -> None:
    # given: the rotation was skipped

    # when
    with override_settings(CDP_MASTER_KEYS=NEW), pytest.raises(DecryptionError) as excinfo:
        read_all(world)

    # then
    assert str(excinfo.value) == "master key 'k1' is not in the keyring"


def test_rotation_without_the_old_master_key_fails_and_changes_nothing(world: World) -> None:
    # given
    before = wrapped_keys()

    # when
    with override_settings(CDP_MASTER_KEYS=NEW), pytest.raises(DecryptionError) as excinfo:
        rotate()

    # then
    assert str(excinfo.value) == "master key 'k1' is not in the keyring"
    assert wrapped_keys() == before


def test_an_interrupted_rotation_resumes_where_it_stopped(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the third re-wrap (first key of the second batch) fails
    real_rewrap = envelope.rewrap_data_key
    calls: list[uuid.UUID] = []

    def flaky_rewrap(key_id: uuid.UUID, wrapped: WrappedKey) -> WrappedKey:
        calls.append(key_id)
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return real_rewrap(key_id, wrapped)

    with override_settings(CDP_MASTER_KEYS=f"{NEW},{OLD}"):
        monkeypatch.setattr(envelope, "rewrap_data_key", flaky_rewrap)
        with pytest.raises(RuntimeError, match=r"^worker lost$"):
            rotate(batch_size=2)
        monkeypatch.setattr(envelope, "rewrap_data_key", real_rewrap)
        interrupted = wrapped_keys()

        # when
        output = rotate(batch_size=2)

        # then
        first_batch, rolled_back = sorted(world.live_keys)[:2], sorted(world.live_keys)[2]
        assert [interrupted[key_id][0] for key_id in first_batch] == ["k2", "k2"]
        assert interrupted[rolled_back][0] == "k1"
        assert output == "Re-wrapped 1 data keys under k2; 2 were already under it.\n"
        assert {wrapped_keys()[key_id][0] for key_id in world.live_keys} == {"k2"}
    with override_settings(CDP_MASTER_KEYS=NEW):
        assert read_all(world) == world.identities
