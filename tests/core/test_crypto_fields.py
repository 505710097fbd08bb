"""Encrypted model fields (cdp.core.crypto.fields) on the real models: Identity.value,
Trait.value_pii and Event.sealed. Raw SQL reads show what actually sits in the database."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any, cast

import pytest
from django.core.exceptions import FieldError
from django.db import connection, models, transaction
from django.test.utils import isolate_apps

from cdp.core.crypto import blind_index
from cdp.core.crypto.envelope import clear_data_key_cache
from cdp.core.crypto.exceptions import DataKeyShredded, DecryptionError
from cdp.core.crypto.fields import EncryptedJSONField, EncryptedTextField
from profiles import services
from profiles.models import DataKey, Event, Identity, Profile, Source, Trait, Workspace

pytestmark = pytest.mark.django_db

SEEN = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)


# -- helpers -------------------------------------------------------------------------------------


def make_source(workspace: Workspace) -> Source:
    return Source.objects.create(workspace=workspace, name="Website", write_key="wk_test_acme")


def make_identity(
    profile: Profile, key: DataKey, value: str, *, id: uuid.UUID | None = None
) -> Identity:
    identity = Identity(
        workspace_id=profile.workspace_id,
        profile=profile,
        origin_profile_id=profile.id,
        identifier_type="email",
        blind_index=blind_index(profile.workspace_id, "email", value),
        value=value,
        data_key=key,
        first_seen_at=SEEN,
        last_seen_at=SEEN,
    )
    if id is not None:
        identity.id = id
    identity.save()
    return identity


def make_trait(profile: Profile, key: DataKey, value: Any, *, id: uuid.UUID | None = None) -> Trait:
    source = Source.objects.filter(workspace_id=profile.workspace_id).first() or make_source(
        profile.workspace
    )
    trait = Trait(
        workspace_id=profile.workspace_id,
        profile=profile,
        origin_profile_id=profile.id,
        key="name",
        source=source,
        is_pii=True,
        value_pii=value,
        data_key=key,
        observed_at=SEEN,
        first_observed_at=SEEN,
    )
    if id is not None:
        trait.id = id
    trait.save()
    return trait


def make_event(profile: Profile, key: DataKey, value: Any) -> Event:
    source = Source.objects.filter(workspace_id=profile.workspace_id).first() or make_source(
        profile.workspace
    )
    return Event.objects.create(
        workspace_id=profile.workspace_id,
        profile=profile,
        origin_profile_id=profile.id,
        source=source,
        message_id="msg-0001",
        type="track",
        name="Order Completed",
        timestamp=SEEN,
        received_at=SEEN,
        sealed=value,
        data_key=key,
    )


def _pk_column(model: type[models.Model]) -> str:
    column = model._meta.pk.column
    assert column is not None
    return connection.ops.quote_name(column)


def raw_column(model: type[models.Model], column: str, pk: uuid.UUID) -> bytes | None:
    """The column exactly as stored, bypassing the ORM's field conversion."""
    # identifiers come from model metadata, quoted; the row id is a parameter
    table = connection.ops.quote_name(model._meta.db_table)
    pk_column = _pk_column(model)
    selected = connection.ops.quote_name(column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {selected} FROM {table} WHERE {pk_column} = %s",  # noqa: S608
            [model._meta.pk.get_db_prep_value(pk, connection)],
        )
        (value,) = cursor.fetchone()
    return None if value is None else bytes(value)


def copy_column(
    source_model: type[models.Model],
    source_column: str,
    source_pk: uuid.UUID,
    target_model: type[models.Model],
    target_column: str,
    target_pk: uuid.UUID,
) -> None:
    sealed = raw_column(source_model, source_column, source_pk)
    table = connection.ops.quote_name(target_model._meta.db_table)
    pk_column = _pk_column(target_model)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {connection.ops.quote_name(target_column)} = %s "  # noqa: S608
            f"WHERE {pk_column} = %s",
            [sealed, target_model._meta.pk.get_db_prep_value(target_pk, connection)],
        )


Maker = Callable[[Profile, DataKey, Any], models.Model]
CASES: list[tuple[str, Maker, str, Any, bytes]] = [
    ("identity", make_identity, "value", "sentinel-ada@example.com", b"sentinel-ada"),
    ("trait", make_trait, "value_pii", {"full_name": "Sentinel Lovelace"}, b"Sentinel"),
    ("event", make_event, "sealed", {"ip": "192.0.2.44", "phone": "+15550100"}, b"192.0.2.44"),
]
case_ids = [case[0] for case in CASES]


@pytest.fixture
def profile_and_key(workspace: Workspace) -> tuple[Profile, DataKey]:
    return services.profile_create(workspace=workspace)


# -- at rest -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "make", "field", "value", "sentinel"), CASES, ids=case_ids)
def test_saving_stores_ciphertext_under_the_rows_data_key(
    profile_and_key: tuple[Profile, DataKey],
    name: str,
    make: Maker,
    field: str,
    value: Any,
    sentinel: bytes,
) -> None:
    # given
    profile, key = profile_and_key

    # when
    row = make(profile, key, value)

    # then
    stored = raw_column(type(row), field, row.pk)
    assert stored is not None
    assert sentinel not in stored
    assert stored[0] == 1
    assert stored[1:17] == key.id.bytes


@pytest.mark.parametrize(("name", "make", "field", "value", "sentinel"), CASES, ids=case_ids)
def test_a_fresh_query_reads_the_plain_value_back(
    profile_and_key: tuple[Profile, DataKey],
    name: str,
    make: Maker,
    field: str,
    value: Any,
    sentinel: bytes,
) -> None:
    # given
    profile, key = profile_and_key
    row = make(profile, key, value)
    clear_data_key_cache()  # the key is unwrapped again from its DataKey row

    # when
    fresh = type(row)._default_manager.get(pk=row.pk)

    # then
    assert getattr(fresh, field) == value


def test_identity_ciphertext_is_exactly_header_plaintext_and_tag_long(
    profile_and_key: tuple[Profile, DataKey],
) -> None:
    # given
    profile, key = profile_and_key

    # when
    identity = make_identity(profile, key, "ada@example.com")

    # then
    assert len(raw_column(Identity, "value", identity.pk) or b"") == 1 + 16 + 12 + 15 + 16


def test_a_null_json_value_stays_null(profile_and_key: tuple[Profile, DataKey]) -> None:
    # given
    profile, key = profile_and_key

    # when
    trait = make_trait(profile, key, None)

    # then
    assert raw_column(Trait, "value_pii", trait.pk) is None
    assert Trait.objects.get(pk=trait.pk).value_pii is None


def test_bulk_create_also_encrypts(profile_and_key: tuple[Profile, DataKey]) -> None:
    # given
    profile, key = profile_and_key
    addresses = ["sentinel-one@example.com", "sentinel-two@example.com"]
    rows = [
        Identity(
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
        for address in addresses
    ]

    # when
    Identity.objects.bulk_create(rows)

    # then
    for row, address in zip(rows, addresses, strict=True):
        stored = raw_column(Identity, "value", row.pk) or b""
        assert b"sentinel" not in stored
        assert stored[0] == 1
        assert stored[1:17] == key.id.bytes
        assert Identity.objects.get(pk=row.pk).value == address


def test_saving_an_unchanged_row_keeps_its_ciphertext_and_a_change_reseals(
    profile_and_key: tuple[Profile, DataKey],
) -> None:
    # given
    profile, key = profile_and_key
    identity = make_identity(profile, key, "ada@example.com")
    before = raw_column(Identity, "value", identity.pk)
    loaded = Identity.objects.get(pk=identity.pk)
    assert loaded.value == "ada@example.com"

    # when: saved as read
    loaded.save()

    # then
    assert raw_column(Identity, "value", identity.pk) == before

    # when: changed
    loaded.value = "ada.lovelace@example.com"
    loaded.save(update_fields=["value"])

    # then
    after = raw_column(Identity, "value", identity.pk) or b""
    assert after != before
    assert b"lovelace" not in after
    assert Identity.objects.get(pk=identity.pk).value == "ada.lovelace@example.com"


def test_a_deferred_encrypted_field_is_loaded_on_first_read(
    profile_and_key: tuple[Profile, DataKey],
) -> None:
    # given
    profile, key = profile_and_key
    identity = make_identity(profile, key, "ada@example.com")
    deferred = Identity.objects.only("id").get(pk=identity.pk)
    assert deferred.get_deferred_fields() >= {"value"}

    # when
    value = deferred.value

    # then
    assert value == "ada@example.com"


def test_a_new_row_without_a_value_holds_none() -> None:
    # given / when
    identity = Identity()

    # then
    assert identity.value is None


# -- binding and tampering -----------------------------------------------------------------------


def test_ciphertext_copied_into_another_row_fails_to_decrypt(
    profile_and_key: tuple[Profile, DataKey],
) -> None:
    # given: two rows under the same data key
    profile, key = profile_and_key
    ada = make_identity(profile, key, "ada@example.com")
    grace = make_identity(profile, key, "grace@example.com")

    # when
    copy_column(Identity, "value", ada.pk, Identity, "value", grace.pk)

    # then
    copied = Identity.objects.get(pk=grace.pk)
    with pytest.raises(DecryptionError) as excinfo:
        _ = copied.value
    assert type(excinfo.value) is DecryptionError
    assert Identity.objects.get(pk=ada.pk).value == "ada@example.com"


def test_ciphertext_copied_into_another_table_with_the_same_row_id_fails_to_decrypt(
    profile_and_key: tuple[Profile, DataKey],
) -> None:
    # given: an identity and a trait sharing one primary key value and one data key
    profile, key = profile_and_key
    shared_id = uuid.UUID("0190f3a2-7c1e-7d4b-8a2f-2b1c3d4e5f60")
    make_identity(profile, key, "ada@example.com", id=shared_id)
    make_trait(profile, key, "Ada", id=shared_id)

    # when
    copy_column(Identity, "value", shared_id, Trait, "value_pii", shared_id)

    # then
    copied = Trait.objects.get(pk=shared_id)
    with pytest.raises(DecryptionError) as excinfo:
        _ = copied.value_pii
    assert type(excinfo.value) is DecryptionError


def test_a_plain_value_cannot_reach_the_column_through_queryset_update(
    profile_and_key: tuple[Profile, DataKey],
) -> None:
    # given
    profile, key = profile_and_key
    identity = make_identity(profile, key, "ada@example.com")
    before = raw_column(Identity, "value", identity.pk)

    # when
    with pytest.raises(TypeError), transaction.atomic():
        Identity.objects.filter(pk=identity.pk).update(value="sentinel-grace@example.com")

    # then
    assert raw_column(Identity, "value", identity.pk) == before


def test_assigning_a_value_of_the_wrong_kind_fails_at_assignment() -> None:
    # given
    identity = Identity()
    trait = Trait()

    # when / then
    with pytest.raises(TypeError, match=r"^value takes a string$"):
        identity.value = b"ada@example.com"  # type: ignore[assignment]
    with pytest.raises(TypeError):
        trait.value_pii = {"when": object()}


# -- crypto-shredding ---------------------------------------------------------------------------


def test_after_the_data_key_is_destroyed_reads_raise_shredded(workspace: Workspace) -> None:
    # given: two profiles, each with its own data key
    ada, ada_key = services.profile_create(workspace=workspace)
    grace, grace_key = services.profile_create(workspace=workspace)
    ada_identity = make_identity(ada, ada_key, "ada@example.com")
    ada_trait = make_trait(ada, ada_key, {"full_name": "Ada Lovelace"})
    grace_identity = make_identity(grace, grace_key, "grace@example.com")

    # when
    destroyed = services.data_keys_destroy(key_ids=[ada_key.id])

    # then
    assert destroyed == 1
    with pytest.raises(DataKeyShredded):
        _ = Identity.objects.get(pk=ada_identity.pk).value
    with pytest.raises(DataKeyShredded):
        _ = Trait.objects.get(pk=ada_trait.pk).value_pii
    clear_data_key_cache()
    with pytest.raises(DataKeyShredded):
        _ = Identity.objects.get(pk=ada_identity.pk).value
    assert Identity.objects.get(pk=grace_identity.pk).value == "grace@example.com"


def test_nothing_new_can_be_sealed_under_a_destroyed_data_key(
    profile_and_key: tuple[Profile, DataKey],
) -> None:
    # given
    profile, key = profile_and_key
    services.data_keys_destroy(key_ids=[key.id])

    # when / then
    with pytest.raises(DataKeyShredded), transaction.atomic():
        make_identity(profile, key, "ada@example.com")
    assert Identity.objects.count() == 0


# -- lookups -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lookup", "value"),
    [
        ("value", "ada@example.com"),
        ("value__exact", "ada@example.com"),
        ("value__in", ["ada@example.com"]),
        ("value__startswith", "ada"),
        ("value__icontains", "example"),
    ],
)
def test_filtering_by_an_encrypted_value_is_refused(
    profile_and_key: tuple[Profile, DataKey], lookup: str, value: Any
) -> None:
    # given
    profile, key = profile_and_key
    make_identity(profile, key, "ada@example.com")
    name = lookup.partition("__")[2] or "exact"

    # when / then
    with pytest.raises(FieldError, match=rf"^Unsupported lookup '{name}' for EncryptedTextField"):
        list(Identity.objects.filter(**{lookup: value}))


def test_filtering_an_encrypted_json_value_is_refused() -> None:
    # given / when / then
    with pytest.raises(FieldError, match=r"^Unsupported lookup 'exact' for EncryptedJSONField"):
        list(Trait.objects.filter(value_pii={"full_name": "Ada Lovelace"}))


def test_isnull_is_the_one_lookup_allowed(profile_and_key: tuple[Profile, DataKey]) -> None:
    # given
    profile, key = profile_and_key
    with_value = make_trait(profile, key, {"full_name": "Ada Lovelace"})

    # when
    present = list(Trait.objects.filter(value_pii__isnull=False).values_list("pk", flat=True))
    missing = Trait.objects.filter(value_pii__isnull=True).count()

    # then
    assert present == [with_value.pk]
    assert missing == 0


# -- system check --------------------------------------------------------------------------------


def _check_ids(pk: models.Field | None) -> list[str]:
    with isolate_apps("profiles"):
        attrs: dict[str, Any] = {
            "__module__": __name__,
            "secret": EncryptedTextField(key_field="data_key"),
            "extra": EncryptedJSONField(null=True, key_field="data_key"),
            "data_key": models.UUIDField(),
            "Meta": type("Meta", (), {"app_label": "profiles", "managed": False}),
        }
        if pk is not None:
            attrs["id"] = pk
        model = cast(type[models.Model], type("ThrowawaySecret", (models.Model,), attrs))
        return [str(error.id) for error in model.check() if (error.id or "").startswith("cdp.")]


def test_check_e001_fires_for_an_encrypted_field_on_an_integer_primary_key() -> None:
    # given / when
    ids = _check_ids(None)

    # then: once per encrypted field
    assert ids == ["cdp.E001", "cdp.E001"]


def test_check_e001_fires_for_a_uuid_primary_key_without_a_default() -> None:
    # given / when
    ids = _check_ids(models.UUIDField(primary_key=True))

    # then
    assert ids == ["cdp.E001", "cdp.E001"]


def test_check_e001_is_silent_for_a_uuid_primary_key_with_a_default() -> None:
    # given / when
    ids = _check_ids(models.UUIDField(primary_key=True, default=uuid.uuid4))

    # then
    assert ids == []


def test_the_real_models_pass_the_encrypted_field_check() -> None:
    # given / when
    ids = [
        str(error.id)
        for model in (Identity, Trait, Event)
        for error in model.check()
        if (error.id or "").startswith("cdp.")
    ]

    # then
    assert ids == []
