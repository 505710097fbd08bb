"""A worker keeps its database connection from one task to the next, as a web worker does from
one request to the next: Celery's Django fix-up used to close it around every task, so each
intake drain paid a new PostgreSQL backend (cdp/celery.py, CELERY_DB_REUSE_MAX)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from unittest import mock

import pytest
from celery import signals
from celery.fixups.django import DjangoWorkerFixup  # type: ignore[attr-defined]  # not in the stubs
from django.db import connection, connections

from cdp.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)  # no test transaction around the connection


class _Task:
    """What the signals' receivers read of a task: its current request."""

    def __init__(self, *, eager: bool) -> None:
        self.request = SimpleNamespace(is_eager=eager)


def _task(*, eager: bool) -> _Task:
    return _Task(eager=eager)


def test_a_workers_connection_outlives_its_task() -> None:
    # given: a worker's fix-up and an open connection
    fixup = DjangoWorkerFixup(celery_app)
    connection.ensure_connection()
    opened = connection.connection
    # when: a task runs and ends
    fixup.on_task_prerun(sender=_task(eager=False))
    fixup.on_task_postrun(sender=_task(eager=False))
    # then: the next task uses the same connection
    assert connection.connection is opened


def test_a_connection_past_its_age_is_closed_around_a_task() -> None:
    # given: an open connection past CONN_MAX_AGE
    connection.ensure_connection()
    connection.close_at = time.monotonic() - 1
    # when: a worker's task starts
    with mock.patch.object(connections["default"], "close", wraps=connection.close) as close:
        signals.task_prerun.send(sender=_task(eager=False), task_id="t", task=None)
    # then: it is closed, and the task gets a new one when it needs one (SQLite's in-memory
    # test database ignores the close, hence the spy)
    close.assert_called_once_with()


def test_an_eager_task_leaves_its_callers_connection_alone() -> None:
    # given: a connection past its age, used by a request that runs a task eagerly
    connection.ensure_connection()
    connection.close_at = time.monotonic() - 1
    # when: the eager task starts and ends
    with mock.patch.object(connections["default"], "close", wraps=connection.close) as close:
        signals.task_prerun.send(sender=_task(eager=True), task_id="t", task=None)
        signals.task_postrun.send(sender=_task(eager=True), task_id="t", task=None)
    # then: the caller's connection (perhaps inside its transaction) is not closed under it
    close.assert_not_called()


def test_a_connection_a_task_left_outside_autocommit_is_closed_after_it() -> None:
    # given: a task that turned autocommit off and never restored it (an open transaction)
    connection.ensure_connection()
    connection.set_autocommit(False)
    # when: the task ends
    with mock.patch.object(connections["default"], "close", wraps=connection.close) as close:
        signals.task_postrun.send(sender=_task(eager=False), task_id="t", task=None)
    # then: the next task does not inherit its transaction
    close.assert_called_once_with()
    connection.set_autocommit(True)


def test_a_sound_connection_is_kept_by_the_signal_handlers() -> None:
    # given: a healthy connection within its age
    connection.ensure_connection()
    connection.close_at = time.monotonic() + 60
    # when: a task starts and ends
    with mock.patch.object(connections["default"], "close", wraps=connection.close) as close:
        signals.task_prerun.send(sender=_task(eager=False), task_id="t", task=None)
        signals.task_postrun.send(sender=_task(eager=False), task_id="t", task=None)
    # then
    close.assert_not_called()
