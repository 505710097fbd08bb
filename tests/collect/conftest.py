"""Fixtures for the collection API: a website source on the `acme` workspace that accepts
https://shop.example.com, a source on another workspace, and a client for the SDK routes."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from profiles import services

SHOP = "https://shop.example.com"
ELSEWHERE = "https://evil.example.net"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    # rate-limit windows and the CORS origin set live in the cache
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Shop website", allowed_origins=[SHOP])


@pytest.fixture
def other_source(other_workspace: Any) -> Any:
    return services.source_create(
        workspace=other_workspace,
        name="Globex website",
        allowed_origins=["https://globex.example.org"],
    )


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


def basic(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@pytest.fixture
def sdk(anon: APIClient, source: Any) -> APIClient:
    """A client that authenticates as `source` the way every SDK does (HTTP Basic)."""
    anon.credentials(HTTP_AUTHORIZATION=basic(source.write_key))
    return anon
