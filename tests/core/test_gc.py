"""Garbage-collector tuning of the server processes (cdp.core.gc)."""

from __future__ import annotations

import gc
import runpy
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import signals

from cdp.core.gc import gc_tune

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _untuned() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)


def test_gc_tune_freezes_startup_objects_and_spaces_young_collections(restored_gc: None) -> None:
    _untuned()
    survivor = [object()]  # alive at tuning time: frozen, never walked again

    gc_tune()

    assert gc.get_threshold()[0] == 50_000
    # Frozen: out of every generation the collector walks.
    assert not any(o is survivor for o in gc.get_objects())


def test_cycles_made_after_tuning_are_still_collected(restored_gc: None) -> None:
    _untuned()
    gc_tune()

    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]
    ref = id(node)
    del node
    gc.collect()

    assert all(id(o) != ref for o in gc.get_objects() if type(o).__name__ == "Node")


def test_a_celery_pool_process_is_tuned_when_it_starts(restored_gc: None) -> None:
    _untuned()
    signals.worker_process_init.send(sender=None)
    assert gc.get_threshold()[0] == 50_000


def test_a_gunicorn_worker_is_tuned_once_it_has_loaded_the_app(restored_gc: None) -> None:
    _untuned()
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    conf["post_worker_init"](None)
    assert gc.get_threshold()[0] == 50_000
