"""Crypto errors. Messages name key ids and locations only, never a value."""


class CryptoError(Exception):
    """Base class of every error of the encryption layer."""


class KeyringMisconfigured(CryptoError):
    """CDP_MASTER_KEYS or CDP_INDEX_KEY is missing or malformed."""


class DecryptionError(CryptoError):
    """A ciphertext could not be opened: tampered, wrong context, unknown or unusable key."""


class DataKeyShredded(DecryptionError):
    """The data key was destroyed (crypto-shredding): the value is gone for good."""


class DataKeyNotFound(DecryptionError):
    """No data key with that id exists."""
