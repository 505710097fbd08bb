"""The demo store's named customers (called by `manage.py seed_demo` after the synthetic
traffic), sent through the collection path as the web store's SDK sends them: each browses,
signs in (an identify with the banner's consent: every category accepted), views a product and
leaves it in the cart, so that the newsletter and ad syncs send them.

- A household: Marta and Jonas Lindgren share the landline they give at sign-in, each with
  their own userId. A profile holds at most one userId, so Jonas' identify cannot merge into
  Marta's profile through the phone: the merge is refused and recorded as a merge conflict
  for stewards (collect.synthetic's phones repeat only every 10,000 shoppers, more than the
  demo has).
- The customers of the removal (activation.demo_removals) and of the data-subject requests
  (governance.demo), who are theirs so that erasing one leaves the rest of the demo alone.

Fictional people; emails on example.com, phones on the 628-555-01xx range. Idempotent: loads
nothing once Jonas has a profile."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from activation.demo_removals import CUSTOMER as REMOVAL_CUSTOMER
from collect import services
from governance.demo import CUSTOMERS as REQUEST_CUSTOMERS
from profiles import selectors as profile_selectors

HOUSEHOLD_PHONE = "+16285550100"
HOUSEHOLD: list[dict[str, str]] = [
    {"user_id": "cust-9000100", "email": "marta.lindgren@example.com", "phone": HOUSEHOLD_PHONE,
     "first_name": "Marta", "last_name": "Lindgren", "country": "SE"},
    {"user_id": "cust-9000101", "email": "jonas.lindgren@example.com", "phone": HOUSEHOLD_PHONE,
     "first_name": "Jonas", "last_name": "Lindgren", "country": "SE"},
]  # fmt: skip
BANNER = {
    "categoryPreferences": {
        "Analytics": True,
        "Personalization": True,
        "Marketing Email": True,
        "Advertising": True,
    }
}
PRODUCT = {"product_id": "sku-203", "name": "Premium Cashmere Throw", "category": "home",
           "price": 199.0}  # fmt: skip
DAYS_AGO = 6


def customers() -> list[dict[str, str]]:
    """Every named customer, in the order they first visit."""
    return [*HOUSEHOLD, REMOVAL_CUSTOMER, *REQUEST_CUSTOMERS.values()]


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def customer_messages(customer: dict[str, str], start: datetime) -> list[dict[str, Any]]:
    """One visit of a customer on their own device (ids derived from the userId, so the same on
    every run)."""
    user_id = customer["user_id"]
    device = str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://shop.example.com/devices/{user_id}"))
    traits = {k: v for k, v in customer.items() if k != "user_id"} | {"plan": "member"}
    steps: list[dict[str, Any]] = [
        {"type": "page", "name": "Home", "properties": {"title": "Home"}},
        {"type": "identify", "userId": user_id, "traits": traits},
        {"type": "track", "userId": user_id, "event": "Product Viewed",
         "properties": {**PRODUCT, "premium": True}},
        {"type": "track", "userId": user_id, "event": "Product Added",
         "properties": {**PRODUCT, "quantity": 1}},
    ]  # fmt: skip
    messages = []
    for n, step in enumerate(steps):
        context: dict[str, Any] = {"library": {"name": "analytics.js", "version": "next-1.70.0"}}
        if step["type"] == "identify":
            context["consent"] = BANNER
        messages.append(
            {
                **step,
                "messageId": f"demo-customer-{user_id}-{n}",
                "anonymousId": device,
                "timestamp": _iso(start + timedelta(minutes=2 * n)),
                "context": context,
            }
        )
    return messages


def demo_customers_seed(*, source: Any) -> list[str]:
    """Send the named customers' visits to `source` (the web store); lines to print."""
    workspace = source.workspace
    jonas = HOUSEHOLD[1]
    if profile_selectors.profile_find_by_identifier(
        workspace=workspace, identifier_type="user_id", value=jonas["user_id"]
    ):
        return []
    start = timezone.now() - timedelta(days=DAYS_AGO)
    people = customers()
    for n, customer in enumerate(people):
        # One request per visit, as the SDK sends them.
        services.collect_messages(
            source=source,
            payloads=customer_messages(customer, start + timedelta(hours=n)),
            request_meta=services.RequestMeta(received_at=timezone.now(), ip=None),
            enforce_rate_limit=False,
        )
    lines = [f"Named customers: {len(people)} signed in on {source.name!r} (their stories below)"]
    profile = profile_selectors.profile_find_by_identifier(
        workspace=workspace, identifier_type="user_id", value=jonas["user_id"]
    )
    if profile is not None:
        conflicts = profile_selectors.profile_conflicts(workspace=workspace, profile=profile)
        lines.append(
            f"Household: Marta and Jonas Lindgren share a phone, each with their own userId (1 "
            f"per profile): {conflicts.count()} merge conflict(s) recorded instead of a merge "
            "(admin: Profiles > Merge conflicts)"
        )
    return lines
