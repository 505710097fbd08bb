"""Envelope encryption: values are sealed with AES-256-GCM under a data key (DEK); each DEK is
stored wrapped by a key-encryption key (see keyring). This module never touches the database:
the app that owns the data-key table registers a `DataKeyStore` at start-up.

Ciphertext layout (version 1):

    0x01 | key id (16 bytes, UUID) | nonce (12 bytes) | AES-GCM ciphertext and 16-byte tag

The AAD is "cdp/v1|", the version and key id, and the value's location (table, column, row), so
a ciphertext copied to another row or column, or given another key id, fails to open (the nonce
is GCM's IV and authenticated by the tag). A failed open always raises.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from cdp.core.crypto.exceptions import (
    CryptoError,
    DataKeyNotFound,
    DataKeyShredded,
    DecryptionError,
)
from cdp.core.crypto.keyring import NONCE_SIZE, WrappedKey, get_keyring

VERSION = 1
_VERSION_BYTE = bytes([VERSION])
HEADER_SIZE = 1 + 16 + NONCE_SIZE
TAG_SIZE = 16
DATA_KEY_SIZE = 32
_AAD_PREFIX = b"cdp/v1|"


@dataclass(frozen=True)
class StoredDataKey:
    """A data key as its store holds it: wrapped, or destroyed (`wrapped` is None)."""

    id: uuid.UUID
    wrapped: WrappedKey | None


class DataKeyStore(Protocol):
    """Where wrapped data keys live (registered by the app that owns the table)."""

    def load(self, key_id: uuid.UUID) -> StoredDataKey | None: ...


@dataclass(frozen=True)
class NewDataKey:
    """A freshly generated data key, wrapped and ready to be stored."""

    id: uuid.UUID
    wrapped: WrappedKey


_store: DataKeyStore | None = None


def register_data_key_store(store: DataKeyStore) -> None:
    global _store  # noqa: PLW0603
    _store = store


def _get_store() -> DataKeyStore:
    if _store is None:
        raise CryptoError("no data-key store is registered")
    return _store


# Unwrapped keys are cached in memory for a short time so that a batch does not unwrap the
# same key once per value. Destroying a key evicts it here at once (see forget_data_key).
#
# seal and open_sealed run once per value, and for a short value the Python around the AES-GCM
# call costs as much as the call itself (see bench/crypto.py), so the hot path is kept lean: each
# entry also holds the header prefix (version byte + key id) and the AAD prefix precomputed, and
# is stored under two keys, the UUID's int (what seal has; `UUID.bytes` is a slow property) and
# the 16 id bytes (what a ciphertext header holds; building a UUID is slower still). An int and
# a bytes key never compare equal, so the two cannot collide.
_Entry = tuple[AESGCM, float, bytes, bytes]  # aead, expires at, header prefix, AAD prefix
_cache: dict[int | bytes, _Entry] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 100_000  # data keys (two entries each)


def _cache_ttl() -> float:
    return float(getattr(settings, "CDP_DATA_KEY_CACHE_SECONDS", 30))


def clear_data_key_cache() -> None:
    with _cache_lock:
        _cache.clear()


def forget_data_key(key_id: uuid.UUID) -> None:
    """Drop an unwrapped key from this process's memory (after destroying it)."""
    with _cache_lock:
        _cache.pop(key_id.int, None)
        _cache.pop(key_id.bytes, None)


def _remember(key_id: uuid.UUID, aead: AESGCM) -> _Entry:
    key_bytes = key_id.bytes
    header_prefix = _VERSION_BYTE + key_bytes
    entry = (aead, time.monotonic() + _cache_ttl(), header_prefix, _AAD_PREFIX + header_prefix)
    with _cache_lock:
        if len(_cache) >= 2 * _CACHE_MAX:
            _cache.clear()
        _cache[key_id.int] = entry
        _cache[key_bytes] = entry
    return entry


def generate_data_key() -> NewDataKey:
    """Make a new random 256-bit data key, wrapped under the primary KEK."""
    key_id = uuid.uuid4()
    raw = AESGCM.generate_key(bit_length=256)
    wrapped = get_keyring().wrap(raw, context=key_id.bytes)
    _remember(key_id, AESGCM(raw))
    return NewDataKey(id=key_id, wrapped=wrapped)


def rewrap_data_key(key_id: uuid.UUID, wrapped: WrappedKey) -> WrappedKey:
    """Unwrap with whichever KEK wrapped it and wrap again under the primary KEK."""
    keyring = get_keyring()
    raw = keyring.unwrap(wrapped, context=key_id.bytes)
    return keyring.wrap(raw, context=key_id.bytes)


def _load(key_id: uuid.UUID) -> _Entry:
    """Unwrap a data key from the store (not cached, or expired) and cache it."""
    stored = _get_store().load(key_id)
    if stored is None:
        raise DataKeyNotFound(f"data key {key_id} does not exist")
    if stored.wrapped is None:
        forget_data_key(key_id)
        raise DataKeyShredded(f"data key {key_id} was destroyed")
    return _remember(key_id, AESGCM(get_keyring().unwrap(stored.wrapped, context=key_id.bytes)))


def data_keys_missing(key_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Those of these data keys this process holds no fresh unwrapped copy of: what a batch
    job about to seal under many keys reads in one query for `preload_data_keys`."""
    now = time.monotonic()
    missing = []
    for key_id in key_ids:
        entry = _cache.get(key_id.int)
        if entry is None or entry[1] <= now:
            missing.append(key_id)
    return missing


def preload_data_keys(stored: Iterable[StoredDataKey]) -> int:
    """Unwrap and cache data keys that their owner read in bulk: a batch job about to open
    values under thousands of keys (a matching run) pays one query instead of one per key.
    Destroyed keys are skipped (their values still raise DataKeyShredded); keys cached and
    fresh are left alone. Returns how many were unwrapped."""
    keyring = get_keyring()
    now = time.monotonic()
    count = 0
    for key in stored:
        if key.wrapped is None:
            continue
        cached = _cache.get(key.id.bytes)
        if cached is not None and cached[1] > now:
            continue
        _remember(key.id, AESGCM(keyring.unwrap(key.wrapped, context=key.id.bytes)))
        count += 1
    return count


def location_aad(table: str, column: str, row: object) -> bytes:
    """The AAD naming where a value lives."""
    return f"{table}|{column}|{row}".encode()


_MIN_SIZE = HEADER_SIZE + TAG_SIZE


def seal(key_id: uuid.UUID, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt `plaintext` under data key `key_id`, binding `aad` (see location_aad)."""
    entry = _cache.get(key_id.int)
    if entry is None or entry[1] <= time.monotonic():
        entry = _load(key_id)
    nonce = os.urandom(NONCE_SIZE)
    # AAD: prefix | version | key id | location. The nonce is GCM's IV, authenticated by the
    # tag itself, so it need not be repeated in the AAD.
    return entry[2] + nonce + entry[0].encrypt(nonce, plaintext, entry[3] + aad)


def key_id_of(ciphertext: bytes) -> uuid.UUID:
    """The data key a ciphertext was sealed under."""
    if len(ciphertext) < _MIN_SIZE or ciphertext[0] != VERSION:
        raise DecryptionError("not a ciphertext of a known version")
    return uuid.UUID(bytes=bytes(ciphertext[1:17]))


def open_sealed(ciphertext: bytes, aad: bytes) -> bytes:
    """Decrypt a value sealed by `seal` with the same `aad`; raises on any mismatch."""
    if not isinstance(ciphertext, bytes):
        ciphertext = bytes(ciphertext)  # memoryview from a database driver, bytearray
    if len(ciphertext) < _MIN_SIZE or ciphertext[0] != VERSION:
        raise DecryptionError("not a ciphertext of a known version")
    key_bytes = ciphertext[1:17]
    entry = _cache.get(key_bytes)
    if entry is None or entry[1] <= time.monotonic():
        entry = _load(uuid.UUID(bytes=key_bytes))
    nonce = ciphertext[17:HEADER_SIZE]
    try:
        return entry[0].decrypt(nonce, ciphertext[HEADER_SIZE:], entry[3] + aad)
    except InvalidTag as exc:
        key_id = uuid.UUID(bytes=key_bytes)
        raise DecryptionError(f"value under data key {key_id} failed authentication") from exc
