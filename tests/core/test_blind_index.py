"""Blind indexes (cdp.core.crypto.blind_index): HMAC-SHA256 under a key derived per workspace and
identifier type from CDP_INDEX_KEY. The caller normalizes; equal normalized values must give
equal indexes, and nothing may link values across workspaces, types or purposes."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.test import override_settings
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cdp.core.crypto.blind_index import blind_index, keyed_hash
from cdp.core.crypto.exceptions import KeyringMisconfigured

TEST_INDEX_KEY = b"\x02" * 32  # cdp.settings.test.CDP_INDEX_KEY
OTHER_INDEX_KEY = base64.b64encode(b"\x03" * 32).decode()
WORKSPACE = "0190f3a2-7c1e-7d4b-8a2f-2b1c3d4e5f60"

examples = settings(max_examples=60, deadline=None)

local_parts = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-",
    min_size=1,
    max_size=30,
)
values = st.text(max_size=80)
workspaces = st.one_of(st.integers(min_value=1, max_value=10**9), st.uuids())
identifier_types = st.sampled_from(
    ["email", "phone", "user_id", "anonymous_id", "device_id", "advertising_id", "loyalty_id"]
)


def normalize_email(raw: str) -> str:
    """What a caller does before indexing (the index itself does no normalization)."""
    return raw.strip().lower()


def test_a_blind_index_is_hmac_sha256_under_the_hkdf_derived_key() -> None:
    # given
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"cdp/blind-index/v1",
        info=b"identity|1|email",
    ).derive(TEST_INDEX_KEY)

    # when
    index = blind_index(1, "email", "ada@example.com")

    # then
    assert index == hmac.new(derived, b"ada@example.com", hashlib.sha256).digest()
    assert index.hex() == "bfb7f6f5b1aa121d3f7e070e6c8496804105fb484780e02232162b47e20ca925"


@examples
@given(
    workspace=workspaces,
    identifier_type=identifier_types,
    value=values,
)
def test_a_blind_index_is_32_bytes_and_deterministic(
    workspace: object, identifier_type: str, value: str
) -> None:
    # given / when
    first = blind_index(workspace, identifier_type, value)
    second = blind_index(workspace, identifier_type, value)

    # then
    assert len(first) == 32
    assert first == second


@examples
@given(
    local=local_parts,
    domain=st.sampled_from(["example.com", "Example.COM", "mail.example.com"]),
    padding=st.tuples(st.sampled_from(["", " ", "\t", "  \n"]), st.sampled_from(["", " ", "\n"])),
    data=st.data(),
)
def test_spellings_that_normalize_alike_give_the_same_index(
    local: str, domain: str, padding: tuple[str, str], data: st.DataObject
) -> None:
    # given: the same address written with other cases and surrounding whitespace
    address = f"{local}@{domain}"
    flips = data.draw(st.lists(st.booleans(), min_size=len(address), max_size=len(address)))
    respelled = "".join(c.swapcase() if flip else c for c, flip in zip(address, flips, strict=True))
    written = padding[0] + respelled + padding[1]

    # when
    index = blind_index(WORKSPACE, "email", normalize_email(written))

    # then
    assert index == blind_index(WORKSPACE, "email", normalize_email(address))


def test_the_index_itself_does_not_normalize() -> None:
    # given / when
    lower = blind_index(WORKSPACE, "email", "ada@example.com")
    upper = blind_index(WORKSPACE, "email", "Ada@Example.com")
    padded = blind_index(WORKSPACE, "email", " ada@example.com")

    # then
    assert lower != upper
    assert lower != padded


@examples
@given(first=values, second=values)
def test_different_values_give_different_indexes(first: str, second: str) -> None:
    # given
    assume(first != second)

    # when / then
    assert blind_index(WORKSPACE, "email", first) != blind_index(WORKSPACE, "email", second)


@examples
@given(first=workspaces, second=workspaces, value=values)
def test_the_same_value_in_two_workspaces_gives_different_indexes(
    first: object, second: object, value: str
) -> None:
    # given
    assume(str(first) != str(second))

    # when / then
    assert blind_index(first, "email", value) != blind_index(second, "email", value)


@examples
@given(first=identifier_types, second=identifier_types, value=values)
def test_the_same_value_under_two_identifier_types_gives_different_indexes(
    first: str, second: str, value: str
) -> None:
    # given
    assume(first != second)

    # when / then
    assert blind_index(WORKSPACE, first, value) != blind_index(WORKSPACE, second, value)


@examples
@given(value=values, identifier_type=identifier_types)
def test_a_keyed_hash_for_another_purpose_differs_from_the_blind_index(
    value: str, identifier_type: str
) -> None:
    # given / when
    suppression = keyed_hash("suppression", WORKSPACE, identifier_type, value)

    # then
    assert len(suppression) == 32
    assert suppression == keyed_hash("suppression", WORKSPACE, identifier_type, value)
    assert suppression != blind_index(WORKSPACE, identifier_type, value)
    assert suppression != keyed_hash("consent", WORKSPACE, identifier_type, value)


def test_keyed_hash_refuses_the_identity_namespace() -> None:
    # given / when
    with pytest.raises(ValueError) as excinfo:
        keyed_hash("identity", WORKSPACE, "email", "ada@example.com")

    # then
    assert str(excinfo.value) == "the identity namespace is reserved for blind_index"


def test_changing_the_index_key_changes_every_index() -> None:
    # given
    before = blind_index(WORKSPACE, "email", "ada@example.com")
    hashed_before = keyed_hash("suppression", WORKSPACE, "email", "ada@example.com")

    # when
    with override_settings(CDP_INDEX_KEY=OTHER_INDEX_KEY):
        during = blind_index(WORKSPACE, "email", "ada@example.com")
        hashed_during = keyed_hash("suppression", WORKSPACE, "email", "ada@example.com")

    # then: another key, other indexes; the original key gives the original ones back
    assert during != before
    assert hashed_during != hashed_before
    assert len(during) == 32
    assert blind_index(WORKSPACE, "email", "ada@example.com") == before


@pytest.mark.parametrize(
    ("index_key", "message"),
    [
        ("", "CDP_INDEX_KEY is not set"),
        (None, "CDP_INDEX_KEY is not set"),
        ("not*base64", "CDP_INDEX_KEY is not valid base64"),
        (base64.b64encode(b"\x03" * 31).decode(), "CDP_INDEX_KEY must hold at least 32 bytes"),
    ],
)
def test_a_missing_or_malformed_index_key_is_refused(index_key: str | None, message: str) -> None:
    # given / when
    with (
        override_settings(CDP_INDEX_KEY=index_key),
        pytest.raises(KeyringMisconfigured) as excinfo,
    ):
        blind_index(WORKSPACE, "email", "ada@example.com")

    # then
    assert str(excinfo.value) == message


@pytest.mark.parametrize(("namespace", "scope"), [("identity|1", "email"), ("consent", "1|email")])
def test_keyed_hash_refuses_a_separator_that_could_alias_another_key(
    namespace: str, scope: str
) -> None:
    # "identity|1" with scope "email" would otherwise derive from the same input as the
    # blind index of workspace 1's "email|..." identifier type.
    with pytest.raises(ValueError, match="must not contain"):
        keyed_hash(namespace, scope, "kind", "ada@example.com")
