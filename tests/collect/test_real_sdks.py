"""The real Python SDKs against our views: they must see success (exactly 200) and read our
error bodies (`payload['code']`, `payload['message']`) instead of retrying them.

Each SDK's own `requests` session is given a transport adapter that hands the request, as the
SDK built it (body, gzip, headers), to Django's test client: no server thread, no sockets."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.test import Client as DjangoClient
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from profiles.models import Event, Trait

HOST = "http://testserver"
SDKS = ["segment.analytics", "rudderstack.analytics"]


class DjangoTransport(BaseAdapter):
    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        headers: dict[str, Any] = {
            "HTTP_" + name.upper().replace("-", "_"): str(value)
            for name, value in request.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        body = request.body or b""
        answer = DjangoClient().generic(
            str(request.method),
            urlsplit(str(request.url)).path,
            body.encode() if isinstance(body, str) else body,
            content_type=str(request.headers.get("Content-Type", "")),
            **headers,
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response._content = answer.content
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


def sdk_client(monkeypatch: pytest.MonkeyPatch, module: str, write_key: str) -> Any:
    session = requests.Session()
    session.mount(HOST, DjangoTransport())
    monkeypatch.setattr(importlib.import_module(f"{module}.request"), "_session", session)
    client_class = importlib.import_module(f"{module}.client").Client
    return client_class(write_key, host=HOST, sync_mode=True, max_retries=0)


def test_segment_analytics_python_is_stored(monkeypatch: pytest.MonkeyPatch, source: Any) -> None:
    # given
    client = sdk_client(monkeypatch, "segment.analytics", source.write_key)
    # when
    client.identify("u-seg", {"email": "seg@example.com", "plan": "pro"})
    client.track("u-seg", "Order Completed", {"total": 42})
    client.page("u-seg", name="Home")
    # then
    assert sorted(Event.objects.filter(source=source).values_list("type", "name")) == [
        ("identify", ""),
        ("page", "Home"),
        ("track", "Order Completed"),
    ]


def test_rudder_sdk_python_gzipped_context_traits_are_stored(
    monkeypatch: pytest.MonkeyPatch, source: Any
) -> None:
    # given: rudder-sdk-python gzips by default and puts identify traits in context.traits
    client = sdk_client(monkeypatch, "rudderstack.analytics", source.write_key)
    assert client.gzip is True
    # when
    client.identify("u-rs", {"email": "rs@example.com", "plan": "team"})
    client.track("u-rs", "Signed Up")
    # then
    assert sorted(Event.objects.filter(source=source).values_list("type", "name")) == [
        ("identify", ""),
        ("track", "Signed Up"),
    ]
    assert sorted(Trait.objects.filter(source=source).values_list("key", flat=True)) == [
        "email",
        "plan",
    ]


@pytest.mark.parametrize("module", SDKS)
def test_sdks_read_our_error_body(
    monkeypatch: pytest.MonkeyPatch, source: Any, module: str
) -> None:
    # given
    client = sdk_client(monkeypatch, module, "not-a-write-key")
    api_error = importlib.import_module(f"{module}.request").APIError
    # when
    with pytest.raises(api_error) as caught:
        client.track("u-1", "E")
    # then: parsed as {code, message}, not a KeyError the clients would retry
    assert (caught.value.status, caught.value.code) == (401, "invalid_write_key")
    assert caught.value.message == "The write key is not valid."
    assert Event.objects.count() == 0
