"""The demo's removal (called by `manage.py seed_demo` after the destinations were synced): a
customer the newsletter sync sent withdraws marketing email in the preference centre. The
consent hook queues a removal to the newsletter tool in the same transaction and, without a
broker, the removal task sends it once that commits: a removal file under
CDP_EXPORT_DIR/demo-store/ and a delivery-ledger row (action remove). With a broker, the next
removal task or sync run sends it.

The customer is one of the demo's own (CUSTOMER; `collect.demo` loads her through the web store
beforehand, accepting every category of the banner). Idempotent: once she has a removal, or
has withdrawn already, nothing is done again."""

from __future__ import annotations

from typing import Any

from activation import ledger
from activation.demo_destinations import DESTINATIONS
from activation.enums import DeliveryAction
from activation.models import Delivery, Destination, Removal
from consent import services as consent_services
from profiles import selectors as profile_selectors

CUSTOMER: dict[str, str] = {
    "user_id": "cust-9000102",
    "email": "nora.haddad@example.com",
    "phone": "+16285550102",
    "first_name": "Nora",
    "last_name": "Haddad",
    "country": "NL",
}
PURPOSE = "marketing_email"
NEWSLETTER = DESTINATIONS[0]["name"]


def demo_removals_seed(*, workspace: Any) -> list[str]:
    """Withdraw the customer's marketing email consent as the preference centre does; one line
    saying what the destination was told."""
    name = f"{CUSTOMER['first_name']} {CUSTOMER['last_name']}"
    destination = Destination.objects.filter(workspace=workspace, name=NEWSLETTER).first()
    profile = profile_selectors.profile_find_by_identifier(
        workspace=workspace, identifier_type="email", value=CUSTOMER["email"]
    )
    if destination is None or profile is None:
        return [f"Removal: no {NEWSLETTER!r} destination or no {name}: nothing to take back"]
    profile = profile_selectors.profile_get(workspace=workspace, profile_id=profile.pk)
    if Removal.objects.filter(destination=destination, profile_id=profile.pk).exists():
        return []
    held = ledger.holdings(
        workspace_id=workspace.pk, profile_ids=[profile.pk], destination_ids=[destination.pk]
    )
    if not held:
        return [f"Removal: {name} was not sent to {NEWSLETTER!r}: nothing to take back"]
    consent_services.preference_centre_save(
        workspace=workspace,
        profile=profile,
        choices={PURPOSE: False},
        page_url="https://shop.example.com/account/preferences",
    )
    removal = (
        Removal.objects.filter(destination=destination, profile_id=profile.pk)
        .order_by("-created_at")
        .first()
    )
    if removal is None:
        return [f"Removal: {name} withdrew {PURPOSE}, but no removal was owed"]
    recorded = Delivery.objects.filter(
        destination=destination, profile_id=profile.pk, action=DeliveryAction.REMOVE
    ).exists()
    return [
        f"Removal: {name} withdrew {PURPOSE} in the preference centre: removal "
        f"{removal.get_status_display().lower()} to {NEWSLETTER!r}"
        + (" (delivery ledger: a remove row)" if recorded else "")
        + " (admin: Activation > Removals, Deliveries)"
    ]
