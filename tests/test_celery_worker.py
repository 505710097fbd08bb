"""End to end through a real Celery worker and a real Redis broker: a task sent with .delay()
is routed to its named queue, consumed by a worker (in a thread, with its own database
connection) and its result comes back through the result backend."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from auditlog import get_logentry_model
from celery.app.log import Logging
from celery.contrib.testing.worker import start_worker
from celery.result import EagerResult

from cdp.celery import app as celery_app
from governance.tasks import audit_chain_verify
from profiles import services

REDIS_URL = os.environ.get("CDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUES = ["consent", "default", "dsr", "governance", "ingest"]
AuditLogEntry = get_logentry_model()
_CONF_KEYS = ("task_always_eager", "broker_url", "result_backend")
_ENV_KEYS = (
    "CELERY_LOG_LEVEL",
    "CELERY_LOG_FILE",
    "_MP_FORK_LOGLEVEL_",
    "_MP_FORK_LOGFILE_",
    "_MP_FORK_LOGFORMAT_",
)


@contextmanager
def _logging_restored() -> Iterator[None]:
    """Starting a worker sets up logging again; put the test run's configuration back."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    was_setup = Logging._setup  # type: ignore[attr-defined]
    try:
        yield
    finally:
        Logging._setup = was_setup  # type: ignore[attr-defined]
        logging.captureWarnings(False)
        for logger, handlers, level, propagate, disabled in saved:
            logger.handlers = handlers
            logger.level = level
            logger.propagate = propagate
            logger.disabled = disabled


def _drop_connections(app: Any) -> None:
    """Forget pooled broker connections and the result backend, which were made for the
    configuration in force when first used (an eager .delay() opens the producer pool too)."""
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    amqp = vars(app).get("amqp")
    if amqp is not None and amqp._producer_pool is not None:
        amqp._producer_pool.force_close_all()
        amqp._producer_pool = None
    vars(app._local).pop("backend", None)


@pytest.fixture
def redis_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The project's Celery app, out of eager mode, on the local Redis for one test."""
    for name in _ENV_KEYS:
        monkeypatch.delenv(name, raising=False)
    saved = {key: celery_app.conf[key] for key in _CONF_KEYS}
    _drop_connections(celery_app)
    celery_app.conf.update(task_always_eager=False, broker_url=REDIS_URL, result_backend=REDIS_URL)
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        with _logging_restored():
            yield celery_app
    finally:
        _drop_connections(celery_app)
        celery_app.conf.update(saved)


def test_audit_chain_verify_is_routed_to_the_governance_queue() -> None:
    # when
    route = celery_app.amqp.router.route({}, audit_chain_verify.name)

    # then
    assert route["queue"].name == "governance"
    assert celery_app.conf.task_routes["governance.*"] == {"queue": "governance"}
    assert sorted(q.name for q in celery_app.conf.task_queues) == QUEUES


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_audit_chain_verify(redis_app: Any) -> None:
    # given: committed rows, which the worker reads through its own connection
    workspace = services.workspace_create(slug="acme", name="Acme Store")
    services.api_token_create(workspace=workspace, name="ci", permissions=["view_profiles"])
    entries = AuditLogEntry.objects.count()
    assert entries > 0

    with start_worker(redis_app, pool="solo", perform_ping_check=False) as worker:
        consumed = sorted(q.name for q in worker.consumer.task_consumer.queues)  # type: ignore[attr-defined]

        # when
        result = audit_chain_verify.delay()
        outcome = result.get(timeout=30)

    # then
    assert consumed == QUEUES
    assert outcome == {"checked": entries, "ok": True, "broken_entry": None}
    assert not isinstance(result, EagerResult)
    assert result.status == "SUCCESS"
    assert type(result.backend).__name__ == "RedisBackend"
