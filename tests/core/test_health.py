"""/health/ reports the database, the cache and the Celery broker (django-health-check's JSON:
one key per check, named by the check's repr, "OK" or the error)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from cdp.celery import app as celery_app

REDIS_URL = os.environ.get("CDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DATABASE = "Database(alias='default')"
CACHE = "Cache(alias='default')"
BROKER = "Broker()"


@pytest.fixture
def broker_at(db: Any) -> Iterator[Callable[[str], None]]:
    """Make the app leave eager mode and use a broker at `url`, for one test."""
    saved = {key: celery_app.conf[key] for key in ("task_always_eager", "broker_url")}

    def use(url: str) -> None:
        celery_app.conf.update(task_always_eager=False, broker_url=url)

    yield use
    celery_app.conf.update(saved)


def _health() -> Any:
    return Client().get("/health/", headers={"accept": "application/json"})


def test_health_reports_database_cache_and_broker_in_eager_mode(db: Any) -> None:
    # given
    assert celery_app.conf.task_always_eager is True
    assert celery_app.conf.broker_url is None

    # when
    response = _health()

    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {DATABASE: "OK", CACHE: "OK", BROKER: "OK"}
    assert "no-cache" in response["Cache-Control"]


def test_health_reaches_a_real_broker(broker_at: Callable[[str], None]) -> None:
    # given
    broker_at(REDIS_URL)

    # when
    response = _health()

    # then
    assert response.status_code == 200
    assert response.json() == {DATABASE: "OK", CACHE: "OK", BROKER: "OK"}


def test_health_fails_when_the_broker_cannot_be_reached(
    broker_at: Callable[[str], None],
) -> None:
    # given: nothing listens on port 1
    broker_at("redis://127.0.0.1:1/0")

    # when
    response = _health()

    # then
    assert response.status_code == 500
    assert response.json() == {
        DATABASE: "OK",
        CACHE: "OK",
        BROKER: "Unavailable: The Celery broker cannot be reached",
    }
    assert "127.0.0.1:1" not in response.content.decode()


def test_health_answers_plain_text_too(db: Any) -> None:
    # when
    response = Client().get("/health/", headers={"accept": "text/plain"})

    # then
    assert response.status_code == 200
    assert response.content.decode() == f"{DATABASE}: OK\n{CACHE}: OK\n{BROKER}: OK\n"
