"""profiles.services.ingest_messages: dedup, resolution, merges under rules, traits, events."""

from __future__ import annotations

from typing import Any

import pytest

from profiles import services
from profiles.enums import ProfileStatus
from profiles.models import (
    DataKey,
    Event,
    Identity,
    IdentityRule,
    Merge,
    MergeConflict,
    Profile,
    Trait,
)
from tests.profiles.ingest_helpers import msg


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Web")


def active_profiles(workspace: Any) -> list[Profile]:
    return list(Profile.objects.filter(workspace=workspace, status=ProfileStatus.ACTIVE))


def test_new_identifier_creates_a_profile_with_its_own_data_key(source: Any) -> None:
    # given / when
    outcome = services.ingest_messages(source=source, messages=[msg(anonymous_id="anon-1")])
    # then
    profile = Profile.objects.get()
    assert outcome.profile_ids == [profile.pk]
    assert outcome.profiles_created == 1
    assert DataKey.objects.get().profile_id == profile.pk
    identity = Identity.objects.get()
    assert (identity.identifier_type, identity.value) == ("anonymous_id", "anon-1")
    assert Event.objects.get().profile_id == profile.pk


def test_identify_links_anonymous_and_user_and_merges_two_profiles(source: Any) -> None:
    # given: two devices of one person, seen before they log in
    services.ingest_messages(source=source, messages=[msg(anonymous_id="phone-anon")])
    services.ingest_messages(source=source, messages=[msg(anonymous_id="laptop-anon")])
    services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="u-1", anonymous_id="phone-anon")],
    )
    # when
    outcome = services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="u-1", anonymous_id="laptop-anon")],
    )
    # then
    assert outcome.merges == 1
    [survivor] = active_profiles(source.workspace)
    assert Profile.objects.filter(status=ProfileStatus.MERGED).count() == 1
    assert sorted(survivor.identities.values_list("identifier_type", flat=True)) == [
        "anonymous_id",
        "anonymous_id",
        "user_id",
    ]
    assert Event.objects.filter(profile=survivor).count() == 4
    assert DataKey.objects.filter(profile=survivor).count() == 2
    merge = Merge.objects.get()
    assert (merge.survivor_id, merge.identifier_type) == (survivor.pk, "anonymous_id")
    assert merge.rule == "deterministic: anonymous_id seen with user_id in one message"


def test_second_user_id_on_a_shared_device_is_refused_and_recorded(source: Any) -> None:
    # given: a shared computer used by u-1
    services.ingest_messages(
        source=source, messages=[msg("identify", user_id="u-1", anonymous_id="shared")]
    )
    # when: u-2 logs in on it
    outcome = services.ingest_messages(
        source=source, messages=[msg("identify", user_id="u-2", anonymous_id="shared")]
    )
    # then: u-2 gets its own profile; the shared anonymous id stays with u-1
    assert outcome.merges == 0
    assert outcome.conflicts == 1
    assert len(active_profiles(source.workspace)) == 2
    conflict = MergeConflict.objects.get()
    assert conflict.identifier_type == "anonymous_id"
    assert "user_id" in conflict.reason


def test_blocked_values_never_link_people(source: Any) -> None:
    # when
    services.ingest_messages(
        source=source,
        messages=[
            msg(user_id="u-1", anonymous_id="undefined"),
            msg(user_id="u-2", anonymous_id="undefined"),
            msg(user_id="u-3", anonymous_id="00000"),
        ],
    )
    # then
    assert len(active_profiles(source.workspace)) == 3
    assert not Identity.objects.filter(identifier_type="anonymous_id").exists()


def test_resending_a_batch_stores_nothing_new(source: Any) -> None:
    # given
    batch = [msg(anonymous_id="a", message_id="m-1"), msg(anonymous_id="a", message_id="m-2")]
    services.ingest_messages(source=source, messages=batch)
    # when
    outcome = services.ingest_messages(source=source, messages=batch)
    # then
    assert (outcome.stored, outcome.duplicates) == (0, 2)
    assert outcome.profile_ids == [None, None]
    assert Event.objects.count() == 2


def test_email_identifier_is_normalized_before_matching(source: Any) -> None:
    # when
    services.ingest_messages(
        source=source,
        messages=[
            msg("identify", user_id="u-1", traits={"email": "  Jane.Doe@Example.com "}),
            msg("identify", anonymous_id="a-9", traits={"email": "jane.doe@example.com"}),
        ],
    )
    # then
    assert len(active_profiles(source.workspace)) == 1
    assert Identity.objects.get(identifier_type="email").value == "jane.doe@example.com"


def test_phone_is_normalized_to_e164(source: Any) -> None:
    # when
    services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="u-1", traits={"phone": "+1 (650) 555-1212"})],
    )
    # then
    assert Identity.objects.get(identifier_type="phone").value == "+16505551212"


def test_traits_are_classified_and_attributes_survive_latest(source: Any) -> None:
    # when
    services.ingest_messages(
        source=source,
        messages=[
            msg("identify", user_id="u-1", traits={"plan": "free", "first_name": "Jane"}),
            msg("identify", user_id="u-1", traits={"plan": "pro", "favourite": "tea"}),
        ],
    )
    # then
    profile = Profile.objects.get()
    assert profile.attributes == {"plan": "pro"}
    first_name = Trait.objects.get(key="first_name")
    assert first_name.is_pii and first_name.value_attribute is None
    assert first_name.value_pii == "Jane"
    unclassified = Trait.objects.get(key="favourite")
    assert unclassified.is_pii


def test_pii_event_properties_and_ip_are_sealed(source: Any) -> None:
    # when
    services.ingest_messages(
        source=source,
        messages=[
            msg(
                anonymous_id="a-1",
                name="Order Completed",
                properties={"total": 42, "email": "buyer@example.com", "note": "x@example.com"},
                ip="203.0.113.77",
            )
        ],
    )
    # then
    event = Event.objects.get()
    assert event.properties == {"total": 42}
    assert event.context == {"ip_truncated": "203.0.113.0"}
    assert event.sealed == {
        "properties": {"email": "buyer@example.com", "note": "x@example.com"},
        "context": {"ip": "203.0.113.77"},
    }


def test_user_id_limit_can_be_raised_by_a_rule(source: Any) -> None:
    # given
    IdentityRule.objects.filter(workspace=source.workspace, identifier_type="user_id").update(
        max_per_profile=2
    )
    services.ingest_messages(source=source, messages=[msg(user_id="u-1", anonymous_id="s")])
    # when
    outcome = services.ingest_messages(
        source=source, messages=[msg(user_id="u-2", anonymous_id="s")]
    )
    # then
    assert outcome.conflicts == 0
    assert len(active_profiles(source.workspace)) == 1


def test_alias_merges_previous_anonymous_id(source: Any) -> None:
    # given
    services.ingest_messages(source=source, messages=[msg(anonymous_id="anon-old")])
    services.ingest_messages(source=source, messages=[msg(user_id="u-7")])
    # when
    outcome = services.ingest_messages(
        source=source, messages=[msg("alias", user_id="u-7", previous_id="anon-old")]
    )
    # then
    assert outcome.merges == 1
    assert len(active_profiles(source.workspace)) == 1
