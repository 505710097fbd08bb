"""`manage.py verify_receipt`: a receipt, as the API hands it out, verifies offline against the
published keys, and stops verifying when any byte of it changes or the key is not the signer's."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from consent import selectors, services
from consent.enums import Method
from profiles import services as profile_services


@pytest.fixture
def issued(workspace: Any) -> dict[str, Any]:
    """A receipt and the published keys, fetched over HTTP as a person or auditor would."""
    source = profile_services.source_create(workspace=workspace, name="Web")
    submitted = services.consent_submit(
        source=source,
        submission=services.ConsentSubmission(
            anonymous_id="anon-r1",
            decisions={"analytics": "granted", "advertising": "denied"},
            method=Method.BANNER,
            jurisdiction="DE",
            gpc=False,
        ),
    )
    assert submitted.receipt is not None
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()
    )
    receipt = client.get(
        f"/v1/consent/receipts/{submitted.receipt.pk}", {"anonymousId": "anon-r1"}
    ).json()
    keys = APIClient().get("/.well-known/cdp-receipt-keys.json", {"workspace": "acme"}).json()
    return {"receipt": receipt, "keys": keys}


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def verify(receipt_file: str, keys_file: str | None = None) -> str:
    out = StringIO()
    if keys_file:
        call_command("verify_receipt", receipt_file, keys=keys_file, stdout=out)
    else:
        call_command("verify_receipt", receipt_file, stdout=out)
    return out.getvalue().strip()


def test_a_receipt_verifies_offline_with_the_published_keys(
    issued: dict[str, Any], tmp_path: Path
) -> None:
    # given
    receipt_file = write(tmp_path, "receipt.json", issued["receipt"])
    keys_file = write(tmp_path, "keys.json", issued["keys"])
    # when
    printed = verify(receipt_file, keys_file)
    # then
    assert printed == f"valid {issued['receipt']['kid']}"


def test_without_a_keys_file_the_database_keys_are_used(
    issued: dict[str, Any], tmp_path: Path
) -> None:
    # when
    printed = verify(write(tmp_path, "receipt.json", issued["receipt"]))
    # then
    assert printed == f"valid {issued['receipt']['kid']}"


@pytest.fixture
def legacy(issued: dict[str, Any], workspace: Any) -> dict[str, Any]:
    """A receipt as signed before receipts named their workspace: the same body without
    `workspace`, signed by the workspace's key."""
    body = {k: v for k, v in issued["receipt"]["body"].items() if k != "workspace"}
    signature, kid = services.workspace_sign(workspace=workspace, body=body)
    return {**issued["receipt"], "body": body, "signature": signature, "kid": kid}


def test_a_receipt_naming_no_workspace_verifies_offline_with_the_key_of_its_kid(
    legacy: dict[str, Any], other_workspace: Any, tmp_path: Path
) -> None:
    # given: another workspace with a key of its own; the holder of a receipt that names no
    # workspace has only its kid to fetch the key by
    services.signing_key_current(workspace=other_workspace)
    response = APIClient().get("/.well-known/cdp-receipt-keys.json", {"kid": legacy["kid"]})
    assert response.status_code == 200
    # when
    printed = verify(
        write(tmp_path, "receipt.json", legacy), write(tmp_path, "keys.json", response.json())
    )
    # then
    assert "workspace" not in legacy["body"]
    assert printed == f"valid {legacy['kid']}"


def test_a_receipt_naming_its_workspace_verifies_with_the_key_of_its_kid(
    issued: dict[str, Any],
) -> None:
    # given: the key fetched by kid rather than by workspace
    kid = issued["receipt"]["kid"]
    keys = APIClient().get("/.well-known/cdp-receipt-keys.json", {"kid": kid}).json()["keys"]
    # when
    check = selectors.receipt_verify(receipt=issued["receipt"], keys=keys)
    # then: the key answered names the workspace, so the binding to it still holds
    assert issued["receipt"]["body"]["workspace"] == "acme"
    assert (check.valid, check.kid) == (True, kid)


def test_a_flipped_decision_breaks_the_signature(issued: dict[str, Any], tmp_path: Path) -> None:
    # given: analytics "granted" -> "denied"
    receipt = copy.deepcopy(issued["receipt"])
    purposes = receipt["body"]["services"][0]["purposes"]
    analytics = next(p for p in purposes if p["purpose"] == "analytics")
    assert analytics["consentStatus"] == "granted"
    analytics["consentStatus"] = "denied"
    # when / then
    with pytest.raises(CommandError, match="bad signature"):
        verify(
            write(tmp_path, "receipt.json", receipt), write(tmp_path, "keys.json", issued["keys"])
        )


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    else:
        yield path, node


def _changed(value: Any) -> Any:
    """The value with one byte changed (its last character, a digit, or a boolean flipped)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if value is None:
        return 0
    text = str(value)
    if not text:
        return "x"
    last = text[-1]
    return text[:-1] + ("0" if last != "0" else "1")


def test_changing_any_single_value_of_the_body_breaks_the_signature(
    issued: dict[str, Any],
) -> None:
    # given: every leaf of the signed body, each changed by one byte in turn
    receipt = issued["receipt"]
    leaves = list(_leaves(receipt["body"]))
    assert len(leaves) > 30
    keys = issued["keys"]["keys"]
    assert selectors.receipt_verify(receipt=receipt, keys=keys).valid
    broken = []
    for path, value in leaves:
        tampered = copy.deepcopy(receipt)
        node = tampered["body"]
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = _changed(value)
        # when
        check = selectors.receipt_verify(receipt=tampered, keys=keys)
        # then
        if check.valid:
            broken.append(path)
    assert broken == []


def test_a_changed_signature_is_refused(issued: dict[str, Any]) -> None:
    # given
    receipt = copy.deepcopy(issued["receipt"])
    signature = receipt["signature"]
    receipt["signature"] = ("B" if signature[0] != "B" else "C") + signature[1:]
    # when
    check = selectors.receipt_verify(receipt=receipt, keys=issued["keys"]["keys"])
    # then
    assert (check.valid, check.reason) == (
        False,
        "bad signature: the body or the signature was changed",
    )


def test_a_wrong_key_under_the_same_kid_is_refused(issued: dict[str, Any], tmp_path: Path) -> None:
    # given: a keys file whose entry for the receipt's kid holds another Ed25519 key
    impostor = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    keys = copy.deepcopy(issued["keys"])
    for key in keys["keys"]:
        key["x"] = base64.urlsafe_b64encode(impostor).rstrip(b"=").decode()
    # when / then
    with pytest.raises(CommandError, match="bad signature"):
        verify(write(tmp_path, "receipt.json", issued["receipt"]), write(tmp_path, "k.json", keys))


def test_an_unknown_kid_is_named(issued: dict[str, Any], tmp_path: Path) -> None:
    # given
    kid = issued["receipt"]["kid"]
    # when / then
    with pytest.raises(CommandError, match=f"unknown key id '{kid}'"):
        verify(
            write(tmp_path, "receipt.json", issued["receipt"]),
            write(tmp_path, "keys.json", {"keys": []}),
        )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ("[" * 100_000, "is not JSON"),  # nested beyond reason: no RecursionError
        ('{"id": NaN}', "is not JSON"),
        ("[]", "does not hold a receipt object"),
        ('{"id": "x"}', "not a receipt"),
    ],
)
def test_a_file_that_is_not_a_receipt_is_refused(
    db: Any, tmp_path: Path, content: str, message: str
) -> None:
    # given
    path = tmp_path / "receipt.json"
    path.write_text(content, encoding="utf-8")
    # when / then
    with pytest.raises(CommandError, match=message):
        verify(str(path))
