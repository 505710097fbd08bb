"""A source found by its write key is kept briefly per process: repeated requests do not query
it again; a change saved in the process (disable, rotate, delete) takes effect at once."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from profiles import selectors, services
from profiles.models import Source


@pytest.fixture(autouse=True)
def _empty_cache() -> Any:
    selectors._source_cache.clear()
    yield
    selectors._source_cache.clear()


def test_a_found_source_is_not_queried_again(
    workspace: Any, django_assert_num_queries: Any
) -> None:
    source = services.source_create(workspace=workspace, name="Web")
    with django_assert_num_queries(1):
        first = selectors.source_get_by_write_key(write_key=source.write_key)
        again = selectors.source_get_by_write_key(write_key=source.write_key)
    assert first is not None and again is first
    assert first.workspace.slug == workspace.slug  # loaded with it


def test_disabling_a_source_is_seen_at_once(workspace: Any) -> None:
    source = services.source_create(workspace=workspace, name="Web")
    assert selectors.source_get_by_write_key(write_key=source.write_key).enabled  # type: ignore[union-attr]
    services.source_set_enabled(source=Source.objects.get(pk=source.pk), enabled=False)
    found = selectors.source_get_by_write_key(write_key=source.write_key)
    assert found is not None and not found.enabled


def test_a_rotated_or_deleted_key_is_forgotten(workspace: Any) -> None:
    source = services.source_create(workspace=workspace, name="Web")
    old_key = source.write_key
    assert selectors.source_get_by_write_key(write_key=old_key) is not None
    source.write_key = "rotated-key-0123456789"
    source.save()
    assert selectors.source_get_by_write_key(write_key=old_key) is None
    assert selectors.source_get_by_write_key(write_key="rotated-key-0123456789") is not None
    source.delete()
    assert selectors.source_get_by_write_key(write_key="rotated-key-0123456789") is None


def test_unknown_keys_are_not_kept(workspace: Any, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2):
        assert selectors.source_get_by_write_key(write_key="nope") is None
        assert selectors.source_get_by_write_key(write_key="nope") is None


@override_settings(CDP_SOURCE_CACHE_SECONDS=0)
def test_with_the_cache_off_every_lookup_queries(
    workspace: Any, django_assert_num_queries: Any
) -> None:
    source = services.source_create(workspace=workspace, name="Web")
    with django_assert_num_queries(2):
        selectors.source_get_by_write_key(write_key=source.write_key)
        selectors.source_get_by_write_key(write_key=source.write_key)
