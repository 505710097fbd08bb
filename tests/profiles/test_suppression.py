"""The suppression list: identifiers of erased people, as keyed hashes; ingestion drops and
counts every later message that carries one, and stores nothing of it."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from cdp.core.crypto import blind_index
from profiles import services
from profiles.models import (
    Event,
    Identity,
    Profile,
    SeenMessage,
    Suppression,
    SuppressionHit,
    Trait,
)
from tests.profiles.ingest_helpers import msg

EMAIL = "suppressed.person@example.com"


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Web")


def _hits(workspace: Any) -> int:
    return sum(SuppressionHit.objects.filter(workspace=workspace).values_list("count", flat=True))


def test_suppression_add_stores_keyed_hashes_only_and_ignores_duplicates(workspace: Any) -> None:
    # given
    services.suppression_add(workspace=workspace, identifiers=[("email", EMAIL)], reason="erasure")

    # when
    added = services.suppression_add(
        workspace=workspace,
        identifiers=[("email", EMAIL), ("anonymous_id", "anon-s1"), ("anonymous_id", "anon-s1")],
        reason="erasure",
    )

    # then
    assert added == 1
    rows = list(Suppression.objects.order_by("identifier_type"))
    assert [(r.identifier_type, r.reason) for r in rows] == [
        ("anonymous_id", "erasure"),
        ("email", "erasure"),
    ]
    email_row = rows[1]
    stored = bytes(email_row.keyed_hash)
    assert len(stored) == 32
    assert EMAIL.encode() not in stored
    assert stored != blind_index(workspace.pk, "email", EMAIL)


def test_messages_with_a_suppressed_email_or_anonymous_id_are_dropped_and_counted(
    workspace: Any, source: Any
) -> None:
    # given
    services.suppression_add(
        workspace=workspace,
        identifiers=[("email", EMAIL), ("anonymous_id", "anon-gone")],
        reason="erasure",
    )
    batch = [
        msg("identify", user_id="u-new", traits={"email": "Suppressed.Person@Example.com"}),
        msg(anonymous_id="anon-gone", name="Viewed", properties={"sku": "A1"}),
        msg(anonymous_id="anon-kept", name="Viewed", properties={"sku": "B2"}),
    ]

    # when
    outcome = services.ingest_messages(source=source, messages=batch)

    # then: only the unrelated message is stored
    assert (outcome.stored, outcome.dropped, outcome.duplicates) == (1, 2, 0)
    assert outcome.profile_ids[:2] == [None, None]
    assert outcome.profile_ids[2] is not None
    assert Event.objects.count() == 1
    assert Event.objects.get().properties == {"sku": "B2"}
    assert Identity.objects.count() == 1
    assert Identity.objects.get().identifier_type == "anonymous_id"
    assert Trait.objects.count() == 0
    assert Profile.objects.count() == 1
    assert set(SeenMessage.objects.values_list("message_id", flat=True)) == {batch[2].message_id}
    assert list(SuppressionHit.objects.values_list("workspace_id", "count")) == [(workspace.pk, 2)]


def test_a_message_is_dropped_whole_when_any_identifier_is_suppressed(
    workspace: Any, source: Any
) -> None:
    # given: the person comes back under a new userId with the old anonymousId
    services.suppression_add(
        workspace=workspace, identifiers=[("anonymous_id", "anon-gone")], reason="erasure"
    )

    # when
    outcome = services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="u-fresh", anonymous_id="anon-gone")],
    )

    # then
    assert (outcome.stored, outcome.dropped) == (0, 1)
    assert Identity.objects.count() == 0
    assert Profile.objects.count() == 0


def test_drops_add_up_per_day_and_resent_batches_are_dropped_not_deduplicated(
    workspace: Any, source: Any
) -> None:
    # given: the person's events were stored before the suppression
    first = [msg(anonymous_id="anon-back", name="Viewed")]
    services.ingest_messages(source=source, messages=first)
    services.suppression_add(
        workspace=workspace, identifiers=[("anonymous_id", "anon-back")], reason="erasure"
    )

    # when: the same batch is re-sent, then a new event
    again = services.ingest_messages(source=source, messages=first)
    later = services.ingest_messages(
        source=source, messages=[msg(anonymous_id="anon-back", name="Clicked")]
    )

    # then
    assert (again.stored, again.dropped, again.duplicates) == (0, 1, 0)
    assert (later.stored, later.dropped) == (0, 1)
    assert Event.objects.count() == 1  # the one from before (erasure removes it)
    assert _hits(workspace) == 2
    assert SuppressionHit.objects.get().day == timezone.now().date()


def test_suppression_is_per_workspace(workspace: Any, other_workspace: Any) -> None:
    # given
    services.suppression_add(
        workspace=other_workspace, identifiers=[("email", EMAIL)], reason="erasure"
    )
    source = services.source_create(workspace=workspace, name="Web")

    # when
    outcome = services.ingest_messages(
        source=source, messages=[msg("identify", user_id="u-1", traits={"email": EMAIL})]
    )

    # then
    assert (outcome.stored, outcome.dropped) == (1, 0)
    assert _hits(workspace) == 0
    assert _hits(other_workspace) == 0
