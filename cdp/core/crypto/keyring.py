"""Key-encryption keys (KEKs). A KEK wraps data keys and never sits in the database.

`KeyEncryptionKeyProvider` is the interface a KMS-backed provider would implement; the
`LocalKeyring` reads `CDP_MASTER_KEYS` ("id:base64key,id2:base64key", the first is primary)."""

from __future__ import annotations

import base64
import binascii
import os
import threading
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.core.crypto.exceptions import DecryptionError, KeyringMisconfigured

_WRAP_AAD_PREFIX = b"cdp/dek-wrap/v1|"
NONCE_SIZE = 12


@dataclass(frozen=True)
class WrappedKey:
    kek_id: str
    blob: bytes


class KeyEncryptionKeyProvider(Protocol):
    """Wraps and unwraps data keys. `context` (the data key id) is bound into the wrapping."""

    @property
    def primary_id(self) -> str: ...

    def wrap(self, plaintext_key: bytes, *, context: bytes) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, *, context: bytes) -> bytes: ...

    def has_key(self, kek_id: str) -> bool: ...


class LocalKeyring:
    """KEKs held in process memory, read from the environment."""

    def __init__(self, spec: str) -> None:
        self._keys: dict[str, AESGCM] = {}
        self._order: list[str] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            kek_id, sep, encoded = item.partition(":")
            if not sep or not kek_id:
                raise KeyringMisconfigured("CDP_MASTER_KEYS entries must look like id:base64key")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise KeyringMisconfigured(f"master key {kek_id!r} is not valid base64") from exc
            if len(raw) != 32:
                raise KeyringMisconfigured(f"master key {kek_id!r} must be 32 bytes (AES-256)")
            if kek_id in self._keys:
                raise KeyringMisconfigured(f"master key id {kek_id!r} appears twice")
            self._keys[kek_id] = AESGCM(raw)
            self._order.append(kek_id)
        if not self._order:
            raise KeyringMisconfigured("CDP_MASTER_KEYS holds no key")

    @property
    def primary_id(self) -> str:
        return self._order[0]

    def has_key(self, kek_id: str) -> bool:
        return kek_id in self._keys

    def wrap(self, plaintext_key: bytes, *, context: bytes) -> WrappedKey:
        nonce = os.urandom(NONCE_SIZE)
        kek_id = self.primary_id
        blob = nonce + self._keys[kek_id].encrypt(nonce, plaintext_key, _aad(kek_id, context))
        return WrappedKey(kek_id=kek_id, blob=blob)

    def unwrap(self, wrapped: WrappedKey, *, context: bytes) -> bytes:
        aead = self._keys.get(wrapped.kek_id)
        if aead is None:
            raise DecryptionError(f"master key {wrapped.kek_id!r} is not in the keyring")
        nonce, body = wrapped.blob[:NONCE_SIZE], wrapped.blob[NONCE_SIZE:]
        try:
            return aead.decrypt(nonce, body, _aad(wrapped.kek_id, context))
        except InvalidTag as exc:
            raise DecryptionError("a data key failed to unwrap") from exc


def _aad(kek_id: str, context: bytes) -> bytes:
    return _WRAP_AAD_PREFIX + kek_id.encode() + b"|" + context


_lock = threading.Lock()
_keyring: KeyEncryptionKeyProvider | None = None


def get_keyring() -> KeyEncryptionKeyProvider:
    """The process's KEK provider, built once from settings."""
    global _keyring  # noqa: PLW0603
    if _keyring is None:
        from django.conf import settings

        with _lock:
            if _keyring is None:
                spec = getattr(settings, "CDP_MASTER_KEYS", None)
                if not spec:
                    raise KeyringMisconfigured("CDP_MASTER_KEYS is not set")
                _keyring = LocalKeyring(spec)
    return _keyring


def reset_keyring() -> None:
    """Forget the built keyring and every derived or cached key (settings changed)."""
    global _keyring  # noqa: PLW0603
    # Import the functions, not the modules: the package re-exports the `blind_index` function,
    # which shadows the `blind_index` submodule as an attribute of `cdp.core.crypto`.
    from cdp.core.crypto.blind_index import clear_cache as clear_index_cache
    from cdp.core.crypto.envelope import clear_data_key_cache

    with _lock:
        _keyring = None
    clear_data_key_cache()
    clear_index_cache()


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting in {"CDP_MASTER_KEYS", "CDP_INDEX_KEY"}:
        reset_keyring()


def connect_settings_reset() -> None:
    """Tests override key settings; rebuild the keyring when they do."""
    from django.test.signals import setting_changed

    setting_changed.connect(_on_setting_changed, dispatch_uid="cdp-keyring-reset")
