"""Fixtures for the browser tests: the API on pytest-django's live server, and the website the
SDK runs on, a static server on another 127.0.0.1 port (so every API call is cross-origin and
CORS is exercised). See `harness.py` for the page and the browser."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from pytest_django.live_server_helper import LiveServer

from tests.browser.harness import ANALYTICS_NEXT_UMD, NPM_REMEDY, StaticServer, require


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """pytest-django's live server, bound to 127.0.0.1 (its default is `localhost`)."""
    server = LiveServer("127.0.0.1")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # the CORS origin set and the rate-limit windows live in the cache, shared with the server
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def static_site() -> Iterator[StaticServer]:
    """The website: test pages and analytics-next's bundle, on its own 127.0.0.1 port."""
    require(ANALYTICS_NEXT_UMD, NPM_REMEDY)
    server = StaticServer()
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
