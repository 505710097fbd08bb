"""Reads of the delivery ledger: who a destination holds (per the ledger), the ledger search,
and "why was this person sent there?"."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connection
from django.db.models import Count, QuerySet

from activation.enums import DeliveryAction, DeliveryStatus
from activation.models import AudienceMembership, Delivery, MembershipChange
from cdp.core.exceptions import NotFound
from consent import selectors as consent_selectors

# (destination id, audience id or None, profile id)
Holding = tuple[Any, Any, Any]


def _holds(action: str, status: str) -> bool:
    """Whether a destination may hold the person after this last ledger row: an add (even a
    failed or dead one: it may have arrived), or a removal that did not go through."""
    return action == DeliveryAction.ADD or status != DeliveryStatus.DELIVERED


def _holds_surely(action: str, status: str) -> bool:
    """Whether the destination is known to hold the person after this last ledger row: an
    add it acknowledged (a dead-lettered add, or one written ahead and never confirmed,
    may not have arrived)."""
    return action == DeliveryAction.ADD and status == DeliveryStatus.DELIVERED


def _undelivered_add(action: str, status: str) -> bool:
    return action == DeliveryAction.ADD and status != DeliveryStatus.DELIVERED


def _last_rows(rows: QuerySet[Delivery], keep: Callable[[str, str], bool]) -> set[Holding]:
    """The (destination, audience, profile) groups of `rows` whose last row passes `keep`."""
    return _last_rows_split(rows, keep)[0]


def _last_rows_split(
    rows: QuerySet[Delivery], *keeps: Callable[[str, str], bool]
) -> tuple[set[Holding], ...]:
    """For each of `keeps`, the groups of `rows` whose last row passes it, from one read of
    the rows: a caller that needs several sets of one chunk does not query it again."""
    group = ("destination_id", "audience_id", "profile_id")
    fields = (*group, "action", "status")
    if connection.vendor == "postgresql":
        # DISTINCT ON: one row per group, the last by id (UUIDv7 ids follow creation order).
        last = list(rows.order_by(*group, "-id").distinct(*group).values_list(*fields))
    else:
        latest: dict[Holding, tuple[str, str]] = {}
        for d, a, p, action, status in rows.order_by("id").values_list(*fields):
            latest[(d, a, p)] = (action, status)
        last = [(d, a, p, action, status) for (d, a, p), (action, status) in latest.items()]
    return tuple(
        {(d, a, p) for d, a, p, action, status in last if keep(action, status)} for keep in keeps
    )


def _ledger_rows(
    *,
    workspace_id: Any,
    profile_ids: Iterable[Any] | None,
    destination_ids: Iterable[Any] | None,
    audience_id: Any,
    by_audience: bool,
) -> QuerySet[Delivery]:
    rows = Delivery.objects.filter(workspace_id=workspace_id)
    if profile_ids is not None:
        rows = rows.filter(profile_id__in=list(profile_ids))
    if destination_ids is not None:
        rows = rows.filter(destination_id__in=list(destination_ids))
    if audience_id is not None and by_audience:
        rows = rows.filter(audience_id=audience_id)
    return rows


def holdings(
    *,
    workspace_id: Any,
    profile_ids: Iterable[Any] | None = None,
    destination_ids: Iterable[Any] | None = None,
    audience_id: Any = None,
    by_audience: bool = True,
    delivered_only: bool = False,
) -> set[Holding]:
    """The (destination, audience, profile) triples whose last ledger row says the destination
    may hold the person, among the given profiles / destinations / audience. Removals are
    owed against this conservative set. With `delivered_only`, only those it surely holds
    (the last row is a delivered add): additions are planned against that set, so that an add
    that did not arrive is sent again."""
    rows = _ledger_rows(
        workspace_id=workspace_id,
        profile_ids=profile_ids,
        destination_ids=destination_ids,
        audience_id=audience_id,
        by_audience=by_audience,
    )
    return _last_rows(rows, _holds_surely if delivered_only else _holds)


def holdings_split(
    *,
    workspace_id: Any,
    profile_ids: Iterable[Any] | None = None,
    destination_ids: Iterable[Any] | None = None,
    audience_id: Any = None,
    by_audience: bool = True,
) -> tuple[set[Holding], set[Holding]]:
    """`holdings` and `holdings(delivered_only=True)` from one read of the ledger: (may hold,
    surely holds). A sync plans its removals by the first and its additions by the second,
    chunk by chunk, and both come from the same last rows."""
    rows = _ledger_rows(
        workspace_id=workspace_id,
        profile_ids=profile_ids,
        destination_ids=destination_ids,
        audience_id=audience_id,
        by_audience=by_audience,
    )
    may, surely = _last_rows_split(rows, _holds, _holds_surely)
    return may, surely


def adds_undelivered(
    *, workspace_id: Any, destination_id: Any, audience_id: Any, max_dead: int | None = None
) -> set[Any]:
    """The profiles whose last ledger row for this destination and audience is an add that
    was not delivered: dead-lettered, or written ahead by a run that never confirmed it. With
    `max_dead`, not those with that many dead-lettered adds already (a record the destination
    keeps refusing is not sent again and again)."""
    rows = Delivery.objects.filter(
        workspace_id=workspace_id, destination_id=destination_id, audience_id=audience_id
    )
    # Read through the partial index `delivery_add_undelivered`: a few rows among every add
    # the destination received.
    candidates = (
        rows.filter(action=DeliveryAction.ADD)
        .exclude(status=DeliveryStatus.DELIVERED)
        .values("profile_id")
    )
    last = _last_rows(rows.filter(profile_id__in=candidates), _undelivered_add)
    found = {p for _d, _a, p in last}
    if max_dead is not None and found:
        found -= adds_given_up(
            workspace_id=workspace_id,
            destination_id=destination_id,
            audience_id=audience_id,
            profile_ids=found,
            max_dead=max_dead,
        )
    return found


def adds_given_up(
    *,
    workspace_id: Any,
    destination_id: Any,
    audience_id: Any,
    profile_ids: Iterable[Any],
    max_dead: int,
) -> set[Any]:
    """Those of `profile_ids` with `max_dead` dead-lettered adds or more for this destination
    and audience: incremental runs stop sending them (CDP_SYNC_MAX_RESENDS), whatever made
    them due again (a failed add, a consent granted again); a full run still sends them."""
    ids = list(profile_ids)
    given_up: set[Any] = set()
    # In chunks: after a receiver outage the undelivered adds of one destination number tens
    # of thousands, past what one statement may list on SQLite (32,766 parameters).
    for start in range(0, len(ids), GIVEN_UP_CHUNK):
        given_up.update(
            Delivery.objects.filter(
                workspace_id=workspace_id,
                destination_id=destination_id,
                audience_id=audience_id,
                action=DeliveryAction.ADD,
                status=DeliveryStatus.DEAD,
                profile_id__in=ids[start : start + GIVEN_UP_CHUNK],
            )
            .values("profile_id")
            .annotate(dead=Count("id"))
            .filter(dead__gte=max_dead)
            .values_list("profile_id", flat=True)
        )
    return given_up


GIVEN_UP_CHUNK = 5000


def delivery_search(
    *,
    workspace: Any,
    profile_id: Any = None,
    destination: Any = None,
    audience: Any = None,
) -> QuerySet[Delivery]:
    """The delivery ledger of a workspace, newest first, narrowed to a profile, destination or
    audience when given."""
    rows = Delivery.objects.filter(workspace=workspace).select_related("destination", "audience")
    if profile_id is not None:
        rows = rows.filter(profile_id=profile_id)
    if destination is not None:
        rows = rows.filter(destination=destination)
    if audience is not None:
        rows = rows.filter(audience=audience)
    return rows.order_by("-delivered_at", "-id")


def _at(value: Any) -> str | None:
    return value.isoformat() if value else None


def delivery_explain(*, workspace: Any, delivery: Delivery) -> dict[str, Any]:
    """Why this person was sent to (or removed from) this destination: the audience and its
    rules, the person's membership history in it, the destination's purposes, what allowed
    each purpose at send time (the consent record with its time and evidence, or the legal
    basis), and the hash of the exact payload. Names no identifier value."""
    if delivery.workspace_id != workspace.pk:
        raise NotFound("No such delivery.", code="delivery_not_found")
    destination = delivery.destination
    audience = delivery.audience
    basis = dict(delivery.basis or {})
    record_ids = [value for value in basis.values() if _looks_like_id(value)]
    records = {
        str(r["id"]): r
        for r in consent_selectors.consent_records_describe(
            workspace=workspace, record_ids=record_ids
        )
    }
    purposes: list[dict[str, Any]] = []
    for purpose in destination.purposes.all().order_by("key"):
        value = basis.get(purpose.key)
        entry: dict[str, Any] = {
            "purpose": purpose.key,
            "name": purpose.name,
            "legal_basis": purpose.legal_basis,
            "basis": value,
            "consent_record": records.get(str(value)) if value else None,
        }
        purposes.append(entry)
    history: list[dict[str, Any]] = []
    membership = None
    if audience is not None:
        history = [
            {"change": change, "at": _at(at)}
            for change, at in MembershipChange.objects.filter(
                audience=audience, profile_id=delivery.profile_id
            )
            .order_by("id")
            .values_list("change", "at")
        ]
        entered = (
            AudienceMembership.objects.filter(audience=audience, profile_id=delivery.profile_id)
            .values_list("entered_at", flat=True)
            .first()
        )
        membership = {"member_now": entered is not None, "entered_at": _at(entered)}
    return {
        "delivery": str(delivery.pk),
        "profile": str(delivery.profile_id),
        "action": delivery.action,
        "status": delivery.status,
        "delivered_at": _at(delivery.delivered_at),
        "payload_sha256": delivery.payload_sha256,
        "sync_run": str(delivery.sync_run_id) if delivery.sync_run_id else None,
        "destination": {
            "id": str(destination.pk),
            "name": destination.name,
            "kind": destination.kind,
            "data": destination.data,
        },
        "audience": (
            {
                "id": audience.pk,
                "key": audience.key,
                "name": audience.name,
                "rules": audience.rules,
            }
            if audience is not None
            else None
        ),
        "membership": membership,
        "membership_history": history,
        "purposes": purposes,
        "basis": basis,
    }


def _looks_like_id(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except (ValueError, TypeError):
        return False
    return True
