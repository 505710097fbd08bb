"""Computed traits of each kind, with windows and filters, full and incremental."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from activation import selectors, services
from activation.enums import ComputedTraitKind as Kind
from activation.exceptions import ComputedTraitInvalid, ComputedTraitKeyTaken
from activation.models import ComputedTrait, ComputedTraitValue
from tests.activation.rule_helpers import Store

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(workspace: Any) -> Store:
    return Store(workspace)


def ago(days: float) -> Any:
    return timezone.now() - timedelta(days=days)


def values(trait: ComputedTrait) -> dict[Any, Any]:
    return dict(ComputedTraitValue.objects.filter(trait=trait).values_list("profile_id", "value"))


def create(store: Store, key: str, kind: str, **fields: Any) -> ComputedTrait:
    return services.computed_trait_create(
        workspace=store.workspace, key=key, name=key, kind=kind, **fields
    )


@pytest.fixture
def shoppers(store: Store) -> dict[str, Any]:
    ada = store.profile()
    store.event(ada, "Order Completed", ago(40), revenue=100, currency="EUR", category="bags")
    store.event(ada, "Order Completed", ago(10), revenue=50.5, currency="EUR", category="home")
    store.event(ada, "Order Completed", ago(2), revenue=20, currency="USD", category="home")
    store.event(ada, "Product Viewed", ago(1), category="bags")
    ben = store.profile()
    store.event(ben, "Order Completed", ago(5), revenue="n/a", category="office")
    store.event(ben, "Product Viewed", ago(3), category="office")
    idle = store.profile()
    return {"ada": ada, "ben": ben, "idle": idle}


def test_count_with_and_without_window_and_filter(store: Store, shoppers: dict[str, Any]) -> None:
    # when
    orders = create(store, "orders", Kind.COUNT, event_name="Order Completed")
    recent = create(
        store, "recent_orders", Kind.COUNT, event_name="Order Completed", window_days=30
    )
    euro = create(
        store,
        "euro_orders",
        Kind.COUNT,
        event_name="Order Completed",
        event_filter=[{"property": "currency", "op": "=", "value": "EUR"}],
    )
    everything = create(store, "events", Kind.COUNT)

    # then: profiles without matching events hold no row (their count is 0)
    ada, ben = shoppers["ada"].pk, shoppers["ben"].pk
    assert values(orders) == {ada: 3, ben: 1}
    assert values(recent) == {ada: 2, ben: 1}
    assert values(euro) == {ada: 2}
    assert values(everything) == {ada: 4, ben: 2}
    row = ComputedTraitValue.objects.get(trait=orders, profile_id=ada)
    assert (row.number, row.text) == (3.0, None)


def test_numeric_aggregates_skip_values_that_are_not_numbers(
    store: Store, shoppers: dict[str, Any]
) -> None:
    # when
    made = {
        kind: create(
            store, f"revenue_{kind}", kind, event_name="Order Completed", property="revenue"
        )
        for kind in (Kind.SUM, Kind.AVG, Kind.MIN, Kind.MAX)
    }
    windowed = create(
        store,
        "revenue_30d",
        Kind.SUM,
        event_name="Order Completed",
        property="revenue",
        window_days=30,
    )

    # then: ben's only revenue is "n/a", so he has no value (and no sum row)
    ada = shoppers["ada"].pk
    assert values(made[Kind.SUM]) == {ada: 170.5}
    assert values(made[Kind.AVG]) == {ada: pytest.approx(170.5 / 3)}
    assert values(made[Kind.MIN]) == {ada: 20}
    assert values(made[Kind.MAX]) == {ada: 100}
    assert values(windowed) == {ada: 70.5}


def test_first_last_most_frequent_and_unique_count(store: Store, shoppers: dict[str, Any]) -> None:
    # when
    first = create(store, "first_category", Kind.FIRST, property="category")
    last = create(store, "last_category", Kind.LAST, property="category")
    last_order = create(
        store, "last_currency", Kind.LAST, event_name="Order Completed", property="currency"
    )
    favourite = create(store, "favourite", Kind.MOST_FREQUENT, property="category")
    distinct = create(store, "categories", Kind.UNIQUE_COUNT, property="category")
    last_revenue = create(
        store, "last_revenue", Kind.LAST, event_name="Order Completed", property="revenue"
    )

    # then
    ada, ben = shoppers["ada"].pk, shoppers["ben"].pk
    assert values(first) == {ada: "bags", ben: "office"}
    assert values(last) == {ada: "bags", ben: "office"}
    assert values(last_order) == {ada: "USD"}
    # ada: bags twice, home twice: the tie goes to the alphabetically first
    assert values(favourite) == {ada: "bags", ben: "office"}
    assert values(distinct) == {ada: 2, ben: 1}
    assert values(last_revenue) == {ada: 20, ben: "n/a"}
    row = ComputedTraitValue.objects.get(trait=last_revenue, profile_id=ben)
    assert (row.number, row.text) == (None, "n/a")


def test_first_and_last_keep_the_json_type(store: Store) -> None:
    # given
    profile = store.profile()
    store.event(profile, "Flag", ago(2), on=True, size=1.5)
    store.event(profile, "Flag", ago(1), on=False, size=2)

    # when
    first_on = create(store, "first_on", Kind.FIRST, property="on")
    last_on = create(store, "last_on", Kind.LAST, property="on")
    last_size = create(store, "last_size", Kind.LAST, property="size")
    first_size = create(store, "first_size", Kind.FIRST, property="size")

    # then
    assert values(first_on) == {profile.pk: True}
    assert values(last_on) == {profile.pk: False}
    assert values(last_size) == {profile.pk: 2}
    assert values(first_size) == {profile.pk: 1.5}


def test_a_personal_data_property_cannot_be_aggregated(store: Store) -> None:
    # when / then: email is always sealed; "name" too; a bad filter names its part
    with pytest.raises(ComputedTraitInvalid) as caught:
        create(store, "emails", Kind.UNIQUE_COUNT, property="email")
    assert caught.value.field == "property"
    assert "personal data" in caught.value.message
    with pytest.raises(ComputedTraitInvalid) as caught:
        create(
            store,
            "named",
            Kind.COUNT,
            event_filter=[{"property": "name", "op": "exists"}],
        )
    assert caught.value.field == "event_filter"
    assert caught.value.message.startswith("/0/property: ")
    with pytest.raises(ComputedTraitInvalid) as caught:
        create(store, "broken", Kind.COUNT, event_filter=[{"property": "x", "op": "nope"}])
    assert caught.value.message.startswith("/0/op: ")
    assert not ComputedTrait.objects.filter(workspace=store.workspace).exists()


def test_definition_checks(store: Store) -> None:
    # when / then
    with pytest.raises(ComputedTraitInvalid) as caught:
        create(store, "total", Kind.SUM)
    assert caught.value.field == "property"
    with pytest.raises(ComputedTraitInvalid) as caught:
        create(store, "count", Kind.COUNT, property="revenue")
    assert caught.value.field == "property"
    with pytest.raises(ComputedTraitInvalid) as caught:
        create(store, "w", Kind.COUNT, window_days=0)
    assert caught.value.field == "window_days"
    for bad in ("bad key", "trailing\n"):  # a newline once passed a "$"-anchored pattern
        with pytest.raises(ComputedTraitInvalid) as caught:
            create(store, bad, Kind.COUNT)
        assert caught.value.field == "key"
    create(store, "orders", Kind.COUNT)
    with pytest.raises(ComputedTraitKeyTaken):
        create(store, "orders", Kind.COUNT)


def test_incremental_update_touches_only_the_given_profiles(
    store: Store, shoppers: dict[str, Any]
) -> None:
    # given
    orders = create(store, "orders", Kind.COUNT, event_name="Order Completed")
    ada, ben, idle = shoppers["ada"], shoppers["ben"], shoppers["idle"]
    store.event(ben, "Order Completed", ago(0.1), revenue=5)
    store.event(idle, "Order Completed", ago(0.1), revenue=5)
    store.event(ada, "Order Completed", ago(0.1), revenue=5)

    # when
    done = services.computed_traits_update(
        workspace_id=store.workspace.pk, profile_ids=[ben.pk, str(idle.pk)]
    )

    # then: ada was not touched, so her value waits for the next recompute
    assert values(orders) == {ada.pk: 3, ben.pk: 2, idle.pk: 1}
    assert (done.traits, done.values) == (1, 2)


def test_windowed_values_decay_on_recompute_and_zero_rows_go(store: Store) -> None:
    # given
    profile = store.profile()
    event = store.event(profile, "Order Completed", ago(5), revenue=10)
    recent = create(store, "recent", Kind.COUNT, event_name="Order Completed", window_days=7)
    assert values(recent) == {profile.pk: 1}

    # when: time passes (the event is now 8 days old)
    event.timestamp = ago(8)
    event.save()
    services.computed_trait_recompute(trait=recent)

    # then
    assert values(recent) == {}
    recent.refresh_from_db()
    assert recent.last_computed_at is not None


def test_update_recomputes_and_disabling_drops_the_values(
    store: Store, shoppers: dict[str, Any]
) -> None:
    # given
    orders = create(store, "orders", Kind.COUNT, event_name="Order Completed")

    # when
    services.computed_trait_update(trait=orders, window_days=30)

    # then
    assert values(orders) == {shoppers["ada"].pk: 2, shoppers["ben"].pk: 1}
    services.computed_trait_update(trait=orders, enabled=False)
    assert values(orders) == {}
    with pytest.raises(ComputedTraitInvalid):
        services.computed_trait_update(trait=orders, kind=Kind.SUM)


def test_values_are_read_per_profile_and_scoped(
    store: Store, shoppers: dict[str, Any], other_workspace: Any
) -> None:
    # given
    create(store, "orders", Kind.COUNT, event_name="Order Completed")
    create(store, "favourite", Kind.MOST_FREQUENT, property="category")

    # when
    mine = selectors.computed_values_for_profile(
        workspace=store.workspace, profile_id=shoppers["ada"].pk
    )
    theirs = selectors.computed_values_for_profile(
        workspace=other_workspace, profile_id=shoppers["ada"].pk
    )

    # then
    assert mine == {"favourite": "bags", "orders": 3}
    assert theirs == {}
