"""Removals: taking a person back from the destinations that received them.

A removal is owed when consent for a destination's purpose is withdrawn or denied (reason
`consent_withdrawn`) or expires (`consent_expired`), when the person's processing is
restricted, when they leave an audience a destination holds them in, and when they are
erased. "Received" is read from the delivery ledger (`ledger.holdings`). A profile merged
into another is not taken back from an ad platform while its survivor may still be sent
there: the platform knows people by hashed identifiers, and those are the survivor's now.

What the destination needs to find the person (the hashed identifiers of an ad-platform row,
the ids of a webhook record) is computed when the removal is queued, while the person's data
is still readable (an erasure destroys their keys next), and sealed under a data key of the
removal's own, owned by no profile. Once the removal is sent that key is destroyed, so the
copy dies with it. Sending is retried with exponential backoff, then dead-lettered.

The consent and restriction hooks run inside the transaction that recorded the withdrawal or
the restriction, not after its commit: the decision and the removals it owes commit together,
so a crash in between cannot leave a withdrawal whose removal was never queued. The price is
that a failing hook fails the withdrawal (the caller retries); sending happens after the
commit, in the removal task, so no network call ever holds that transaction open. A sync
that raced the withdrawal (it read the consent before, wrote its ledger rows after the hook
looked) checks consent again right after each batch and queues what the hook could not see.

A person taken back for a refusal who grants consent again is sent again by the sync's next
run (activation.regrants): the grant only marks them.

Queued removals of a batch go out together: one signed `{"type": "remove"}` webhook request,
or one removal file. Each sent removal of a profile that still exists gets a delivery-ledger
row (action remove); after an erasure the removal row itself, which names no one, is the
record."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from activation import eligibility, ledger, outbound
from activation.enums import (
    AD_PLATFORMS,
    DeliveryAction,
    DeliveryStatus,
    DestinationKind,
    RemovalReason,
    RemovalStatus,
)
from activation.models import Audience, Delivery, Destination, Removal, SyncRun
from cdp.core.crypto import CryptoError
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.enums import DataKeyPurpose
from profiles.exceptions import ProfileNotFound

logger = logging.getLogger(__name__)

UNSENT = (RemovalStatus.QUEUED, RemovalStatus.FAILED)
# A worker sending a removal holds it this long; another worker takes it over only after.
LEASE = timedelta(minutes=10)
SEND_LIMIT = 1000


@dataclass
class RemovalsSent:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    artifacts: list[str] = field(default_factory=list)


def _people(workspace: Any, profile_ids: Iterable[Any]) -> list[Any]:
    """The profiles and every profile merged into them (the ledger may name either)."""
    people: dict[Any, None] = {}
    for pk in profile_ids:
        people[pk] = None
        try:
            profile = profile_selectors.profile_get(workspace=workspace, profile_id=pk)
        except ProfileNotFound:
            continue
        people[profile.pk] = None
        for absorbed in profile_selectors.profile_absorbed_ids(profile=profile):
            people[absorbed] = None
    return list(people)


def removals_queue(
    *,
    destination: Destination,
    audience_id: Any,
    people: Sequence[outbound.Person],
    reason: str,
    not_before: datetime | None = None,
) -> list[tuple[Removal, outbound.Outgoing | None]]:
    """Queue one removal per person, its payload sealed under a fresh `removal` key. An
    ad-platform removal for someone with no usable match key left cannot be expressed:
    it is recorded dead (`no_match_key`) so that it stays visible."""
    queued: list[tuple[Removal, outbound.Outgoing | None]] = []
    rows = []
    for person in people:
        out = outbound.outgoing(destination, DeliveryAction.REMOVE, person)
        removal = Removal(
            workspace_id=destination.workspace_id,
            destination=destination,
            audience_id=audience_id,
            profile_id=person.profile_id,
            reason=reason,
            next_attempt_at=not_before,
        )
        if out is None:
            removal.status = RemovalStatus.DEAD
            removal.last_error = "no_match_key"
        else:
            removal.data_key_id = profile_services.data_key_create_unowned(
                workspace_id=destination.workspace_id, purpose=DataKeyPurpose.REMOVAL
            )
            removal.payload = {"record": out.record}
        rows.append(removal)
        queued.append((removal, out))
    Removal.objects.bulk_create(rows)
    return queued


def _schedule_send() -> None:
    from activation import tasks

    transaction.on_commit(tasks.removals_send_due.delay)


def removals_owed(
    *,
    workspace_id: Any,
    profile_ids: Iterable[Any],
    reason: str,
    purpose_keys: Iterable[str] | None = None,
    check_gate: bool = True,
) -> list[Removal]:
    """Queue a removal to every destination (serving one of `purpose_keys`, when given) whose
    ledger says it may hold one of these people, unless one is pending already. With
    `check_gate`, only for destinations that may no longer receive the person; an erasure
    passes False. Sending is scheduled once the transaction commits."""
    destinations = Destination.objects.filter(workspace_id=workspace_id)
    if purpose_keys is not None:
        destinations = destinations.filter(purposes__key__in=list(purpose_keys)).distinct()
    by_id = {d.pk: d for d in destinations.select_related("workspace")}
    if not by_id:
        return []  # before reading the people: consent changes call this for every refusal
    workspace = profile_selectors.workspace_get_by_id(workspace_id=workspace_id)
    people = _people(workspace, profile_ids)
    if not people:
        return []
    held = ledger.holdings(
        workspace_id=workspace_id, profile_ids=people, destination_ids=list(by_id)
    )
    pending = set(
        Removal.objects.filter(
            workspace_id=workspace_id,
            destination_id__in=list(by_id),
            profile_id__in=people,
            status__in=UNSENT,
        ).values_list("destination_id", "audience_id", "profile_id")
    )
    todo = sorted(held - pending, key=str)
    if not todo:
        return []
    queued: list[Removal] = []
    for destination_id in sorted({d for d, _a, _p in todo}, key=str):
        destination = by_id[destination_id]
        triples = [(a, p) for d, a, p in todo if d == destination_id]
        profile_set = list(dict.fromkeys(p for _a, p in triples))
        if check_gate:
            purposes = list(destination.purposes.all())
            verdict = eligibility.evaluate(
                workspace=workspace, purposes=purposes, profile_ids=profile_set
            )
            kept = set(verdict.allowed)
            if destination.kind in AD_PLATFORMS:
                kept |= _survivor_allowed(
                    workspace, purposes, [p for p in profile_set if p not in kept]
                )
            triples = [(a, p) for a, p in triples if p not in kept]
            profile_set = [p for p in profile_set if p not in kept]
        if not triples:
            continue
        loaded = outbound.people_load(destination=destination, profile_ids=profile_set)
        for audience_id in sorted({a for a, _p in triples}, key=lambda a: (a is None, a or 0)):
            persons = [loaded[p] for a, p in triples if a == audience_id]
            queued += [
                removal
                for removal, _out in removals_queue(
                    destination=destination, audience_id=audience_id, people=persons, reason=reason
                )
            ]
    if queued:
        _schedule_send()
    return queued


def _survivor_allowed(
    workspace: Any, purposes: Sequence[Any], profile_ids: Sequence[Any]
) -> set[Any]:
    """Those of `profile_ids` merged into a profile that may still be sent for `purposes`. An
    ad platform knows people by hashed identifiers, and a merged-away profile's belong to its
    survivor now: a removal for it would carry the survivor's and take them back too (the
    sync spares such a profile when it leaves an audience, `still_present`, for the same
    reason)."""
    merged = outbound.survivors(workspace=workspace, profile_ids=profile_ids)
    if not merged:
        return set()
    allowed = eligibility.evaluate(
        workspace=workspace, purposes=purposes, profile_ids=set(merged.values())
    ).allowed
    return {p for p, survivor in merged.items() if survivor in allowed}


# --- sending ---------------------------------------------------------------------------------


def _backoff(attempts: int) -> timedelta:
    seconds = settings.CDP_REMOVAL_RETRY_SECONDS * (2 ** max(0, attempts - 1))
    return timedelta(seconds=min(seconds, 24 * 3600))


def _ledger_rows(
    removals: Sequence[Removal],
    outgoing: dict[Any, outbound.Outgoing],
    *,
    status: str,
    at: datetime,
    sync_run: SyncRun | None,
) -> None:
    Delivery.objects.bulk_create(
        [
            Delivery(
                workspace_id=r.workspace_id,
                destination_id=r.destination_id,
                audience_id=r.audience_id,
                sync_run=sync_run,
                profile_id=r.profile_id,
                action=DeliveryAction.REMOVE,
                basis={"removal": str(r.pk), "reason": r.reason},
                payload_sha256=outgoing[r.pk].sha256,
                status=status,
                delivered_at=at,
            )
            for r in removals
            if r.profile_id is not None and r.pk in outgoing
        ]
    )


def _send_group(
    destination: Destination,
    audience: Audience | None,
    reason: str,
    removals: list[Removal],
    outgoing: dict[Any, outbound.Outgoing],
    sync_run: SyncRun | None,
    done: RemovalsSent,
) -> None:
    now = timezone.now()
    records = [outgoing[r.pk] for r in removals]
    if destination.kind == DestinationKind.WEBHOOK:
        result = outbound.webhook_send(
            destination=destination,
            action=DeliveryAction.REMOVE,
            records=records,
            audience=audience,
            sync_run_id=sync_run.pk if sync_run else None,
            reason=reason,
        )
    else:
        result = outbound.file_send(
            destination=destination,
            action=DeliveryAction.REMOVE,
            records=records,
            audience=audience,
            at=now,
        )
    ids = [r.pk for r in removals]
    with transaction.atomic():
        if result.delivered:
            Removal.objects.filter(pk__in=ids).update(
                status=RemovalStatus.SENT,
                sent_at=now,
                attempts=F("attempts") + 1,
                next_attempt_at=None,
                last_error="",
                payload=None,
            )
            profile_services.data_keys_destroy(
                key_ids=[r.data_key_id for r in removals if r.data_key_id]
            )
            _ledger_rows(
                removals, outgoing, status=DeliveryStatus.DELIVERED, at=now, sync_run=sync_run
            )
            done.sent += len(removals)
            if result.artifact:
                done.artifacts.append(result.artifact)
            return
        dead = []
        for removal in removals:
            removal.attempts += 1
            removal.last_error = result.error[:500]
            if not result.retryable or removal.attempts >= settings.CDP_REMOVAL_MAX_ATTEMPTS:
                removal.status = RemovalStatus.DEAD
                removal.next_attempt_at = None
                dead.append(removal)
            else:
                removal.status = RemovalStatus.FAILED
                # Not before the destination asked (a Retry-After send could not wait out).
                delay = max(_backoff(removal.attempts), timedelta(seconds=result.retry_after or 0))
                removal.next_attempt_at = now + delay
            Removal.objects.filter(pk=removal.pk).update(
                status=removal.status,
                attempts=removal.attempts,
                last_error=removal.last_error,
                next_attempt_at=removal.next_attempt_at,
            )
        _ledger_rows(dead, outgoing, status=DeliveryStatus.DEAD, at=now, sync_run=sync_run)
        done.dead += len(dead)
        done.failed += len(removals) - len(dead)
    logger.warning(
        "removals not sent",
        extra={"destination": str(destination.pk), "count": len(removals), "error": result.error},
    )


def removals_send(
    *,
    removals: Sequence[Removal],
    outgoing: dict[Any, outbound.Outgoing] | None = None,
    sync_run: SyncRun | None = None,
) -> RemovalsSent:
    """Send `removals` (claimed by the caller), grouped per destination, audience and reason:
    one request or file per group, a webhook's group split into its batch size. `outgoing`
    holds records computed in this process; the others are unsealed from the removals'
    payloads."""
    done = RemovalsSent()
    records = dict(outgoing or {})
    groups: dict[tuple[Any, Any, str], list[Removal]] = {}
    for removal in removals:
        if removal.pk not in records:
            try:
                record = (removal.payload or {})["record"]
            except (CryptoError, KeyError, TypeError):
                Removal.objects.filter(pk=removal.pk).update(
                    status=RemovalStatus.DEAD, last_error="payload_unreadable"
                )
                done.dead += 1
                continue
            records[removal.pk] = outbound.outgoing_from_record(
                removal.destination, DeliveryAction.REMOVE, removal.profile_id, record
            )
        key = (removal.destination_id, removal.audience_id, removal.reason)
        groups.setdefault(key, []).append(removal)
    for (_destination_id, _audience_id, reason), group in groups.items():
        first = group[0]
        size = len(group)  # one file for a file destination
        if first.destination.kind == DestinationKind.WEBHOOK:
            size = outbound.batch_size(first.destination)
        for start in range(0, len(group), size):
            batch = group[start : start + size]
            _send_group(first.destination, first.audience, reason, batch, records, sync_run, done)
    return done


def _claim(queryset: Any, now: datetime, limit: int) -> list[Removal]:
    """Take up to `limit` removals for this worker: each gets a lease (next_attempt_at moved
    LEASE ahead), so that another worker does not send it too meanwhile."""
    with transaction.atomic():
        ids = list(
            queryset.select_for_update(skip_locked=True)
            .order_by("created_at", "id")
            .values_list("pk", flat=True)[:limit]
        )
        Removal.objects.filter(pk__in=ids).update(next_attempt_at=now + LEASE)
    return list(
        Removal.objects.filter(pk__in=ids)
        .select_related("destination__workspace", "audience")
        .order_by("created_at", "id")
    )


def removals_send_due(*, now: datetime | None = None, limit: int = SEND_LIMIT) -> RemovalsSent:
    """Send the removals that are due: queued, or failed with their retry time passed."""
    now = now or timezone.now()
    due = Removal.objects.filter(status__in=UNSENT).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    return removals_send(removals=_claim(due, now, limit))


def removals_flush(
    *, destination: Destination, audience: Audience, sync_run: SyncRun | None = None
) -> RemovalsSent:
    """Send every unsent removal owed to `destination` for `audience` now, whatever its retry
    time (a sync run does this first: a removal owed goes out before any new add). One that
    another worker is sending at this moment may go out twice; a removal is idempotent."""
    pending = Removal.objects.filter(destination=destination, audience=audience, status__in=UNSENT)
    return removals_send(removals=_claim(pending, timezone.now(), SEND_LIMIT), sync_run=sync_run)


@transaction.atomic
def removal_retry(*, removal: Removal) -> Removal:
    """Put a dead (or failed) removal back in the queue, for a steward after fixing the
    destination; a removal whose payload is gone cannot be retried."""
    if removal.status not in (RemovalStatus.DEAD, RemovalStatus.FAILED):
        return removal
    if removal.data_key_id is None:
        return removal
    Removal.objects.filter(pk=removal.pk).update(
        status=RemovalStatus.QUEUED, attempts=0, next_attempt_at=None, last_error=""
    )
    removal.refresh_from_db()
    _schedule_send()
    return removal


# --- hooks (registered in apps.py) -----------------------------------------------------------


def on_consent_refused(
    workspace_id: int, profile_ids: Sequence[Any], purpose_keys: Sequence[str]
) -> None:
    """Consent change hook: a withdrawal, denial or expiry for these purposes. The hook is not
    told which: the current consent states, written before it runs, say whether the grant
    expired (`consent_expired`) or the person refused (`consent_withdrawn`)."""
    if not Destination.objects.filter(
        workspace_id=workspace_id, purposes__key__in=list(purpose_keys)
    ).exists():
        return  # before reading anyone's consent: this runs for every refusal
    workspace = profile_selectors.workspace_get_by_id(workspace_id=workspace_id)
    reasons = eligibility.consent_refusal_reasons(
        workspace=workspace, profile_ids=profile_ids, purpose_keys=purpose_keys
    )
    by_reason: dict[str, list[Any]] = {}
    for profile_id in profile_ids:
        by_reason.setdefault(reasons[profile_id], []).append(profile_id)
    for reason in sorted(by_reason):
        removals_owed(
            workspace_id=workspace_id,
            profile_ids=by_reason[reason],
            reason=reason,
            purpose_keys=purpose_keys,
        )


def on_restricted(workspace_id: int, profile_ids: Sequence[Any]) -> None:
    """Restriction hook: processing of these profiles was restricted (GDPR Art. 18)."""
    removals_owed(
        workspace_id=workspace_id, profile_ids=profile_ids, reason=RemovalReason.RESTRICTED
    )
