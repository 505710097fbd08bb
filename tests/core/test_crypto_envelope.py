"""Envelope encryption (cdp.core.crypto.envelope) and the local keyring, without a database: an
in-memory data-key store stands in for the DataKey table."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings as django_settings
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.core.crypto import envelope
from cdp.core.crypto.envelope import StoredDataKey
from cdp.core.crypto.exceptions import (
    CryptoError,
    DataKeyNotFound,
    DataKeyShredded,
    DecryptionError,
    KeyringMisconfigured,
)
from cdp.core.crypto.keyring import LocalKeyring, WrappedKey, get_keyring

HEADER = 1 + 16 + 12
TAG = 16
KEY_A = base64.b64encode(b"\xa1" * 32).decode()
KEY_B = base64.b64encode(b"\xb2" * 32).decode()
LOCATION = envelope.location_aad(
    "profiles_identity", "value", "0190f3a2-7c1e-7d4b-8a2f-2b1c3d4e5f60"
)

examples = settings(max_examples=60, deadline=None)


class MemoryStore:
    """A data-key store in a dict; counts loads so tests can see the cache at work."""

    def __init__(self) -> None:
        self.keys: dict[uuid.UUID, StoredDataKey] = {}
        self.loads = 0

    def load(self, key_id: uuid.UUID) -> StoredDataKey | None:
        self.loads += 1
        return self.keys.get(key_id)

    def add(self) -> uuid.UUID:
        new = envelope.generate_data_key()
        self.keys[new.id] = StoredDataKey(id=new.id, wrapped=new.wrapped)
        return new.id

    def destroy(self, key_id: uuid.UUID) -> None:
        self.keys[key_id] = StoredDataKey(id=key_id, wrapped=None)
        envelope.forget_data_key(key_id)


@pytest.fixture(scope="module")
def store() -> Iterator[MemoryStore]:
    previous = envelope._store
    assert previous is not None
    memory = MemoryStore()
    envelope.register_data_key_store(memory)
    yield memory
    envelope.register_data_key_store(previous)
    envelope.clear_data_key_cache()


@pytest.fixture(scope="module")
def key_id(store: MemoryStore) -> uuid.UUID:
    return store.add()


@pytest.fixture(scope="module")
def other_key_id(store: MemoryStore) -> uuid.UUID:
    return store.add()


def _flip(data: bytes, index: int, mask: int) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


# -- round trip and layout ---------------------------------------------------------------------


@examples
@given(plaintext=st.binary(max_size=4096), aad=st.binary(max_size=512))
def test_open_returns_what_seal_sealed(key_id: uuid.UUID, plaintext: bytes, aad: bytes) -> None:
    # given
    sealed = envelope.seal(key_id, plaintext, aad)

    # when
    opened = envelope.open_sealed(sealed, aad)

    # then
    assert opened == plaintext


@examples
@given(plaintext=st.binary(max_size=1024))
def test_ciphertext_carries_version_byte_and_key_id(key_id: uuid.UUID, plaintext: bytes) -> None:
    # given / when
    sealed = envelope.seal(key_id, plaintext, LOCATION)

    # then
    assert sealed[0] == 1
    assert sealed[1:17] == key_id.bytes
    assert envelope.key_id_of(sealed) == key_id
    assert len(sealed) == HEADER + len(plaintext) + TAG


def test_the_ciphertext_follows_the_documented_layout_and_aad(store: MemoryStore) -> None:
    # given: a data key whose raw bytes the test knows
    raw_key = bytes(range(32))
    key = uuid.UUID("0190f3a2-7c1e-7d4b-8a2f-00000000cafe")
    store.keys[key] = StoredDataKey(id=key, wrapped=get_keyring().wrap(raw_key, context=key.bytes))
    envelope.forget_data_key(key)
    nonce = bytes(range(100, 112))
    header = b"\x01" + key.bytes + nonce
    by_hand = header + AESGCM(raw_key).encrypt(
        nonce, b"ada@example.com", b"cdp/v1|" + b"\x01" + key.bytes + LOCATION
    )

    # when
    opened = envelope.open_sealed(by_hand, LOCATION)
    sealed = envelope.seal(key, b"grace@example.com", LOCATION)

    # then: 0x01 | key id | nonce | AES-GCM(plaintext, AAD = "cdp/v1|" + 0x01 | key id + location)
    assert opened == b"ada@example.com"
    assert (
        AESGCM(raw_key).decrypt(sealed[17:29], sealed[29:], b"cdp/v1|" + sealed[:17] + LOCATION)
        == b"grace@example.com"
    )


def test_the_same_value_sealed_twice_gives_different_ciphertexts(key_id: uuid.UUID) -> None:
    # given
    plaintext = b"ada@example.com"

    # when
    first = envelope.seal(key_id, plaintext, LOCATION)
    second = envelope.seal(key_id, plaintext, LOCATION)

    # then
    assert first[17:29] != second[17:29]  # fresh nonce
    assert first[HEADER:] != second[HEADER:]
    assert envelope.open_sealed(first, LOCATION) == plaintext
    assert envelope.open_sealed(second, LOCATION) == plaintext


def test_a_ciphertext_opens_from_any_bytes_like_object(key_id: uuid.UUID) -> None:
    # given: drivers and callers may hand over a memoryview or a bytearray
    sealed = envelope.seal(key_id, b"ada@example.com", LOCATION)

    # when
    opened = [
        envelope.open_sealed(memoryview(sealed), LOCATION),
        envelope.open_sealed(bytearray(sealed), LOCATION),
    ]

    # then
    assert opened == [b"ada@example.com", b"ada@example.com"]


def test_the_plaintext_does_not_appear_in_the_ciphertext(key_id: uuid.UUID) -> None:
    # given
    plaintext = b"sentinel-grace.hopper@example.com" * 4

    # when
    sealed = envelope.seal(key_id, plaintext, LOCATION)

    # then
    assert b"sentinel" not in sealed
    assert b"example.com" not in sealed


# -- tampering -----------------------------------------------------------------------------------


@examples
@given(
    plaintext=st.binary(max_size=512),
    aad=st.binary(max_size=64),
    data=st.data(),
    mask=st.integers(min_value=1, max_value=255),
)
def test_flipping_a_byte_of_nonce_ciphertext_or_tag_raises(
    key_id: uuid.UUID, plaintext: bytes, aad: bytes, data: st.DataObject, mask: int
) -> None:
    # given
    sealed = envelope.seal(key_id, plaintext, aad)
    index = data.draw(st.integers(min_value=17, max_value=len(sealed) - 1), label="index")
    tampered = _flip(sealed, index, mask)

    # when
    with pytest.raises(DecryptionError) as excinfo:
        envelope.open_sealed(tampered, aad)

    # then
    assert type(excinfo.value) is DecryptionError
    assert str(excinfo.value) == f"value under data key {key_id} failed authentication"


@examples
@given(plaintext=st.binary(max_size=256), mask=st.integers(min_value=1, max_value=255))
def test_flipping_the_version_byte_raises(key_id: uuid.UUID, plaintext: bytes, mask: int) -> None:
    # given
    tampered = _flip(envelope.seal(key_id, plaintext, LOCATION), 0, mask)

    # when
    with pytest.raises(DecryptionError) as excinfo:
        envelope.open_sealed(tampered, LOCATION)

    # then
    assert type(excinfo.value) is DecryptionError
    assert str(excinfo.value) == "not a ciphertext of a known version"


@examples
@given(
    plaintext=st.binary(max_size=256),
    index=st.integers(min_value=1, max_value=16),
    mask=st.integers(min_value=1, max_value=255),
)
def test_flipping_a_byte_of_the_key_id_raises_data_key_not_found(
    key_id: uuid.UUID, plaintext: bytes, index: int, mask: int
) -> None:
    # given
    tampered = _flip(envelope.seal(key_id, plaintext, LOCATION), index, mask)

    # when
    with pytest.raises(DecryptionError) as excinfo:
        envelope.open_sealed(tampered, LOCATION)

    # then
    assert type(excinfo.value) is DataKeyNotFound
    assert str(excinfo.value) == f"data key {uuid.UUID(bytes=tampered[1:17])} does not exist"


@examples
@given(plaintext=st.binary(max_size=256))
def test_relabelling_a_ciphertext_with_another_live_key_id_raises(
    key_id: uuid.UUID, other_key_id: uuid.UUID, plaintext: bytes
) -> None:
    # given: the other key exists and opens its own values
    sealed = envelope.seal(key_id, plaintext, LOCATION)
    relabelled = sealed[:1] + other_key_id.bytes + sealed[17:]
    assert envelope.open_sealed(envelope.seal(other_key_id, b"x", LOCATION), LOCATION) == b"x"

    # when
    with pytest.raises(DecryptionError) as excinfo:
        envelope.open_sealed(relabelled, LOCATION)

    # then
    assert type(excinfo.value) is DecryptionError


@examples
@given(
    plaintext=st.binary(max_size=256),
    aad=st.binary(min_size=1, max_size=128),
    data=st.data(),
    mask=st.integers(min_value=1, max_value=255),
)
def test_flipping_a_byte_of_the_aad_raises(
    key_id: uuid.UUID, plaintext: bytes, aad: bytes, data: st.DataObject, mask: int
) -> None:
    # given
    sealed = envelope.seal(key_id, plaintext, aad)
    index = data.draw(st.integers(min_value=0, max_value=len(aad) - 1), label="index")

    # when
    with pytest.raises(DecryptionError) as excinfo:
        envelope.open_sealed(sealed, _flip(aad, index, mask))

    # then
    assert type(excinfo.value) is DecryptionError


@examples
@given(plaintext=st.binary(max_size=256), aad=st.binary(max_size=64), extra=st.binary(min_size=1))
def test_a_longer_or_shorter_aad_raises(
    key_id: uuid.UUID, plaintext: bytes, aad: bytes, extra: bytes
) -> None:
    # given
    sealed = envelope.seal(key_id, plaintext, aad + extra)

    # when / then
    with pytest.raises(DecryptionError):
        envelope.open_sealed(sealed, aad)
    with pytest.raises(DecryptionError):
        envelope.open_sealed(sealed, aad + extra + extra)


def test_a_value_sealed_for_one_row_does_not_open_for_another(key_id: uuid.UUID) -> None:
    # given
    row_a = envelope.location_aad("profiles_identity", "value", "row-a")
    row_b = envelope.location_aad("profiles_identity", "value", "row-b")
    other_column = envelope.location_aad("profiles_trait", "value_pii", "row-a")
    sealed = envelope.seal(key_id, b"ada@example.com", row_a)

    # when / then
    assert envelope.open_sealed(sealed, row_a) == b"ada@example.com"
    with pytest.raises(DecryptionError):
        envelope.open_sealed(sealed, row_b)
    with pytest.raises(DecryptionError):
        envelope.open_sealed(sealed, other_column)


@examples
@given(plaintext=st.binary(max_size=256), data=st.data())
def test_a_truncated_ciphertext_raises(
    key_id: uuid.UUID, plaintext: bytes, data: st.DataObject
) -> None:
    # given
    sealed = envelope.seal(key_id, plaintext, LOCATION)
    length = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1), label="length")

    # when / then
    with pytest.raises(DecryptionError):
        envelope.open_sealed(sealed[:length], LOCATION)


# -- destroyed and unknown keys --------------------------------------------------------------------


def test_a_destroyed_data_key_raises_shredded_also_after_the_cache_is_cleared(
    store: MemoryStore,
) -> None:
    # given: a value that opens, its key cached by both seal and open
    doomed = store.add()
    sealed = envelope.seal(doomed, b"ada@example.com", LOCATION)
    assert envelope.open_sealed(sealed, LOCATION) == b"ada@example.com"

    # when
    store.destroy(doomed)

    # then: evicted for reading and for sealing
    with pytest.raises(DataKeyShredded) as excinfo:
        envelope.open_sealed(sealed, LOCATION)
    assert str(excinfo.value) == f"data key {doomed} was destroyed"
    with pytest.raises(DataKeyShredded):
        envelope.seal(doomed, b"new value", LOCATION)
    envelope.clear_data_key_cache()
    with pytest.raises(DataKeyShredded):
        envelope.open_sealed(sealed, LOCATION)
    with pytest.raises(DataKeyShredded):
        envelope.seal(doomed, b"new value", LOCATION)


def test_forgetting_a_key_evicts_it_for_seal_and_for_open(store: MemoryStore) -> None:
    # given: a cached key, then destroyed in the store behind the cache's back
    key = store.add()
    sealed = envelope.seal(key, b"ada@example.com", LOCATION)
    store.keys[key] = StoredDataKey(id=key, wrapped=None)
    assert envelope.open_sealed(sealed, LOCATION) == b"ada@example.com"  # still cached

    # when
    envelope.forget_data_key(key)

    # then
    with pytest.raises(DataKeyShredded):
        envelope.seal(key, b"grace@example.com", LOCATION)
    store.keys[key] = StoredDataKey(id=key, wrapped=None)
    with pytest.raises(DataKeyShredded):
        envelope.open_sealed(sealed, LOCATION)


def test_shredded_and_not_found_are_distinct_decryption_errors() -> None:
    # given / when / then
    assert issubclass(DataKeyShredded, DecryptionError)
    assert issubclass(DataKeyNotFound, DecryptionError)
    assert not issubclass(DataKeyShredded, DataKeyNotFound)
    assert not issubclass(DataKeyNotFound, DataKeyShredded)
    assert issubclass(DecryptionError, CryptoError)


def test_destroying_one_key_leaves_values_under_other_keys_readable(
    store: MemoryStore, key_id: uuid.UUID
) -> None:
    # given
    doomed = store.add()
    kept = envelope.seal(key_id, b"grace@example.com", LOCATION)

    # when
    store.destroy(doomed)
    envelope.clear_data_key_cache()

    # then
    assert envelope.open_sealed(kept, LOCATION) == b"grace@example.com"


def test_an_unknown_key_id_raises_data_key_not_found(store: MemoryStore) -> None:
    # given
    unknown = uuid.UUID("00000000-0000-4000-8000-00000000dead")
    forged = b"\x01" + unknown.bytes + b"\x00" * 12 + b"\x00" * 32

    # when / then
    with pytest.raises(DataKeyNotFound) as excinfo:
        envelope.open_sealed(forged, LOCATION)
    assert str(excinfo.value) == "data key 00000000-0000-4000-8000-00000000dead does not exist"
    with pytest.raises(DataKeyNotFound):
        envelope.seal(unknown, b"ada@example.com", LOCATION)


def test_unwrapped_keys_are_cached_so_a_batch_loads_each_key_once(store: MemoryStore) -> None:
    # given
    key = store.add()
    values = [envelope.seal(key, f"user{n}@example.com".encode(), LOCATION) for n in range(5)]
    envelope.clear_data_key_cache()
    before = store.loads

    # when
    opened = [envelope.open_sealed(value, LOCATION) for value in values]

    # then
    assert opened[4] == b"user4@example.com"
    assert store.loads - before == 1


def test_an_expired_cache_entry_is_loaded_again(store: MemoryStore) -> None:
    # given
    key = store.add()
    values = [envelope.seal(key, b"ada@example.com", LOCATION) for _ in range(3)]

    # when
    with override_settings(CDP_DATA_KEY_CACHE_SECONDS=-1):
        envelope.clear_data_key_cache()
        before = store.loads
        opened = [envelope.open_sealed(value, LOCATION) for value in values]
        resealed = [envelope.seal(key, b"grace@example.com", LOCATION) for _ in range(2)]
        loads = store.loads - before

    # then: every open and every seal unwrapped the key again
    assert loads == 5
    assert opened == [b"ada@example.com"] * 3
    assert [envelope.open_sealed(value, LOCATION) for value in resealed] == [
        b"grace@example.com"
    ] * 2


def test_a_data_key_wrapped_under_another_master_key_fails_to_open(store: MemoryStore) -> None:
    # given: a key wrapped under the test settings' k1
    key = store.add()
    sealed = envelope.seal(key, b"ada@example.com", LOCATION)

    # when: k1 now names other key material (the keyring and cache are rebuilt)
    with (
        override_settings(CDP_MASTER_KEYS=f"k1:{KEY_A}"),
        pytest.raises(DecryptionError) as excinfo,
    ):
        envelope.open_sealed(sealed, LOCATION)

    # then
    assert type(excinfo.value) is DecryptionError
    assert str(excinfo.value) == "a data key failed to unwrap"
    assert envelope.open_sealed(sealed, LOCATION) == b"ada@example.com"


def test_rewrap_moves_a_data_key_to_the_primary_master_key_and_keeps_it(
    store: MemoryStore,
) -> None:
    # given: a key wrapped under the test settings' k1, and a value under it
    key = store.add()
    stored = store.keys[key]
    assert stored.wrapped is not None
    assert stored.wrapped.kek_id == "k1"
    sealed = envelope.seal(key, b"ada@example.com", LOCATION)
    old_spec = django_settings.CDP_MASTER_KEYS

    with override_settings(CDP_MASTER_KEYS=f"k2:{KEY_B},{old_spec}"):
        # when
        rewrapped = envelope.rewrap_data_key(key, stored.wrapped)
        store.keys[key] = StoredDataKey(id=key, wrapped=rewrapped)

    # then: only k2 is needed from now on
    assert rewrapped.kek_id == "k2"
    with override_settings(CDP_MASTER_KEYS=f"k2:{KEY_B}"):
        assert envelope.open_sealed(sealed, LOCATION) == b"ada@example.com"


# -- the local keyring ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "CDP_MASTER_KEYS holds no key"),
        (" , ,", "CDP_MASTER_KEYS holds no key"),
        ("k1", "CDP_MASTER_KEYS entries must look like id:base64key"),
        (f":{KEY_A}", "CDP_MASTER_KEYS entries must look like id:base64key"),
        ("k1:not*base64", "master key 'k1' is not valid base64"),
        ("k1:" + "é" * 44, "master key 'k1' is not valid base64"),
        (
            "k1:" + base64.b64encode(b"\x01" * 31).decode(),
            "master key 'k1' must be 32 bytes (AES-256)",
        ),
        (
            "k1:" + base64.b64encode(b"\x01" * 16).decode(),
            "master key 'k1' must be 32 bytes (AES-256)",
        ),
        (f"k1:{KEY_A},k1:{KEY_B}", "master key id 'k1' appears twice"),
        (f"k1:{KEY_A},k2:{KEY_B},k1:{KEY_A}", "master key id 'k1' appears twice"),
    ],
)
def test_a_malformed_master_key_spec_is_refused(spec: str, message: str) -> None:
    # given / when
    with pytest.raises(KeyringMisconfigured) as excinfo:
        LocalKeyring(spec)

    # then
    assert str(excinfo.value) == message


@examples
@given(raw=st.binary(max_size=96).filter(lambda raw: len(raw) != 32))
def test_a_master_key_of_any_other_length_is_refused(raw: bytes) -> None:
    # given
    spec = "k1:" + base64.b64encode(raw).decode()

    # when / then
    with pytest.raises(KeyringMisconfigured, match=r"^master key 'k1' must be 32 bytes"):
        LocalKeyring(spec)


@examples
@given(encoded=st.text(max_size=60).filter(lambda text: "," not in text))
def test_any_master_key_text_either_parses_to_32_bytes_or_is_refused(encoded: str) -> None:
    # given
    try:
        expected = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        expected = None

    # when
    try:
        keyring = LocalKeyring(f"k1:{encoded}")
    except KeyringMisconfigured:
        keyring = None

    # then
    assert (keyring is not None) == (expected is not None and len(expected) == 32)


def test_the_keyring_refuses_to_start_without_master_keys() -> None:
    # given / when
    with override_settings(CDP_MASTER_KEYS=""), pytest.raises(KeyringMisconfigured) as excinfo:
        get_keyring()

    # then
    assert str(excinfo.value) == "CDP_MASTER_KEYS is not set"


def test_the_first_master_key_is_primary_and_older_ones_still_unwrap() -> None:
    # given
    context = uuid.UUID("0190f3a2-7c1e-7d4b-8a2f-000000000001").bytes
    old_ring = LocalKeyring(f"k1:{KEY_A}")
    wrapped_by_old = old_ring.wrap(b"\x07" * 32, context=context)

    # when
    ring = LocalKeyring(f" k2:{KEY_B} , k1:{KEY_A} ")

    # then
    assert ring.primary_id == "k2"
    assert ring.has_key("k1") is True
    assert ring.has_key("k3") is False
    assert ring.wrap(b"\x07" * 32, context=context).kek_id == "k2"
    assert ring.unwrap(wrapped_by_old, context=context) == b"\x07" * 32


def test_unwrapping_is_bound_to_the_data_key_id_and_the_master_key_id() -> None:
    # given
    ring = LocalKeyring(f"k1:{KEY_A},k2:{KEY_A}")
    context = uuid.UUID("0190f3a2-7c1e-7d4b-8a2f-000000000001").bytes
    other_context = uuid.UUID("0190f3a2-7c1e-7d4b-8a2f-000000000002").bytes
    wrapped = ring.wrap(b"\x07" * 32, context=context)

    # when / then: another data key id, or the same key material under another KEK id, fails
    with pytest.raises(DecryptionError, match=r"^a data key failed to unwrap$"):
        ring.unwrap(wrapped, context=other_context)
    with pytest.raises(DecryptionError, match=r"^a data key failed to unwrap$"):
        ring.unwrap(WrappedKey(kek_id="k2", blob=wrapped.blob), context=context)
    with pytest.raises(DecryptionError, match=r"^master key 'k3' is not in the keyring$"):
        ring.unwrap(WrappedKey(kek_id="k3", blob=wrapped.blob), context=context)
    assert ring.unwrap(wrapped, context=context) == b"\x07" * 32


@examples
@given(data=st.data(), mask=st.integers(min_value=1, max_value=255))
def test_flipping_a_byte_of_a_wrapped_key_raises(data: st.DataObject, mask: int) -> None:
    # given
    ring = LocalKeyring(f"k1:{KEY_A}")
    context = uuid.UUID("0190f3a2-7c1e-7d4b-8a2f-000000000001").bytes
    wrapped = ring.wrap(b"\x07" * 32, context=context)
    index = data.draw(st.integers(min_value=0, max_value=len(wrapped.blob) - 1), label="index")

    # when / then
    with pytest.raises(DecryptionError, match=r"^a data key failed to unwrap$"):
        ring.unwrap(WrappedKey(kek_id="k1", blob=_flip(wrapped.blob, index, mask)), context=context)
