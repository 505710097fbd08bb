"""Materialized membership with entered/exited history: full and incremental refreshes, the
realtime path from ingestion, merges, restriction, and the scheduled refresh."""

from __future__ import annotations

from typing import Any

import pytest

from activation import selectors, services, tasks
from activation.enums import AudienceStatus, ComputedTraitKind
from activation.models import Audience, AudienceMembership, ComputedTraitValue, LifecycleStage
from activation.models import MembershipChange as Change
from profiles import services as profile_services
from profiles.models import Profile
from tests.activation.rule_helpers import Store, days_ago
from tests.profiles.ingest_helpers import msg

pytestmark = pytest.mark.django_db

VIP = {"trait": {"key": "plan", "op": "=", "value": "vip"}}
BUYERS = {"event": {"name": "Order Completed"}}


@pytest.fixture
def store(workspace: Any) -> Store:
    return Store(workspace)


def member_ids(audience: Audience) -> set[Any]:
    return set(
        AudienceMembership.objects.filter(audience=audience).values_list("profile_id", flat=True)
    )


def history(audience: Audience) -> list[tuple[Any, str]]:
    return list(
        Change.objects.filter(audience=audience).order_by("id").values_list("profile_id", "change")
    )


def test_full_refresh_records_entries_and_exits(store: Store) -> None:
    # given
    ada = store.profile(plan="vip")
    ben = store.profile(plan="vip")
    store.profile(plan="member")
    audience = services.audience_create(
        workspace=store.workspace, key="vips", name="VIPs", rules=VIP
    )

    # when
    first = services.audience_refresh(audience=audience)

    # then
    assert (first.entered, first.exited) == (2, 0)
    assert member_ids(audience) == {ada.pk, ben.pk}
    assert sorted(history(audience), key=str) == sorted(
        [(ada.pk, "entered"), (ben.pk, "entered")], key=str
    )
    audience.refresh_from_db()
    assert audience.size == 2
    assert audience.last_computed_at is not None

    # when: ben downgrades; a second refresh changes only him
    Profile.objects.filter(pk=ben.pk).update(attributes={"plan": "member"})
    second = services.audience_refresh(audience=audience)
    third = services.audience_refresh(audience=audience)

    # then
    assert (second.entered, second.exited) == (0, 1)
    assert (third.entered, third.exited) == (0, 0)
    assert member_ids(audience) == {ada.pk}
    assert history(audience)[-1] == (ben.pk, "exited")
    assert len(history(audience)) == 3
    audience.refresh_from_db()
    assert audience.size == 1


def test_incremental_refresh_only_looks_at_the_given_profiles(store: Store) -> None:
    # given
    ada = store.profile(plan="vip")
    ben = store.profile(plan="member")
    audience = services.audience_create(
        workspace=store.workspace, key="vips", name="VIPs", rules=VIP
    )
    services.audience_refresh(audience=audience)
    Profile.objects.filter(pk=ben.pk).update(attributes={"plan": "vip"})
    Profile.objects.filter(pk=ada.pk).update(attributes={"plan": "member"})

    # when
    delta = services.audience_refresh(audience=audience, profile_ids=[str(ben.pk)])

    # then: ada changed too, but was not asked about
    assert (delta.entered, delta.exited) == (1, 0)
    assert member_ids(audience) == {ada.pk, ben.pk}
    audience.refresh_from_db()
    assert audience.size == 2


def test_restricted_profiles_leave_at_once_and_are_never_listed(store: Store) -> None:
    # given
    ada = store.profile(plan="vip")
    ben = store.profile(plan="vip")
    audience = services.audience_create(
        workspace=store.workspace, key="vips", name="VIPs", rules=VIP
    )
    services.audience_refresh(audience=audience)

    # when
    profile_services.profile_restrict(profile=ben, restricted=True)

    # then
    assert member_ids(audience) == {ada.pk}
    assert history(audience)[-1] == (ben.pk, "exited")
    assert [m.profile_id for m in selectors.audience_members(audience=audience)] == [ada.pk]
    services.audience_refresh(audience=audience)
    assert member_ids(audience) == {ada.pk}
    audience.refresh_from_db()
    assert audience.size == 1


def test_members_restricted_without_the_hook_are_not_listed(store: Store) -> None:
    # given: restricted behind the services' back (as a bulk update would)
    ada = store.profile(plan="vip")
    audience = services.audience_create(
        workspace=store.workspace, key="vips", name="VIPs", rules=VIP
    )
    services.audience_refresh(audience=audience)
    Profile.objects.filter(pk=ada.pk).update(restricted=True)

    # when
    listed = list(selectors.audience_members(audience=audience))

    # then
    assert listed == []


def test_paused_audiences_are_not_refreshed(store: Store) -> None:
    # given
    store.profile(plan="vip")
    audience = services.audience_create(
        workspace=store.workspace, key="vips", name="VIPs", rules=VIP
    )
    services.audience_update(audience=audience, status=AudienceStatus.PAUSED)

    # when
    delta = services.audience_refresh(audience=audience)

    # then
    assert (delta.entered, delta.exited) == (0, 0)
    assert member_ids(audience) == set()


def test_the_ingest_hook_updates_realtime_audiences_and_computed_traits(
    workspace: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    source = profile_services.source_create(workspace=workspace, name="Web")
    realtime = services.audience_create(
        workspace=workspace, key="buyers", name="Buyers", rules=BUYERS, realtime=True
    )
    batch = services.audience_create(
        workspace=workspace, key="buyers-batch", name="B", rules=BUYERS
    )
    orders = services.computed_trait_create(
        workspace=workspace,
        key="orders",
        name="Orders",
        kind=ComputedTraitKind.COUNT,
        event_name="Order Completed",
    )

    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        outcome = profile_services.ingest_messages(
            source=source,
            messages=[
                msg(anonymous_id="anon-1", name="Order Completed", properties={"revenue": 10}),
                msg(anonymous_id="anon-1", name="Order Completed", properties={"revenue": 5}),
                msg(anonymous_id="anon-2", name="Product Viewed"),
            ],
        )

    # then: one task for the batch; the realtime audience has the buyer, the other waits
    assert len(callbacks) == 1
    buyer = outcome.profile_ids[0]
    assert member_ids(realtime) == {buyer}
    assert history(realtime) == [(buyer, "entered")]
    assert member_ids(batch) == set()
    assert ComputedTraitValue.objects.get(trait=orders, profile_id=buyer).value == 2
    assert not ComputedTraitValue.objects.filter(
        trait=orders, profile_id=outcome.profile_ids[2]
    ).exists()


def test_merges_move_membership_to_the_survivor(
    workspace: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: two devices, one of which bought; then both are identified as one person
    source = profile_services.source_create(workspace=workspace, name="Web")
    audience = services.audience_create(
        workspace=workspace, key="buyers", name="Buyers", rules=BUYERS
    )
    orders = services.computed_trait_create(
        workspace=workspace, key="orders", name="Orders", kind=ComputedTraitKind.COUNT,
        event_name="Order Completed",
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        profile_services.ingest_messages(
            source=source, messages=[msg(anonymous_id="phone", name="Page Viewed")]
        )
        bought = profile_services.ingest_messages(
            source=source, messages=[msg(anonymous_id="laptop", name="Order Completed")]
        )
        profile_services.ingest_messages(
            source=source, messages=[msg("identify", user_id="u-1", anonymous_id="phone")]
        )
    services.audience_refresh(audience=audience)
    services.computed_trait_recompute(trait=orders)
    laptop = bought.profile_ids[0]
    assert member_ids(audience) == {laptop}

    # when
    with django_capture_on_commit_callbacks(execute=True):
        outcome = profile_services.ingest_messages(
            source=source, messages=[msg("identify", user_id="u-1", anonymous_id="laptop")]
        )

    # then: whichever profile survived, it alone is a member, and the absorbed one left
    assert outcome.merges == 1
    [survivor] = Profile.objects.filter(workspace=workspace, status="active")
    assert member_ids(audience) == {survivor.pk}
    assert dict(
        ComputedTraitValue.objects.filter(trait=orders).values_list("profile_id", "value")
    ) == {survivor.pk: 1}
    if survivor.pk != laptop:
        assert history(audience)[-2:] == [(laptop, "exited"), (survivor.pk, "entered")]


def test_scheduled_refresh_covers_every_active_audience(store: Store) -> None:
    # given
    ada = store.profile(plan="vip")
    store.events(ada, "Order Completed", [days_ago(1)])
    vips = services.audience_create(workspace=store.workspace, key="vips", name="VIPs", rules=VIP)
    buyers = services.audience_create(workspace=store.workspace, key="b", name="B", rules=BUYERS)
    archived = services.audience_create(workspace=store.workspace, key="old", name="Old", rules=VIP)
    services.audience_update(audience=archived, status=AudienceStatus.ARCHIVED)

    # when
    result = tasks.audiences_refresh_all.delay().get()

    # then
    assert result == {"queued": 2}
    assert member_ids(vips) == {ada.pk}
    assert member_ids(buyers) == {ada.pk}
    assert member_ids(archived) == set()


def test_an_audience_whose_rules_broke_is_skipped_by_the_realtime_refresh(store: Store) -> None:
    # given: a realtime audience naming a stage, and the stage deleted since
    ada = store.profile(plan="vip")
    services.audience_create(
        workspace=store.workspace,
        key="new",
        name="New",
        rules={"lifecycle": "new_visitor"},
        realtime=True,
    )
    good = services.audience_create(
        workspace=store.workspace, key="vips", name="V", rules=VIP, realtime=True
    )
    LifecycleStage.objects.filter(workspace=store.workspace, key="new_visitor").delete()

    # when
    deltas = services.audiences_refresh_for_profiles(
        workspace_id=store.workspace.pk, profile_ids=[ada.pk]
    )

    # then
    assert list(deltas) == ["vips"]
    assert member_ids(good) == {ada.pk}


def test_new_workspaces_get_the_default_lifecycle_stages(workspace: Any) -> None:
    # when
    keys = list(LifecycleStage.objects.filter(workspace=workspace).values_list("key", flat=True))

    # then
    assert keys == [
        "new_visitor", "first_time_buyer", "repeat_customer", "high_value", "churn_risk", "inactive"
    ]  # fmt: skip
    services.lifecycle_stages_ensure_defaults(workspace=workspace)
    assert LifecycleStage.objects.filter(workspace=workspace).count() == 6


def test_audiences_of_a_profile(store: Store) -> None:
    # given
    ada = store.profile(plan="vip")
    vips = services.audience_create(workspace=store.workspace, key="vips", name="VIPs", rules=VIP)
    services.audience_refresh(audience=vips)

    # when
    found = list(selectors.audiences_of_profile(workspace=store.workspace, profile_id=ada.pk))

    # then
    assert found == [vips]


def test_the_demo_seeds_traits_stages_and_audiences_once(store: Store) -> None:
    # given
    from activation.demo import AUDIENCES, COMPUTED_TRAITS, demo_seed

    vip = store.profile(plan="vip")
    store.event(vip, "Order Completed", days_ago(1), revenue=400)
    store.event(vip, "Order Completed", days_ago(2), revenue=20)

    # when
    first = demo_seed(workspace=store.workspace)
    again = demo_seed(workspace=store.workspace)

    # then
    assert first == again
    assert len(first) == len(COMPUTED_TRAITS) + len(AUDIENCES)
    assert "Computed trait lifetime_value: a value for 1 profiles" in first
    assert "Audience valuable_vips: 1 members" in first
    assert "Audience repeat_customers: 1 members" in first
    assert Audience.objects.get(workspace=store.workspace, key="premium_browsers").realtime
