"""The delivery ledger's promise, checked over randomized scenarios: no ledger row of an
addition exists without a lawful basis at its time. For a purpose resting on consent, the
record the row names is a grant of that purpose for that profile and was the profile's latest
decision for the purpose when the row was written; for another basis, the row names it; and
the profile was not restricted then. After the scenario settles (removals sent, a full run of
every sync), no destination holds anyone who may not be sent to it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from activation import eligibility, ledger, removals, services
from activation.enums import DeliveryAction
from activation.models import Delivery
from consent.enums import Decision, LegalBasis
from consent.models import ConsentRecord
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from tests.activation.sync_helpers import (
    Receiver,
    audience,
    decide,
    enter,
    file_destination,
    leave,
    person,
    run_sync,
    webhook,
)

pytestmark = pytest.mark.django_db

PURPOSES = ("advertising", "analytics", "marketing_email")
DECISIONS = (Decision.GRANTED, Decision.GRANTED, Decision.WITHDRAWN, Decision.DENIED)


def _scenario(
    workspace: Any, receiver: Receiver, capture: Any, seed: int, steps: int
) -> tuple[list[Any], list[tuple[Any, Any, bool]]]:
    rng = random.Random(seed)
    people = [person(workspace) for _ in range(5)]
    buyers, browsers = audience(workspace, "buyers"), audience(workspace, "browsers")
    destinations = [
        webhook(workspace, receiver.url, purposes=("advertising",)),
        file_destination(
            workspace,
            "csv",
            data={"identifiers": ["user_id"]},
            purposes=["advertising", "analytics"],
        ),
        # `necessary` rests on a contract: its basis is named, never a consent record
        file_destination(
            workspace,
            "meta_custom_audiences",
            data={"identifiers": ["email"]},
            purposes=["necessary", "advertising"],
        ),
    ]
    syncs = [
        services.sync_create(audience=aud, destination=dest, mode=mode, interval_minutes=0)
        for aud, dest, mode in (
            (buyers, destinations[0], "incremental"),
            (buyers, destinations[1], "full"),
            (browsers, destinations[2], "incremental"),
            (browsers, destinations[0], "full"),
        )
    ]
    restrictions: list[tuple[Any, Any, bool]] = []  # (at, profile id, restricted)
    members: dict[Any, set[Any]] = {buyers.pk: set(), browsers.pk: set()}
    # A start that sends someone: everyone decides every purpose, most join an audience.
    for who in people:
        decide(workspace, who, **{key: rng.choice(DECISIONS) for key in PURPOSES})
        aud = rng.choice((buyers, browsers, None))
        if aud is not None:
            enter(aud, who)
            members[aud.pk].add(who.profile_id)
    for _ in range(steps):
        who = rng.choice(people)
        action = rng.random()
        if action < 0.40:
            decide(workspace, who, **{rng.choice(PURPOSES): rng.choice(DECISIONS)})
        elif action < 0.60:
            aud = rng.choice((buyers, browsers))
            if who.profile_id in members[aud.pk]:
                leave(aud, who)
                members[aud.pk].discard(who.profile_id)
            else:
                enter(aud, who)
                members[aud.pk].add(who.profile_id)
        elif action < 0.67:
            profile = profile_selectors.profile_get(workspace=workspace, profile_id=who.profile_id)
            restricted = not profile.restricted
            profile_services.profile_restrict(profile=profile, restricted=restricted)
            restrictions.append((timezone.now(), who.profile_id, restricted))
        else:
            run_sync(rng.choice(syncs), capture)
    return syncs, restrictions


def _restricted_at(restrictions: list[tuple[Any, Any, bool]], profile_id: Any, at: Any) -> bool:
    state = False
    for when, pk, restricted in restrictions:
        if pk == profile_id and when <= at:
            state = restricted
    return state


@pytest.mark.parametrize("seed", [7, 1234, 99991])
def test_no_ledger_row_without_a_consent_record_valid_at_its_time(
    workspace: Any,
    receiver: Receiver,
    export_dir: Path,
    django_capture_on_commit_callbacks: Any,
    seed: int,
) -> None:
    # given / when: random decisions, entries and exits, restrictions and syncs over time
    syncs, restrictions = _scenario(
        workspace, receiver, django_capture_on_commit_callbacks, seed, steps=45
    )

    # then: every addition in the ledger had its basis at its time
    adds = list(Delivery.objects.filter(action=DeliveryAction.ADD).select_related("destination"))
    assert adds, "the scenario sent nobody: it proves nothing"
    for row in adds:
        purposes = list(row.destination.purposes.all())
        assert set(row.basis) == {p.key for p in purposes}
        assert not _restricted_at(restrictions, row.profile_id, row.delivered_at)
        for purpose in purposes:
            if purpose.legal_basis != LegalBasis.CONSENT:
                assert row.basis[purpose.key] == purpose.legal_basis
                continue
            record = ConsentRecord.objects.get(pk=row.basis[purpose.key])
            latest = (
                ConsentRecord.objects.filter(
                    profile_id=row.profile_id,
                    purpose=purpose,
                    server_time__lte=row.delivered_at,
                )
                .order_by("-server_time", "-id")
                .first()
            )
            assert (record.profile_id, record.purpose_id, record.decision) == (
                row.profile_id,
                purpose.pk,
                Decision.GRANTED,
            )
            assert latest == record

    # when: the scenario settles (removals owed are sent, every sync runs in full)
    removals.removals_send_due()
    for sync in syncs:
        run_sync(sync, django_capture_on_commit_callbacks, mode="full")
    removals.removals_send_due()

    # then: no destination holds anyone it may not receive now
    for sync in syncs:
        held = {
            p
            for _d, _a, p in ledger.holdings(
                workspace_id=workspace.pk,
                destination_ids=[sync.destination_id],
                audience_id=sync.audience_id,
            )
        }
        verdict = eligibility.evaluate(
            workspace=workspace,
            purposes=list(sync.destination.purposes.all()),
            profile_ids=held,
        )
        assert verdict.excluded == {}, (sync.destination.kind, verdict.excluded)
