"""The audience rule language, condition by condition, on hand-built event histories."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from activation import selectors, services
from activation.enums import ComputedTraitKind
from activation.models import ComputedTrait, ComputedTraitValue
from activation.rules import profiles_matching
from profiles.enums import ProfileStatus
from tests.activation.rule_helpers import AT, Store, classify, days_ago

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(workspace: Any) -> Store:
    classify(workspace, "tags", "score", "renewal", "vip")
    return Store(workspace)


def members(store: Store, rules: dict[str, Any], at: Any = AT) -> set[Any]:
    return set(
        profiles_matching(workspace=store.workspace, rules=rules, at=at).values_list(
            "pk", flat=True
        )
    )


# --- attribute traits ---------------------------------------------------------------------


def test_trait_operators_compare_by_type(store: Store) -> None:
    # given
    vip = store.profile(plan="vip", score=90, tags=["eu", "beta"], country="DE")
    member = store.profile(plan="member", score=40, tags=["us"], country="US")
    text_score = store.profile(plan="VIP", score="90")  # a string, not a number
    bare = store.profile()

    # when / then
    assert members(store, {"trait": {"key": "plan", "op": "=", "value": "vip"}}) == {vip.pk}
    assert members(store, {"trait": {"key": "plan", "op": "!=", "value": "vip"}}) == {
        member.pk,
        text_score.pk,
    }
    assert members(store, {"trait": {"key": "score", "op": ">", "value": 50}}) == {vip.pk}
    assert members(store, {"trait": {"key": "score", "op": "<", "value": 50}}) == {member.pk}
    assert members(store, {"trait": {"key": "score", "op": ">=", "value": 40}}) == {
        vip.pk,
        member.pk,
    }
    assert members(store, {"trait": {"key": "score", "op": "<=", "value": 40}}) == {member.pk}
    assert members(store, {"trait": {"key": "score", "op": "=", "value": 90}}) == {vip.pk}
    assert members(store, {"trait": {"key": "score", "op": "=", "value": "90"}}) == {text_score.pk}
    assert members(store, {"trait": {"key": "plan", "op": "in", "value": ["vip", "member"]}}) == {
        vip.pk,
        member.pk,
    }
    assert members(store, {"trait": {"key": "plan", "op": "not_in", "value": ["vip"]}}) == {
        member.pk,
        text_score.pk,
    }
    assert members(store, {"trait": {"key": "tags", "op": "exists"}}) == {vip.pk, member.pk}
    assert members(store, {"trait": {"key": "tags", "op": "not_exists"}}) == {
        text_score.pk,
        bare.pk,
    }
    assert members(store, {"trait": {"key": "tags", "op": "contains", "value": "beta"}}) == {vip.pk}
    assert members(store, {"trait": {"key": "plan", "op": "contains", "value": "IP"}}) == {
        vip.pk,
        text_score.pk,
    }


def test_a_number_past_64_bits_compares_without_a_server_error(store: Store) -> None:
    # given: SQLite binds integers as 64-bit; JSON keeps such a number as a real
    huge = store.profile(score=10**30)
    store.profile(score=90)

    # when / then
    assert members(store, {"trait": {"key": "score", "op": "=", "value": 10**30}}) == {huge.pk}
    assert members(store, {"trait": {"key": "score", "op": "in", "value": [10**30, 7]}}) == {
        huge.pk
    }
    assert members(store, {"trait": {"key": "score", "op": "contains", "value": 10**30}}) == set()


def test_not_of_a_trait_condition_includes_profiles_without_the_trait(store: Store) -> None:
    # given
    vip = store.profile(plan="vip")
    other = store.profile(plan="member")
    bare = store.profile()

    # when
    found = members(store, {"not": {"trait": {"key": "plan", "op": "=", "value": "vip"}}})

    # then
    assert found == {other.pk, bare.pk}
    assert vip.pk not in found


def test_trait_within_last_days_on_iso_dates_includes_the_edge(store: Store) -> None:
    # given
    edge = store.profile(renewal=days_ago(7).strftime("%Y-%m-%dT%H:%M:%SZ"))
    inside = store.profile(renewal=days_ago(2).date().isoformat())
    outside = store.profile(renewal=days_ago(7, seconds=1).strftime("%Y-%m-%dT%H:%M:%SZ"))
    future = store.profile(renewal=(AT + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    not_a_date = store.profile(renewal=5)

    # when
    found = members(store, {"trait": {"key": "renewal", "op": "within_last_days", "value": 7}})

    # then
    assert found == {edge.pk, inside.pk}
    assert not found & {outside.pk, future.pk, not_a_date.pk}


def test_boolean_trait_equality_is_typed(store: Store) -> None:
    # given
    yes = store.profile(vip=True)
    no = store.profile(vip=False)
    text = store.profile(vip="true")

    # when / then
    assert members(store, {"trait": {"key": "vip", "op": "=", "value": True}}) == {yes.pk}
    assert members(store, {"trait": {"key": "vip", "op": "=", "value": False}}) == {no.pk}
    assert members(store, {"trait": {"key": "vip", "op": "=", "value": "true"}}) == {text.pk}


# --- computed traits and profile dates ------------------------------------------------------


def _computed(store: Store, key: str, kind: str, values: dict[Any, Any]) -> ComputedTrait:
    trait = ComputedTrait.objects.create(
        workspace=store.workspace, key=key, name=key, kind=kind, property="x"
    )
    for profile_id, value in values.items():
        number = float(value) if isinstance(value, int | float) else None
        ComputedTraitValue.objects.create(
            trait=trait,
            profile_id=profile_id,
            value=value,
            number=number,
            text=None if number is not None else value,
            updated_at=AT,
        )
    return trait


def test_computed_trait_conditions_treat_a_missing_count_as_zero(store: Store) -> None:
    # given
    none = store.profile()
    one = store.profile()
    three = store.profile()
    _computed(store, "orders", ComputedTraitKind.COUNT, {one.pk: 1, three.pk: 3})

    # when / then
    assert members(store, {"computed": {"key": "orders", "op": ">=", "value": 2}}) == {three.pk}
    assert members(store, {"computed": {"key": "orders", "op": "<", "value": 2}}) == {
        none.pk,
        one.pk,
    }
    assert members(store, {"computed": {"key": "orders", "op": "=", "value": 0}}) == {none.pk}
    assert members(store, {"computed": {"key": "orders", "op": "!=", "value": 1}}) == {
        none.pk,
        three.pk,
    }
    assert members(store, {"computed": {"key": "orders", "op": "in", "value": [0, 3]}}) == {
        none.pk,
        three.pk,
    }
    assert members(store, {"computed": {"key": "orders", "op": "exists"}}) == {one.pk, three.pk}


def test_computed_trait_conditions_on_text_values(store: Store) -> None:
    # given
    shoes = store.profile()
    bags = store.profile()
    none = store.profile()
    _computed(
        store, "favourite", ComputedTraitKind.MOST_FREQUENT, {shoes.pk: "Shoes", bags.pk: "bags"}
    )

    # when / then
    assert members(store, {"computed": {"key": "favourite", "op": "=", "value": "bags"}}) == {
        bags.pk
    }
    assert members(store, {"computed": {"key": "favourite", "op": "contains", "value": "sho"}}) == {
        shoes.pk
    }
    assert members(store, {"computed": {"key": "favourite", "op": "not_exists"}}) == {none.pk}


def test_profile_dates(store: Store) -> None:
    # given
    fresh = store.profile(seen=days_ago(1), first_seen=days_ago(3))
    old = store.profile(seen=days_ago(200), first_seen=days_ago(400))
    never = store.profile(seen=None)

    # when / then
    rules = {"profile": {"field": "last_seen_at", "op": "within_last_days", "value": 30}}
    assert members(store, rules) == {fresh.pk}
    assert members(store, {"not": rules}) == {old.pk, never.pk}
    assert members(store, {"profile": {"field": "last_seen_at", "op": "not_exists"}}) == {never.pk}
    before = days_ago(300).date().isoformat()
    assert members(store, {"profile": {"field": "first_seen_at", "op": "<", "value": before}}) == {
        old.pk
    }


# --- events -----------------------------------------------------------------------------


def test_event_count_window_edges(store: Store) -> None:
    # given: three views each, the oldest exactly on the window's edge or a second outside it
    on_edge = store.profile()
    store.events(on_edge, "Product Viewed", [days_ago(7), days_ago(3), days_ago(0)])
    just_out = store.profile()
    store.events(just_out, "Product Viewed", [days_ago(7, seconds=1), days_ago(3), days_ago(0)])
    future = store.profile()
    store.events(future, "Product Viewed", [days_ago(2), days_ago(1), AT + timedelta(seconds=1)])

    # when
    found = members(
        store,
        {
            "event": {
                "name": "Product Viewed",
                "count": {"op": ">=", "value": 3},
                "within_last_days": 7,
            }
        },
    )

    # then
    assert found == {on_edge.pk}


def test_event_count_operators(store: Store) -> None:
    # given
    zero = store.profile()
    one = store.profile()
    store.events(one, "Order Completed", [days_ago(1)])
    two = store.profile()
    store.events(two, "Order Completed", [days_ago(1), days_ago(2)])

    def count(op: str, value: int) -> set[Any]:
        return members(
            store, {"event": {"name": "Order Completed", "count": {"op": op, "value": value}}}
        )

    # when / then
    assert count(">=", 1) == {one.pk, two.pk}
    assert count(">=", 2) == {two.pk}
    assert count(">=", 0) == {zero.pk, one.pk, two.pk}
    assert count("<=", 1) == {zero.pk, one.pk}
    assert count("<=", 0) == {zero.pk}
    assert count("=", 1) == {one.pk}
    assert count("=", 0) == {zero.pk}
    assert count("=", 2) == {two.pk}


def test_event_did_not(store: Store) -> None:
    # given
    bought_recently = store.profile()
    store.events(bought_recently, "Order Completed", [days_ago(2)])
    bought_long_ago = store.profile()
    store.events(bought_long_ago, "Order Completed", [days_ago(30)])
    never = store.profile()

    # when
    rules = {"event": {"name": "Order Completed", "within_last_days": 7, "did_not": True}}

    # then
    assert members(store, rules) == {bought_long_ago.pk, never.pk}
    assert members(store, {"event": {"name": "Order Completed", "did_not": True}}) == {never.pk}


def test_event_between_dates_takes_whole_days(store: Store) -> None:
    # given
    first_day = store.profile()
    store.events(first_day, "Signed Up", [days_ago(10).replace(hour=0, minute=0, second=0)])
    last_day = store.profile()
    store.events(last_day, "Signed Up", [days_ago(5).replace(hour=23, minute=59, second=59)])
    after = store.profile()
    store.events(after, "Signed Up", [days_ago(4).replace(hour=0, minute=0, second=0)])

    # when
    between = {
        "from": days_ago(10).date().isoformat(),
        "to": days_ago(5).date().isoformat(),
    }
    found = members(store, {"event": {"name": "Signed Up", "between": between}})

    # then
    assert found == {first_day.pk, last_day.pk}


def test_event_property_filters(store: Store) -> None:
    # given
    premium = store.profile()
    store.event(premium, "Product Viewed", days_ago(1), premium=True, price=289.0, category="bags")
    cheap = store.profile()
    store.event(cheap, "Product Viewed", days_ago(1), premium=False, price=24.0, category="kitchen")
    text_price = store.profile()
    store.event(text_price, "Product Viewed", days_ago(1), price="289", category="Bags & more")

    def where(*filters: dict[str, Any]) -> set[Any]:
        return members(store, {"event": {"name": "Product Viewed", "where": list(filters)}})

    # when / then
    assert where({"property": "premium", "op": "=", "value": True}) == {premium.pk}
    assert where({"property": "premium", "op": "!=", "value": True}) == {cheap.pk}
    assert where({"property": "price", "op": ">", "value": 100}) == {premium.pk}
    assert where({"property": "price", "op": "<=", "value": 24}) == {cheap.pk}
    assert where({"property": "category", "op": "in", "value": ["bags", "kitchen"]}) == {
        premium.pk,
        cheap.pk,
    }
    assert where({"property": "category", "op": "contains", "value": "BAGS"}) == {
        premium.pk,
        text_price.pk,
    }
    assert where({"property": "premium", "op": "not_exists"}) == {text_price.pk}
    assert where(
        {"property": "premium", "op": "exists"}, {"property": "price", "op": ">=", "value": 100}
    ) == {premium.pk}


def test_event_aggregates(store: Store) -> None:
    # given
    big = store.profile()
    store.event(big, "Order Completed", days_ago(1), revenue=600)
    store.event(big, "Order Completed", days_ago(2), revenue=500.5)
    small = store.profile()
    store.event(small, "Order Completed", days_ago(1), revenue=20)
    store.event(small, "Order Completed", days_ago(2), revenue="lots")  # not a number: ignored
    old = store.profile()
    store.event(old, "Order Completed", days_ago(400), revenue=5000)

    def total(fn: str, op: str, value: float, **extra: Any) -> set[Any]:
        aggregate = {"fn": fn, "property": "revenue", "op": op, "value": value}
        return members(
            store, {"event": {"name": "Order Completed", "aggregate": aggregate, **extra}}
        )

    # when / then
    assert total("sum", ">=", 1000) == {big.pk, old.pk}
    assert total("sum", ">=", 1000, within_last_days=365) == {big.pk}
    assert total("avg", ">", 500) == {big.pk, old.pk}
    assert total("min", "<", 100) == {small.pk}
    assert total("max", "=", 600) == {big.pk}
    assert total("sum", "!=", 20) == {big.pk, old.pk}
    assert total("sum", ">", 0, count={"op": ">=", "value": 2}) == {big.pk, small.pk}


def test_the_seeds_example_audience(store: Store) -> None:
    """ "Viewed premium products three times within seven days but did not purchase"."""
    # given
    target = store.profile()
    store.events(target, "Product Viewed", [days_ago(6), days_ago(4), days_ago(1)], premium=True)
    bought = store.profile()
    store.events(bought, "Product Viewed", [days_ago(6), days_ago(4), days_ago(1)], premium=True)
    store.event(bought, "Order Completed", days_ago(0.5), revenue=289)
    bought_before = store.profile()  # purchased, but before the week: still a target
    store.events(
        bought_before, "Product Viewed", [days_ago(5), days_ago(3), days_ago(2)], premium=True
    )
    store.event(bought_before, "Order Completed", days_ago(20), revenue=199)
    two_views = store.profile()
    store.events(two_views, "Product Viewed", [days_ago(4), days_ago(1)], premium=True)
    spread_out = store.profile()
    store.events(
        spread_out, "Product Viewed", [days_ago(9), days_ago(4), days_ago(1)], premium=True
    )
    not_premium = store.profile()
    store.events(
        not_premium, "Product Viewed", [days_ago(6), days_ago(4), days_ago(1)], premium=False
    )
    restricted = store.profile(restricted=True)
    store.events(
        restricted, "Product Viewed", [days_ago(6), days_ago(4), days_ago(1)], premium=True
    )

    # when
    found = members(store, SEED_EXAMPLE)

    # then
    assert found == {target.pk, bought_before.pk}


SEED_EXAMPLE = {
    "all": [
        {
            "event": {
                "name": "Product Viewed",
                "where": [{"property": "premium", "op": "=", "value": True}],
                "count": {"op": ">=", "value": 3},
                "within_last_days": 7,
            }
        },
        {"event": {"name": "Order Completed", "within_last_days": 7, "did_not": True}},
    ]
}


# --- sequences ---------------------------------------------------------------------------


def test_sequence_then_within_a_window(store: Store) -> None:
    # given
    in_time = store.profile()
    store.event(in_time, "Checkout Started", days_ago(3))
    store.event(in_time, "Order Completed", days_ago(3) + timedelta(hours=1))
    late = store.profile()
    store.event(late, "Checkout Started", days_ago(3))
    store.event(late, "Order Completed", days_ago(3) + timedelta(hours=1, seconds=1))
    wrong_order = store.profile()
    store.event(wrong_order, "Order Completed", days_ago(3))
    store.event(wrong_order, "Checkout Started", days_ago(3) + timedelta(minutes=5))

    # when
    rules = {
        "sequence": {
            "first": {"name": "Checkout Started"},
            "then": {"name": "Order Completed"},
            "within": {"hours": 1},
        }
    }

    # then
    assert members(store, rules) == {in_time.pk}


def test_sequence_not_followed_counts_only_closed_windows(store: Store) -> None:
    # given
    abandoned = store.profile()
    store.event(abandoned, "Product Added", days_ago(2), sku="a")
    completed = store.profile()
    store.event(completed, "Product Added", days_ago(2), sku="a")
    store.event(completed, "Order Completed", days_ago(2) + timedelta(minutes=30))
    completed_late = store.profile()
    store.event(completed_late, "Product Added", days_ago(2), sku="a")
    store.event(completed_late, "Order Completed", days_ago(1))
    still_open = store.profile()  # added 10 minutes ago: its hour has not passed
    store.event(still_open, "Product Added", AT - timedelta(minutes=10), sku="a")
    other_sku = store.profile()
    store.event(other_sku, "Product Added", days_ago(2), sku="b")

    # when
    rules = {
        "sequence": {
            "first": {
                "name": "Product Added",
                "where": [{"property": "sku", "op": "=", "value": "a"}],
            },
            "then": {"name": "Order Completed"},
            "within": {"hours": 1},
            "not_followed": True,
            "within_last_days": 7,
        }
    }

    # then
    assert members(store, rules) == {abandoned.pk, completed_late.pk}


# --- groups and references ----------------------------------------------------------------


def test_nested_groups(store: Store) -> None:
    # given
    de_vip = store.profile(plan="vip", country="DE")
    us_vip_buyer = store.profile(plan="vip", country="US")
    store.events(us_vip_buyer, "Order Completed", [days_ago(1)])
    us_vip = store.profile(plan="vip", country="US")
    de_member = store.profile(plan="member", country="DE")

    # when
    rules = {
        "all": [
            {"trait": {"key": "plan", "op": "=", "value": "vip"}},
            {
                "any": [
                    {"trait": {"key": "country", "op": "=", "value": "DE"}},
                    {"not": {"event": {"name": "Order Completed", "did_not": True}}},
                ]
            },
        ]
    }

    # then
    assert members(store, rules) == {de_vip.pk, us_vip_buyer.pk}
    assert members(store, {"not": rules}) == {us_vip.pk, de_member.pk}


def test_lifecycle_stages_resolve_the_workspaces_rules(store: Store) -> None:
    # given: the defaults seeded when the workspace was created
    once = store.profile(seen=days_ago(1), first_seen=days_ago(200))
    store.event(once, "Order Completed", days_ago(1), revenue=40)
    twice = store.profile(seen=days_ago(1), first_seen=days_ago(200))
    store.events(twice, "Order Completed", [days_ago(100), days_ago(95)], revenue=600)
    newcomer = store.profile(seen=days_ago(1), first_seen=days_ago(3))
    gone = store.profile(seen=days_ago(300), first_seen=days_ago(400))
    store.event(gone, "Order Completed", days_ago(300), revenue=10)

    # when / then
    assert members(store, {"lifecycle": "first_time_buyer"}) == {once.pk, gone.pk}
    assert members(store, {"lifecycle": "repeat_customer"}) == {twice.pk}
    assert members(store, {"lifecycle": "high_value"}) == {twice.pk}
    assert members(store, {"lifecycle": "new_visitor"}) == {newcomer.pk}
    assert members(store, {"lifecycle": "inactive"}) == {gone.pk}
    assert members(store, {"lifecycle": "churn_risk"}) == {twice.pk}


def test_in_audience_compiles_the_other_audience_inline(store: Store) -> None:
    # given
    vip_buyer = store.profile(plan="vip")
    store.events(vip_buyer, "Order Completed", [days_ago(1)])
    vip = store.profile(plan="vip")
    services.audience_create(
        workspace=store.workspace,
        key="vips",
        name="VIPs",
        rules={"trait": {"key": "plan", "op": "=", "value": "vip"}},
    )

    # when
    rules = {"all": [{"in_audience": "vips"}, {"event": {"name": "Order Completed"}}]}

    # then
    assert members(store, rules) == {vip_buyer.pk}
    assert members(store, {"not": {"in_audience": "vips"}}) == set()
    assert vip.pk in members(store, {"in_audience": "vips"})


def test_restricted_and_merged_profiles_never_match(store: Store) -> None:
    # given
    active = store.profile(plan="vip")
    restricted = store.profile(plan="vip", restricted=True)
    merged = store.profile(plan="vip")
    merged.status = ProfileStatus.MERGED
    merged.merged_into = active
    merged.save()

    # when
    found = members(store, {"trait": {"key": "plan", "op": "=", "value": "vip"}})

    # then
    assert found == {active.pk}
    assert not found & {restricted.pk, merged.pk}


def test_an_audience_is_one_sql_query(store: Store) -> None:
    # given
    profile = store.profile(plan="vip")
    store.events(profile, "Product Viewed", [days_ago(1), days_ago(2), days_ago(3)], premium=True)
    services.audience_create(
        workspace=store.workspace,
        key="vips",
        name="VIPs",
        rules={"trait": {"key": "plan", "op": "=", "value": "vip"}},
    )
    rules = {
        "all": [
            SEED_EXAMPLE,
            {"in_audience": "vips"},
            {"lifecycle": "new_visitor"},
            {
                "sequence": {
                    "first": {"name": "a"},
                    "then": {"name": "b"},
                    "within": {"days": 1},
                    "not_followed": True,
                }
            },
        ]
    }
    query = profiles_matching(workspace=store.workspace, rules=rules, at=AT)

    # when
    with CaptureQueriesContext(connection) as queries:
        list(query.values_list("pk", flat=True))

    # then
    assert len(queries) == 1


def test_preview_counts_and_samples(store: Store) -> None:
    # given
    vips = [store.profile(plan="vip") for _ in range(3)]
    store.profile(plan="member")

    # when
    preview = selectors.audience_preview(
        workspace=store.workspace,
        rules={"trait": {"key": "plan", "op": "=", "value": "vip"}},
        sample=2,
    )

    # then
    assert preview.count == 3
    assert len(preview.sample_profile_ids) == 2
    assert set(preview.sample_profile_ids) <= {p.pk for p in vips}


def test_rules_are_scoped_to_the_workspace(store: Store, other_workspace: Any) -> None:
    # given
    mine = store.profile(plan="vip")
    store.events(mine, "Order Completed", [days_ago(1)])
    theirs = Store(other_workspace)
    other = theirs.profile(plan="vip")
    theirs.events(other, "Order Completed", [days_ago(1)])

    # when
    found = members(store, {"event": {"name": "Order Completed"}})

    # then
    assert found == {mine.pk}


def test_a_compiled_audience_nests_in_another_query(store: Store) -> None:
    # given: a grouped count, a correlated EXISTS and a trait test, used as a subquery
    from profiles.models import Profile

    ada = store.profile(plan="vip")
    store.events(ada, "Product Viewed", [days_ago(1), days_ago(2), days_ago(3)], premium=True)
    ben = store.profile(plan="vip")
    store.events(ben, "Product Viewed", [days_ago(1)], premium=True)
    rules = {"all": [SEED_EXAMPLE, {"trait": {"key": "plan", "op": "=", "value": "vip"}}]}
    inner = profiles_matching(workspace=store.workspace, rules=rules, at=AT).values("pk")

    # when
    outer = Profile.objects.filter(pk__in=inner).exclude(pk=ben.pk)

    # then
    assert list(outer.values_list("pk", flat=True)) == [ada.pk]
