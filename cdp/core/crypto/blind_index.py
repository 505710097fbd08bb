"""Blind indexes: HMAC-SHA256 of a normalized value under a key derived (HKDF) from
CDP_INDEX_KEY per workspace and identifier type. Equal values in one workspace and type give equal
indexes; nothing else can be learned or linked across workspaces. Independent of encryption keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cdp.core.crypto.exceptions import KeyringMisconfigured

INDEX_SIZE = 32
_SALT = b"cdp/blind-index/v1"

_lock = threading.Lock()
_root: bytes | None = None
_macs: dict[tuple[str, str, str], hmac.HMAC] = {}


def _root_key() -> bytes:
    global _root  # noqa: PLW0603
    if _root is None:
        from django.conf import settings

        encoded = getattr(settings, "CDP_INDEX_KEY", None)
        if not encoded:
            raise KeyringMisconfigured("CDP_INDEX_KEY is not set")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyringMisconfigured("CDP_INDEX_KEY is not valid base64") from exc
        if len(raw) < 32:
            raise KeyringMisconfigured("CDP_INDEX_KEY must hold at least 32 bytes")
        _root = raw
    return _root


def clear_cache() -> None:
    global _root  # noqa: PLW0603
    with _lock:
        _root = None
        _macs.clear()


def _mac(namespace: str, scope: str, kind: str) -> hmac.HMAC:
    # The derivation input joins the three parts with "|"; with none in the first two, the
    # split is unique, so no (namespace, scope, kind) can derive another one's key.
    if "|" in namespace or "|" in scope:
        raise ValueError('a key namespace or scope must not contain "|"')
    cache_key = (namespace, scope, kind)
    mac = _macs.get(cache_key)
    if mac is None:
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=_SALT,
            info=f"{namespace}|{scope}|{kind}".encode(),
        ).derive(_root_key())
        mac = hmac.new(derived, digestmod=hashlib.sha256)
        with _lock:
            _macs[cache_key] = mac
    return mac


def blind_index(workspace_id: object, identifier_type: str, normalized_value: str) -> bytes:
    """The 32-byte blind index of an already normalized value."""
    mac = _mac("identity", str(workspace_id), identifier_type).copy()
    mac.update(normalized_value.encode())
    return mac.digest()


def keyed_hash(namespace: str, scope: object, kind: str, value: str) -> bytes:
    """A keyed hash for another purpose (e.g. consent proof), under its own derived key."""
    return keyed_hasher(namespace, scope, kind)(value)


def keyed_hasher(namespace: str, scope: object, kind: str) -> Callable[[str], bytes]:
    """`keyed_hash` with its key chosen once, for hashing many values under it (a matching
    run hashes some 100,000 blocking keys)."""
    if namespace == "identity":
        raise ValueError("the identity namespace is reserved for blind_index")
    bound = _mac(namespace, str(scope), kind)

    def digest(value: str) -> bytes:
        mac = bound.copy()
        mac.update(value.encode())
        return mac.digest()

    return digest
