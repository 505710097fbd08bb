"""The demo store's computed traits, lifecycle stages and audiences (called at the end of
`manage.py seed_demo`), all refreshed so that the admin shows them filled. Idempotent: what
exists already is left as it is, and only refreshed."""

from __future__ import annotations

from typing import Any

from activation.audiences import audience_create
from activation.computed import computed_trait_create, computed_trait_recompute
from activation.enums import AudienceStatus, ComputedTraitKind
from activation.lifecycle import lifecycle_stages_ensure_defaults
from activation.membership import audience_refresh
from activation.models import Audience, ComputedTrait

ORDER = "Order Completed"
VIEW = "Product Viewed"

COMPUTED_TRAITS: list[dict[str, Any]] = [
    {"key": "orders_count", "name": "Orders", "kind": ComputedTraitKind.COUNT, "event_name": ORDER},
    {
        "key": "lifetime_value",
        "name": "Lifetime value",
        "kind": ComputedTraitKind.SUM,
        "event_name": ORDER,
        "property": "revenue",
    },
    {
        "key": "favourite_category",
        "name": "Most viewed category",
        "kind": ComputedTraitKind.MOST_FREQUENT,
        "event_name": VIEW,
        "property": "category",
        "window_days": 90,
    },
]

PREMIUM_VIEWS_7D = {
    "event": {
        "name": VIEW,
        "where": [{"property": "premium", "op": "=", "value": True}],
        "count": {"op": ">=", "value": 3},
        "within_last_days": 7,
    }
}

AUDIENCES: list[dict[str, Any]] = [
    {
        "key": "premium_browsers",
        "name": "Viewed premium products 3 times in 7 days, no purchase",
        "description": "The seed's example. Realtime: a shopper enters within seconds of the "
        "third premium view (the demo's history is older than a week, so it starts empty).",
        "realtime": True,
        "rules": {
            "all": [
                PREMIUM_VIEWS_7D,
                {"event": {"name": ORDER, "within_last_days": 7, "did_not": True}},
            ]
        },
    },
    {
        "key": "premium_browsers_30d",
        "name": "Viewed premium products 3 times in 30 days, no purchase",
        "description": "The seed's example over a month, which the demo's history fills.",
        "rules": {
            "all": [
                {"event": {**PREMIUM_VIEWS_7D["event"], "within_last_days": 30}},
                {"event": {"name": ORDER, "within_last_days": 30, "did_not": True}},
            ]
        },
    },
    {
        "key": "repeat_customers",
        "name": "Repeat customers",
        "rules": {"lifecycle": "repeat_customer"},
    },
    {
        "key": "valuable_vips",
        "name": "VIP plan, lifetime value over 300",
        "rules": {
            "all": [
                {"trait": {"key": "plan", "op": "=", "value": "vip"}},
                {"computed": {"key": "lifetime_value", "op": ">", "value": 300}},
            ]
        },
    },
    {
        "key": "cart_abandoners",
        "name": "Added to cart, no order within a day",
        "rules": {
            "sequence": {
                "first": {"name": "Product Added"},
                "then": {"name": ORDER},
                "within": {"days": 1},
                "not_followed": True,
            }
        },
    },
]


def demo_seed(*, workspace: Any) -> list[str]:
    """Create what is missing, recompute every computed trait and refresh every audience of
    the demo; returns one line per trait and audience for the command to print."""
    lifecycle_stages_ensure_defaults(workspace=workspace)
    lines = []
    for spec in COMPUTED_TRAITS:
        trait = ComputedTrait.objects.filter(workspace=workspace, key=spec["key"]).first()
        if trait is None:
            trait = computed_trait_create(workspace=workspace, compute=False, **spec)
        holders = computed_trait_recompute(trait=trait)
        lines.append(f"Computed trait {trait.key}: a value for {holders} profiles")
    for spec in AUDIENCES:
        audience = Audience.objects.filter(workspace=workspace, key=spec["key"]).first()
        if audience is None:
            audience = audience_create(workspace=workspace, **spec)
        if audience.status == AudienceStatus.ACTIVE:
            audience_refresh(audience=audience)
        lines.append(f"Audience {audience.key}: {audience.size} members")
    return lines
