"""Fixtures shared by the consent tests."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from profiles import services as profile_services

SHOP = "https://shop.example.com"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    # The CORS middleware caches the union of allowed origins, the consent API its answers
    # and the rate limits their windows: no test sees another's.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def source(workspace: Any) -> Any:
    """The shop's website: the consent API's caller (modules with another source define
    their own)."""
    return profile_services.source_create(
        workspace=workspace, name="Shop website", allowed_origins=[SHOP]
    )
