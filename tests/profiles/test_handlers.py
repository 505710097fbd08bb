"""The profiles app's personal-data handlers: export everything, erase everything."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from cdp.core import registry
from cdp.core.crypto import DataKeyShredded
from profiles import services
from profiles.models import DataKey, Event, Identity, Profile
from tests.profiles.ingest_helpers import msg

SENTINEL_EMAIL = "sentinel.handlers@example.com"


@pytest.fixture
def person(workspace: Any) -> Profile:
    source = services.source_create(workspace=workspace, name="Web")
    services.ingest_messages(source=source, messages=[msg(anonymous_id="anon-h1")])
    services.ingest_messages(
        source=source,
        messages=[
            msg(
                "identify",
                user_id="u-h1",
                anonymous_id="anon-h2",
                traits={"email": SENTINEL_EMAIL, "plan": "pro"},
            ),
            msg("identify", user_id="u-h1", anonymous_id="anon-h1"),
            msg(anonymous_id="anon-h1", name="Viewed", properties={"email": SENTINEL_EMAIL}),
        ],
    )
    return Profile.objects.get(status="active")


def test_export_collects_every_sentinel_through_all_handlers(person: Profile) -> None:
    # when
    exported = {h.name: h.export(person) for h in registry.handlers()}
    # then
    text = repr(exported)
    assert text.count(SENTINEL_EMAIL) == 3  # identity, trait, event property
    assert sorted(i["value"] for i in exported["profiles.identities"]["identities"]) == [
        "anon-h1",
        "anon-h2",
        SENTINEL_EMAIL,
        "u-h1",
    ]
    assert len(exported["profiles.merges"]["merges"]) == 1
    assert exported["profiles.profile"]["profile"]["attributes"] == {"plan": "pro"}


def test_erase_leaves_no_row_and_no_readable_key(person: Profile) -> None:
    # given
    key_ids = list(DataKey.objects.filter(profile=person).values_list("pk", flat=True))
    identity = Identity.objects.filter(profile=person).first()
    assert identity is not None
    # when
    reports = [h.erase(person) for h in registry.handlers()]
    # then
    assert [r.store for r in reports] == [
        "collect.imports",
        "collect.intake",
        "activation",
        "consent.ledger",
        "governance.requests",
        "matching.candidates",
        "matching.keys",
        "profiles.events",
        "profiles.merges",
        "profiles.traits",
        "profiles.identities",
        "profiles.profile",
    ]
    assert reports[-1].counts == {
        "data_keys_destroyed": 2,
        "profiles_deleted": 1,
        "merged_profiles_deleted": 1,
    }
    assert Profile.objects.count() == 0
    assert Event.objects.count() == 0
    assert Identity.objects.count() == 0
    assert set(DataKey.objects.filter(pk__in=key_ids).values_list("wrapped", flat=True)) == {None}
    with pytest.raises(DataKeyShredded):
        identity.value  # noqa: B018 — the read itself must fail
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM profiles_seenmessage")
        assert cursor.fetchone()[0] == 4  # message ids are not personal data
