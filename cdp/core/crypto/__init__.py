"""The envelope-encryption layer (see docs/architecture.md, "Key hierarchy")."""

from cdp.core.crypto.blind_index import blind_index, keyed_hash, keyed_hasher
from cdp.core.crypto.envelope import (
    DataKeyStore,
    NewDataKey,
    StoredDataKey,
    forget_data_key,
    generate_data_key,
    open_sealed,
    register_data_key_store,
    rewrap_data_key,
    seal,
)
from cdp.core.crypto.exceptions import (
    CryptoError,
    DataKeyNotFound,
    DataKeyShredded,
    DecryptionError,
    KeyringMisconfigured,
)
from cdp.core.crypto.fields import (
    BlindIndexField,
    EncryptedJSONField,
    EncryptedTextField,
    personal_data_fields,
)

__all__ = [
    "BlindIndexField",
    "CryptoError",
    "DataKeyNotFound",
    "DataKeyShredded",
    "DataKeyStore",
    "DecryptionError",
    "EncryptedJSONField",
    "EncryptedTextField",
    "KeyringMisconfigured",
    "NewDataKey",
    "StoredDataKey",
    "blind_index",
    "forget_data_key",
    "generate_data_key",
    "keyed_hash",
    "keyed_hasher",
    "open_sealed",
    "personal_data_fields",
    "register_data_key_store",
    "rewrap_data_key",
    "seal",
]
