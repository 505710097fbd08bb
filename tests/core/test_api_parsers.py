"""The JSON parser of the DRF APIs (cdp.core.api.parsers): valid JSON reads as the standard
library reads it; what cannot be taken (nesting beyond the limit, numbers out of range, a NUL
in a string, a body over the size limit) answers 400 or 413 in the API's shape, never a 500,
on the public data-subject request route as on the management routes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.exceptions import ParseError
from rest_framework.test import APIClient

from activation import services as activation_services
from activation.models import Audience, Destination
from cdp.core.api.parsers import MAX_DEPTH, NulCharacter, loads
from governance.models import DataSubjectRequest
from tests.activation.api_helpers import VIP

DSR_SUBMIT = {"workspace": "acme", "type": "access", "regime": "gdpr", "email": "ada@example.com"}
DEEP = b"[" * 50000 + b"]" * 50000  # 100 KB, beyond every JSON parser's nesting limit


@pytest.fixture(autouse=True)
def _fresh_limits() -> Any:
    cache.clear()
    yield
    cache.clear()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- the parser --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        b'{"a": 1, "b": [true, false, null], "c": {"d": "\\u00e9\\ud83d\\ude00 caf\xc3\xa9"}}',
        b'{"a": 1, "a": 2}',  # the last duplicate wins
        b"[0, -0, -0.0, 1.5, 1e3, 2.5E-3, 1.7976931348623157e308, 5e-324]",
        # the 64-bit bounds; 19 digits in a row, in a string or a float too, take the
        # standard library's way
        b"[9223372036854775807, -9223372036854775808, 18446744073709551615]",
        b'{"id": "1234567890123456789012", "n": 0.12345678901234567890123}',
        b'"just a string"',
        b"  [1, 2]  \n",
        b'["\\\\u0000 is written, not a NUL"]',
    ],
)
def test_valid_json_reads_as_the_standard_library_reads_it(document: bytes) -> None:
    # when
    parsed = loads(document)
    # then: equal values of equal types (an int stays an int)
    expected = json.loads(document)
    assert parsed == expected
    assert repr(parsed) == repr(expected)


def test_nesting_up_to_the_limit_is_read() -> None:
    # when
    parsed = loads(_nested(MAX_DEPTH))
    # then
    depth = 0
    while isinstance(parsed, list) and parsed:
        parsed, depth = parsed[0], depth + 1
    assert depth == MAX_DEPTH - 1


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_nested(MAX_DEPTH + 1), f"JSON parse error - nested deeper than {MAX_DEPTH} levels"),
        (
            b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
            f"JSON parse error - nested deeper than {MAX_DEPTH} levels",
        ),
        (
            # with an integer beyond 64 bits, which the standard library reads again
            b"[" * (MAX_DEPTH + 1) + b"18446744073709551616" + b"]" * (MAX_DEPTH + 1),
            f"JSON parse error - nested deeper than {MAX_DEPTH} levels",
        ),
        (DEEP, "JSON parse error - depth limit exceeded: line 1 column 1026 (char 1025)"),
    ],
)
def test_deeper_nesting_is_a_parse_error(document: bytes, message: str) -> None:
    # when
    with pytest.raises(ParseError) as raised:
        loads(document)
    # then
    assert str(raised.value.detail) == message


@pytest.mark.parametrize(
    "document",
    [
        b"[1e400]",  # the standard library reads infinity, which no JSON column stores
        b"[NaN]",
        b'["\\ud800"]',  # a lone surrogate, which no UTF-8 column stores
        # beyond 64 bits: orjson would read a float, and writes (sealed columns) refuse it
        b"[18446744073709551616]",
        b'{"a": [-9223372036854775809]}',
        b'{"a": ',
        b"\xff",
    ],
)
def test_what_cannot_be_stored_is_a_parse_error(document: bytes) -> None:
    # when / then
    with pytest.raises(ParseError):
        loads(document)


@pytest.mark.parametrize(
    "document",
    [
        b'"a\\u0000b"',
        b'{"details": {"purposes": ["x\\u0000"]}}',
        b'{"details": {"k\\u0000": 1}}',
        b'[[[{"deep": ["ok", "\\u0000"]}]]]',
    ],
)
def test_a_nul_anywhere_in_a_string_is_refused(document: bytes) -> None:
    # when / then
    with pytest.raises(NulCharacter):
        loads(document)


def test_a_body_in_another_declared_charset_is_decoded_as_drf_decodes_it(
    api_client: APIClient, workspace: Any
) -> None:
    # given: the name in Latin-1
    body = '{"key": "cafe", "name": "Caf\u00e9", "rules": %s}' % json.dumps(VIP)  # noqa: UP031
    # when
    response = api_client.post(
        "/api/v1/audiences/",
        body.encode("latin-1"),
        content_type="application/json; charset=latin-1",
    )
    # then
    assert response.status_code == 201
    assert Audience.objects.get(key="cafe").name == "Caf\u00e9"


# --- through the API ---------------------------------------------------------------------------


def test_a_deeply_nested_body_to_the_public_request_route_is_400(workspace: Any) -> None:
    # given: no credentials, as any subject
    client = APIClient(raise_request_exception=False)
    # when
    response = client.post("/api/v1/requests/", DEEP, content_type="application/json")
    # then
    assert response.status_code == 400
    assert response.json() == {
        "code": "malformed_body",
        "message": "JSON parse error - depth limit exceeded: line 1 column 1026 (char 1025)",
    }
    assert DataSubjectRequest.objects.count() == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/audiences/"),
        ("post", "/api/v1/audiences/preview"),
        ("patch", "/api/v1/audiences/vip/"),
        ("post", "/api/v1/destinations/"),
    ],
)
@pytest.mark.parametrize("body", [DEEP, _nested(900)])
def test_a_deeply_nested_body_to_a_management_route_is_400(
    api_client: APIClient, workspace: Any, method: str, path: str, body: bytes
) -> None:
    # given
    api_client.raise_request_exception = False
    activation_services.audience_create(workspace=workspace, key="vip", name="VIP", rules=VIP)
    # when
    response = getattr(api_client, method)(path, body, content_type="application/json")
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_body"
    assert list(Audience.objects.values_list("key", "name", "rules")) == [("vip", "VIP", VIP)]
    assert Destination.objects.count() == 0


def test_deeply_nested_rules_within_the_body_limit_are_invalid_rules(
    api_client: APIClient, workspace: Any
) -> None:
    # given: rules nested as deep as the parser takes, where a value may be anything
    rules: Any = 1
    for _ in range(MAX_DEPTH - 4):
        rules = [rules]
    # when
    response = api_client.post(
        "/api/v1/audiences/preview",
        {"rules": {"trait": {"key": "plan", "op": "=", "value": rules}}},
        format="json",
    )
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_rules"


@pytest.mark.parametrize(
    "details",
    [
        {"text": "x\u0000"},
        {"k\u0000": "v"},
        {"purposes": ["ads", "x\u0000"]},
    ],
)
def test_a_nul_in_a_submitted_request_is_400_and_stores_nothing(
    workspace: Any, details: dict[str, Any]
) -> None:
    # given: PostgreSQL refuses NUL in text and JSON: this was a 500 there
    client = APIClient(raise_request_exception=False)
    # when
    response = client.post(
        "/api/v1/requests/", {**DSR_SUBMIT, "type": "objection", "details": details}, format="json"
    )
    # then
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_character",
        "message": "Text in the request body cannot contain the NUL character (U+0000).",
    }
    assert DataSubjectRequest.objects.count() == 0


def test_a_nul_in_a_management_body_is_400_and_changes_nothing(
    api_client: APIClient, workspace: Any
) -> None:
    # given
    api_client.raise_request_exception = False
    # when
    response = api_client.post(
        "/api/v1/destinations/",
        {"name": "Export", "kind": "csv", "purposes": ["ads"], "config": {"sep": "\u0000"}},
        format="json",
    )
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_character"
    assert Destination.objects.count() == 0


def test_a_body_over_the_upload_limit_is_413(workspace: Any, settings: Any) -> None:
    # given
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client = APIClient(raise_request_exception=False)
    body = {**DSR_SUBMIT, "details": {"text": "x" * 20_000}}
    # when
    response = client.post("/api/v1/requests/", body, format="json")
    # then
    assert response.status_code == 413
    assert response.json() == {
        "code": "request_too_large",
        "message": "The request body is larger than 10000 bytes.",
    }
    assert DataSubjectRequest.objects.count() == 0


def test_an_integer_beyond_64_bits_is_400_not_a_server_error(workspace: Any) -> None:
    # given: the request's details are sealed as JSON by orjson, which refuses such an integer
    client = APIClient(raise_request_exception=False)
    # when
    response = client.post(
        "/api/v1/requests/", {**DSR_SUBMIT, "details": {"order": 2**70}}, format="json"
    )
    # then
    assert response.status_code == 400
    assert response.json() == {
        "code": "malformed_body",
        "message": "JSON parse error - an integer is beyond 64 bits (send such a number as a "
        "string)",
    }
    assert DataSubjectRequest.objects.count() == 0
