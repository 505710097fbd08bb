"""Model fields that hold envelope-encrypted values.

A model declares `email = EncryptedTextField(key_field="data_key")` and code reads and assigns
plain values; the field seals on save (AAD = table, column, primary key) under the data key the
row names, and opens lazily on first read. Reading a value whose key was destroyed raises
`DataKeyShredded`; any other failure raises `DecryptionError`. No lookup but `isnull` is allowed:
finding rows by value goes through a blind index.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from django.core import checks
from django.db import models

from cdp.core.crypto.envelope import location_aad, open_sealed, seal
from cdp.core.crypto.exceptions import CryptoError


class Sealed(bytes):
    """Ciphertext as read from the database (distinguishes it from a plain value)."""


class _Plain:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _EncryptedDescriptor:
    def __init__(self, field: EncryptedField) -> None:
        self.field = field

    def __get__(self, instance: models.Model | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        if self.field.attname not in instance.__dict__:
            # Deferred by only()/defer(): load it as Django's DeferredAttribute would, rather
            # than answering None as if the row held no value.
            instance.refresh_from_db(fields=[self.field.attname])
        stored = instance.__dict__.get(self.field.attname)
        if stored is None:
            return None
        if isinstance(stored, _Plain):
            return stored.value
        value = self.field.decrypt_for(instance, stored)
        instance.__dict__[self.field.attname] = _PlainSealed(value, stored)
        return value

    def __set__(self, instance: models.Model, value: Any) -> None:
        if value is None or isinstance(value, Sealed | _Plain):
            instance.__dict__[self.field.attname] = value
        else:
            instance.__dict__[self.field.attname] = _Plain(self.field.check_plain(value))


class _PlainSealed(_Plain):
    """A value read and opened: keeps the ciphertext so an unchanged save re-writes it as is."""

    __slots__ = ("sealed",)

    def __init__(self, value: Any, sealed: Sealed) -> None:
        super().__init__(value)
        self.sealed = sealed


class EncryptedField(models.BinaryField, abc.ABC):
    """Base of the encrypted fields: serialization is left to subclasses."""

    encrypted = True

    def __init__(self, *args: Any, key_field: str = "data_key", **kwargs: Any) -> None:
        self.key_field = key_field
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        kwargs["key_field"] = self.key_field
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def contribute_to_class(  # type: ignore[override]
        self, cls: type[models.Model], name: str, **kwargs: Any
    ) -> None:
        super().contribute_to_class(cls, name, **kwargs)
        setattr(cls, self.attname, _EncryptedDescriptor(self))

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        pk = self.model._meta.pk
        if not isinstance(pk, models.UUIDField) or pk.default is models.NOT_PROVIDED:
            errors.append(
                checks.Error(
                    "Encrypted fields need a UUID primary key with a default, so that the row "
                    "is known (and bound into the AAD) before the first save.",
                    obj=self,
                    id="cdp.E001",
                )
            )
        return errors

    def get_default(self) -> Any:
        # BinaryField's implicit default is b"", which is no plain value of any encrypted field
        # (`Identity()` would raise TypeError); without an explicit default there is no value.
        return super().get_default() if self.has_default() else None

    # -- serialization, overridden by subclasses -------------------------------------------
    def check_plain(self, value: Any) -> Any:
        return value

    @abc.abstractmethod
    def to_bytes(self, value: Any) -> bytes:
        """Serialize a plain value for sealing."""

    @abc.abstractmethod
    def from_bytes(self, data: bytes) -> Any:
        """Deserialize an opened value."""

    # -- crypto ------------------------------------------------------------------------------
    def _aad(self, instance: models.Model) -> bytes:
        return location_aad(self.model._meta.db_table, str(self.column), instance.pk)

    def _key_id(self, instance: models.Model) -> uuid.UUID:
        key_field = self.model._meta.get_field(self.key_field)
        assert isinstance(key_field, models.Field)
        key_attname = key_field.attname
        key_id = getattr(instance, key_attname)
        if key_id is None:
            raise CryptoError(
                f"{self.model._meta.label}.{self.name}: the row names no data key to seal with"
            )
        return key_id if isinstance(key_id, uuid.UUID) else uuid.UUID(str(key_id))

    def decrypt_for(self, instance: models.Model, sealed: bytes) -> Any:
        return self.from_bytes(open_sealed(sealed, self._aad(instance)))

    def seal_value(self, *, key_id: uuid.UUID, row_id: object, value: Any) -> bytes:
        """Seal a plain value for a row that is written without model instances (bulk
        ingestion): the same AAD (table, column, primary key) the descriptor uses."""
        aad = location_aad(self.model._meta.db_table, str(self.column), row_id)
        return seal(key_id, self.to_bytes(self.check_plain(value)), aad)

    def seal_for(self, instance: models.Model, value: Any) -> Sealed:
        return Sealed(seal(self._key_id(instance), self.to_bytes(value), self._aad(instance)))

    # -- Django hooks ------------------------------------------------------------------------
    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        stored = model_instance.__dict__.get(self.attname)
        if stored is None or isinstance(stored, Sealed):
            return stored
        if isinstance(stored, _PlainSealed) and self._key_id(model_instance) == _sealed_key(
            stored.sealed
        ):
            return stored.sealed
        assert isinstance(stored, _Plain)
        sealed = self.seal_for(model_instance, stored.value)
        model_instance.__dict__[self.attname] = _PlainSealed(stored.value, sealed)
        return sealed

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Sealed | None:
        if value is None:
            return None
        return Sealed(bytes(value))

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if isinstance(value, _Plain):
            raise CryptoError(f"{self.model._meta.label}.{self.name}: unsealed value reached SQL")
        return super().get_db_prep_value(value, connection, prepared)

    def value_to_string(self, obj: models.Model) -> str:
        return "[encrypted]"

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)


def _sealed_key(sealed: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=bytes(sealed[1:17]))


class EncryptedTextField(EncryptedField):
    """An encrypted string."""

    _pyi_private_set_type: str | None
    _pyi_private_get_type: str  # type: ignore[assignment]

    def check_plain(self, value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"{self.name} takes a string")
        return value

    def to_bytes(self, value: Any) -> bytes:
        return str(value).encode()

    def from_bytes(self, data: bytes) -> str:
        return data.decode()


class EncryptedJSONField(EncryptedField):
    """An encrypted JSON value (anything orjson serializes)."""

    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def check_plain(self, value: Any) -> Any:
        orjson.dumps(value)  # fail at assignment, not at save
        return value

    def to_bytes(self, value: Any) -> bytes:
        return orjson.dumps(value)

    def from_bytes(self, data: bytes) -> Any:
        return orjson.loads(data)


class BlindIndexField(models.BinaryField):
    """A 32-byte blind index (see blind_index); marks the row as holding personal data."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 32)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("editable", None)
        if kwargs.get("max_length") == 32:
            kwargs.pop("max_length")
        return name, path, args, kwargs

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> bytes | None:
        return None if value is None else bytes(value)

    def value_to_string(self, obj: models.Model) -> str:
        return "[blind index]"


def personal_data_fields(model: type[models.Model]) -> list[models.Field]:
    """The encrypted and blind-index fields of a model."""
    return [
        f for f in model._meta.concrete_fields if isinstance(f, EncryptedField | BlindIndexField)
    ]
