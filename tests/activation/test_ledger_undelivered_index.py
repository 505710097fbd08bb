"""`ledger.adds_undelivered`, read by every incremental run, is served by the partial index of
the adds that did not arrive (`delivery_add_undelivered`), not by a scan of every row the
destination received."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from activation import ledger
from activation.enums import DeliveryAction, DeliveryStatus
from activation.models import Delivery
from tests.activation.sync_helpers import audience, file_destination, person

pytestmark = pytest.mark.django_db

DELIVERED_ROWS = 5000


def _rows(destination: Any, aud: Any, profile_ids: list[Any], status: str, count: int) -> None:
    at = timezone.now()
    Delivery.objects.bulk_create(
        Delivery(
            workspace_id=destination.workspace_id,
            destination=destination,
            audience=aud,
            profile_id=profile_ids[n % len(profile_ids)],
            action=DeliveryAction.ADD,
            basis={},
            payload_sha256="0" * 64,
            status=status,
            delivered_at=at,
        )
        for n in range(count)
    )


def test_the_undelivered_adds_are_read_through_their_partial_index(
    workspace: Any, db_vendor: str
) -> None:
    if db_vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's (production); SQLite only serves the demo")
    # given: a destination that received thousands of adds, two of which did not arrive
    destination = file_destination(workspace, "csv", data={"identifiers": ["email"]})
    aud = audience(workspace)
    received = [person(workspace).profile_id for _ in range(4)]
    failed, dead = (person(workspace).profile_id for _ in range(2))
    _rows(destination, aud, received, DeliveryStatus.DELIVERED, DELIVERED_ROWS)
    _rows(destination, aud, [failed], DeliveryStatus.FAILED, 1)
    _rows(destination, aud, [dead], DeliveryStatus.DEAD, 1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE activation_delivery")

    # when: the read every incremental run makes, then its plan
    with CaptureQueriesContext(connection) as queries:
        found = ledger.adds_undelivered(
            workspace_id=workspace.pk, destination_id=destination.pk, audience_id=aud.pk
        )
    (statement,) = (q["sql"] for q in queries.captured_queries)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {statement}")
        plan = "\n".join(row[0] for row in cursor.fetchall())

    # then: the two, found through the partial index
    assert found == {failed, dead}
    assert "delivery_add_undelivered" in plan, plan


def test_the_migrations_build_the_partial_index() -> None:
    # given: the test database, built by the migrations (concurrently on PostgreSQL)
    with connection.cursor() as cursor:
        # when
        constraints = connection.introspection.get_constraints(cursor, Delivery._meta.db_table)

    # then
    index = constraints["delivery_add_undelivered"]
    assert index["index"] is True
    assert index["columns"] == ["workspace_id", "destination_id", "audience_id", "profile_id"]
