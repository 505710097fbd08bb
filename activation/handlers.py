"""The personal-data handler of activation (see cdp.core.registry): a person's audience
memberships and their history, computed trait values, the delivery ledger's rows about them,
the removals owed to destinations, and the marks a consent grant left for syncs to look at them
again (activation.regrants).

Erasure runs before the profiles handlers (erase_order 50): the removal each destination that
received the person is owed is queued first, its payload computed while the person's data can
still be decrypted, then the person's rows here are deleted. The ledger rows go too: they link
the profile, and what they prove about the platform (how many were sent, by which run) stays
in the sync runs' counts, which name no one. The queued removals stay (their profile link
cleared) until sent; then their keys are destroyed."""

from __future__ import annotations

from typing import Any

from activation import removals
from activation.enums import RemovalReason, RemovalStatus
from activation.models import (
    AudienceMembership,
    ComputedTraitValue,
    Delivery,
    MembershipChange,
    Removal,
    SyncRecheck,
)
from cdp.core.registry import DeletionRequest, ErasureReport, ErasureStatus, PersonalDataHandler
from profiles import selectors as profile_selectors

ERASE_ORDER = 50  # before the profiles handlers (100 and up): they destroy the keys


def _people(profile: Any) -> list[Any]:
    return [profile.pk, *profile_selectors.profile_absorbed_ids(profile=profile)]


def _at(value: Any) -> str | None:
    return value.isoformat() if value else None


def export_activation(profile: Any) -> dict[str, Any]:
    """Memberships with their history, computed trait values, deliveries (destination,
    audience, time, what allowed them), removals owed or made, and the syncs marked to look
    at the person again (a consent grant)."""
    people = _people(profile)
    return {
        "audience_memberships": [
            {"audience": key, "name": name, "entered_at": _at(entered)}
            for key, name, entered in AudienceMembership.objects.filter(profile_id__in=people)
            .order_by("entered_at", "pk")
            .values_list("audience__key", "audience__name", "entered_at")
        ],
        "audience_history": [
            {"audience": key, "change": change, "at": _at(at)}
            for key, change, at in MembershipChange.objects.filter(profile_id__in=people)
            .order_by("id")
            .values_list("audience__key", "change", "at")
        ],
        "computed_traits": [
            {"trait": key, "name": name, "value": value, "updated_at": _at(updated)}
            for key, name, value, updated in ComputedTraitValue.objects.filter(
                profile_id__in=people
            )
            .order_by("trait__key")
            .values_list("trait__key", "trait__name", "value", "updated_at")
        ],
        "deliveries": [
            {
                "destination": d.destination.name,
                "destination_kind": d.destination.kind,
                "audience": d.audience.key if d.audience else None,
                "action": d.action,
                "status": d.status,
                "delivered_at": _at(d.delivered_at),
                "basis": d.basis,
                "payload_sha256": d.payload_sha256,
            }
            for d in Delivery.objects.filter(profile_id__in=people)
            .select_related("destination", "audience")
            .order_by("delivered_at", "id")
        ],
        "removals": [
            {
                "destination": r.destination.name,
                "destination_kind": r.destination.kind,
                "audience": r.audience.key if r.audience else None,
                "reason": r.reason,
                "status": r.status,
                "created_at": _at(r.created_at),
                "sent_at": _at(r.sent_at),
            }
            for r in Removal.objects.filter(profile_id__in=people)
            .select_related("destination", "audience")
            .order_by("created_at", "id")
        ],
        "sync_rechecks": [
            {"audience": key, "destination": name, "created_at": _at(created)}
            for key, name, created in SyncRecheck.objects.filter(profile_id__in=people)
            .order_by("id")
            .values_list("sync__audience__key", "sync__destination__name", "created_at")
        ],
    }


def _status(statuses: set[str]) -> str:
    for status in (RemovalStatus.DEAD, RemovalStatus.FAILED, RemovalStatus.QUEUED):
        if status in statuses:
            return str(status)
    return str(RemovalStatus.SENT)


def erase_activation(profile: Any) -> ErasureReport:
    """Queue a removal (reason erasure) to every destination that received the person and is
    not owed one already, then delete the person's memberships, history, computed values and
    ledger rows; report each destination with the status of what it is owed."""
    people = _people(profile)
    queued = removals.removals_owed(
        workspace_id=profile.workspace_id,
        profile_ids=[profile.pk],
        reason=RemovalReason.ERASURE,
        check_gate=False,
    )
    owed = list(
        Removal.objects.filter(profile_id__in=people)
        .exclude(status=RemovalStatus.SENT)
        .select_related("destination")
        .order_by("destination__name", "created_at", "id")
    )
    by_destination: dict[Any, list[Removal]] = {}
    for removal in owed:
        by_destination.setdefault(removal.destination_id, []).append(removal)
    requests = []
    for group in by_destination.values():
        destination = group[0].destination
        errors = sorted({r.last_error for r in group if r.last_error})
        requests.append(
            DeletionRequest(
                recipient=destination.name,
                kind=destination.kind,
                status=_status({r.status for r in group}),
                requests=len(group),
                reference=",".join(str(r.pk) for r in group),
                detail=(
                    f"destination {destination.pk}; reasons: "
                    + ", ".join(sorted({r.reason for r in group}))
                    + (f"; errors: {', '.join(errors)}" if errors else "")
                ),
            )
        )
    memberships, _ = AudienceMembership.objects.filter(profile_id__in=people).delete()
    changes, _ = MembershipChange.objects.filter(profile_id__in=people).delete()
    computed, _ = ComputedTraitValue.objects.filter(profile_id__in=people).delete()
    deliveries, _ = Delivery.objects.filter(profile_id__in=people).delete()
    # A mark for a sync to look at the person again (a consent grant) would only name them.
    rechecks, _ = SyncRecheck.objects.filter(profile_id__in=people).delete()
    # Removals name no one once unlinked; the unsent ones still carry their sealed payload.
    unlinked = Removal.objects.filter(profile_id__in=people).update(profile=None)
    counts = {
        "memberships": memberships,
        "membership_changes": changes,
        "computed_trait_values": computed,
        "deliveries": deliveries,
        "sync_rechecks": rechecks,
        "removals_queued": len(queued),
        "removals_owed": len(owed),
        "removals_unlinked": unlinked,
    }
    found = memberships + changes + computed + deliveries + rechecks + unlinked
    return ErasureReport(
        store="activation",
        status=ErasureStatus.ERASED if found else ErasureStatus.NOTHING_FOUND,
        counts=counts,
        detail=(
            f"deletion requests owed to {len(requests)} destination(s)"
            if requests
            else "no destination holds the person according to the delivery ledger"
        ),
        deletion_requests=tuple(requests),
    )


ACTIVATION_HANDLER = PersonalDataHandler(
    name="activation",
    models=(
        "activation.AudienceMembership",
        "activation.MembershipChange",
        "activation.ComputedTraitValue",
        "activation.Delivery",
        "activation.Removal",
        "activation.SyncRecheck",
    ),
    export=export_activation,
    erase=erase_activation,
    erase_order=ERASE_ORDER,
)
