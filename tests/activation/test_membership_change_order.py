"""An audience's membership changes commit in the order of their ids, so an incremental sync,
which reads the changes after its cursor, never skips one that commits late: every writer
holds the audience's row lock from before it draws a change id until it commits."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from activation import membership
from activation.enums import MembershipChangeKind
from activation.models import Audience, MembershipChange
from tests.activation.sync_helpers import audience, enter, person
from tests.threads import in_thread

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_change_drawn_while_another_writer_holds_the_audience_commits_above_it(
    workspace: Any,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks: SQLite has one writer at a time anyway")
    # given: ada is a member; a refresh holds the audience (as audience_refresh does from its
    # start) and will record cy's entry only after a moment
    ada, cy = person(workspace), person(workspace)
    aud = audience(workspace)
    enter(aud, ada)
    before = set(MembershipChange.objects.values_list("id", flat=True))
    locked = threading.Event()
    errors: list[BaseException] = []

    def refresh() -> None:
        with transaction.atomic():
            Audience.objects.select_for_update().get(pk=aud.pk)
            locked.set()
            time.sleep(0.5)
            MembershipChange.objects.create(
                audience=aud, profile_id=cy.profile_id, change=MembershipChangeKind.ENTERED,
                at=timezone.now(),
            )  # fmt: skip

    def merge() -> None:
        # meanwhile ada is merged away: her exit is recorded for the same audience
        membership.memberships_end(workspace_id=workspace.pk, profile_ids=[ada.profile_id])

    # when
    one = in_thread(refresh, errors)
    assert locked.wait(10)
    two = in_thread(merge, errors)
    one.join(10)
    two.join(10)

    # then: ada's exit, which committed after cy's entry, has the higher id. Had its id been
    # drawn before the lock, a sync reading between the two commits would have moved its
    # cursor past it for good.
    assert not errors
    changes = list(
        MembershipChange.objects.exclude(id__in=before)
        .order_by("id")
        .values_list("profile_id", "change")
    )
    assert changes == [
        (cy.profile_id, MembershipChangeKind.ENTERED),
        (ada.profile_id, MembershipChangeKind.EXITED),
    ]
