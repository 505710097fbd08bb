"""Fixtures of the activation tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.activation.sync_helpers import Receiver


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 (webhook URLs to it allowed, retries without waits)."""
    settings.CDP_WEBHOOK_ALLOW_PRIVATE = True
    settings.CDP_WEBHOOK_RETRY_BASE_MS = 0
    settings.CDP_WEBHOOK_MAX_ATTEMPTS = 3
    running = Receiver()
    running.start()
    yield running
    running.stop()


@pytest.fixture
def export_dir(settings: Any, tmp_path: Any) -> Any:
    """CDP_EXPORT_DIR in the test's temporary directory."""
    settings.CDP_EXPORT_DIR = tmp_path / "exports"
    return settings.CDP_EXPORT_DIR
