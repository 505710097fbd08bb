"""A drain applying an event's banner preferences and the preference centre saving the same
person's choices at once both finish (PostgreSQL): the drain's row lock on the profile (FOR NO
KEY UPDATE) lets the centre's foreign-key checks through at its commit, while the drain waits
for the centre's ledger locks. With FOR UPDATE they deadlocked."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from cdp.core import audit
from collect.consent_signals import consent_signals_apply
from consent import services
from consent.enums import Decision, Method
from consent.models import ConsentState
from consent.services import Evidence, Subject
from profiles import services as profile_services
from profiles.models import Profile
from tests.profiles.ingest_helpers import msg
from tests.threads import in_thread

pytestmark = pytest.mark.django_db(transaction=True)

PREFERENCES = {"consent": {"categoryPreferences": {"Analytics": True}}}


def test_a_drain_and_the_preference_centre_on_one_person_both_commit(workspace: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row and advisory locks: SQLite has one writer at a time anyway")
    # given: a person who granted analytics
    services.purposes_ensure_defaults(workspace=workspace)
    source = profile_services.source_create(workspace=workspace, name="Shop")
    pid = profile_services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="customer-7", anonymous_id="anon-7")],
    ).profile_ids[0]
    services.consent_record(
        workspace=workspace,
        subject=Subject("user_id", "customer-7", pid),
        decisions={"analytics": Decision.GRANTED},
        evidence=Evidence(method=Method.API),
    )
    profile = Profile.objects.get(pk=pid)
    errors: list[BaseException] = []
    ingested = threading.Event()

    def drain() -> None:
        # as collect.intake's drain: ingest (the profile row locked), then the consent signals
        messages = [msg(anonymous_id="anon-7", context=PREFERENCES)]
        with transaction.atomic(), audit.deferred_entries():
            outcome = profile_services.ingest_messages(
                source=source, messages=messages, postpone_contended=True
            )
            ingested.set()
            time.sleep(1.0)  # the preference centre takes its ledger locks meanwhile
            consent_signals_apply(source=source, messages=messages, profile_ids=outcome.profile_ids)

    def centre() -> None:
        services.preference_centre_save(
            workspace=workspace, profile=profile, choices={"advertising": False}
        )

    # when
    draining = in_thread(drain, errors)
    assert ingested.wait(10)
    time.sleep(0.2)
    saving = in_thread(centre, errors)
    draining.join(30)
    saving.join(30)
    # then: no deadlock, both are recorded
    assert errors == []
    states = dict(
        ConsentState.objects.filter(profile_id=pid).values_list("purpose__key", "decision")
    )
    assert states["advertising"] == Decision.DENIED
    assert states["analytics"] == Decision.GRANTED
