"""Consent granted again, or a restriction lifted: sending a person again to the destinations
that took them back.

An incremental sync plans from membership changes. A member taken back from a destination
because they refused its purpose (a removal, `consent_withdrawn` or `consent_expired`), or
never sent because they had not consented yet, does not change membership by granting
consent: without more, only a full run would send them again, and the destination would
silently stop receiving a consenting member.

So the consent services run the consent-grant hooks (`cdp.core.hooks.run_consent_grant_hooks`)
in the transaction that recorded a grant, and activation's hook only marks: one `SyncRecheck`
per sync whose destination serves a granted purpose and whose audience has the person as a
member, in a handful of set-wise statements whatever the number of profiles (a drain records
thousands of grants at once). It does not look at the ledger or the consent gate and it sends
nothing: a grant commits with its marks, and the sync's next run, started by the scheduler
(so disabled syncs and a receiver's `deferred_until` are respected as for any run), does the
work (`recheck_plan`).

A run sends again those marked people who are still members, whom the ledger says the
destination does not hold (no row, or a last row that is a delivered removal), who are not
owed a removal still unsent, and whose adds the destination has not refused
CDP_SYNC_MAX_RESENDS times. A profile merged away since it was marked is represented by its
survivor. They go with the run's own additions, so the gate (every purpose of the destination,
restriction, erasure) is evaluated at send time as for any add, and an add that does not
arrive is left to the re-sends of undelivered adds. A run that completes deletes the marks it
read, except those of people still owed a removal (the next run looks at them again); a run
refused, stopped or deferred leaves them for the next.

A restriction of processing (GDPR Art. 18) lifted is the same case for every destination: the
restriction took the person back from all of them (a removal, `restricted`) or kept them from
being sent (excluded at send time). The restriction-lifted hook (activation.realtime) first
recomputes their membership, then marks them for every sync of an audience they are a member
of (`rechecks_mark_lifted`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from activation import ledger, outbound
from activation.models import AudienceMembership, Sync, SyncRecheck
from cdp.core.iterables import chunks
from profiles.selectors import REVEAL_BATCH_MAX


def on_consent_granted(
    workspace_id: int, profile_ids: Sequence[Any], purpose_keys: Sequence[str]
) -> None:
    """Consent-grant hook: mark these profiles for the syncs whose destination serves one of
    `purpose_keys` and whose audience they are members of. Disabled syncs are marked too: a
    sync enabled again must not have lost them."""
    _mark(
        workspace_id,
        profile_ids,
        Sync.objects.filter(workspace_id=workspace_id, destination__purposes__key__in=purpose_keys),
    )


def rechecks_mark_lifted(*, workspace_id: int, profile_ids: Sequence[Any]) -> None:
    """The restriction of these profiles was lifted: mark them for every sync of the workspace
    whose audience they are members of (call it once their membership is recomputed). A
    member whose restriction kept them from being sent (excluded at send time, or taken back)
    changes no membership by being unrestricted unless the restriction had ended it."""
    _mark(workspace_id, profile_ids, Sync.objects.filter(workspace_id=workspace_id))


def _mark(workspace_id: int, profile_ids: Sequence[Any], syncs: Any) -> None:
    """One SyncRecheck per sync of `syncs` whose audience has one of `profile_ids`."""
    audiences: dict[Any, list[Any]] = {}
    for sync_id, audience_id in syncs.order_by("pk").values_list("pk", "audience_id").distinct():
        audiences.setdefault(audience_id, []).append(sync_id)
    if not audiences:
        return  # before reading any membership: this runs for every grant
    rows = []
    for chunk in chunks(list(dict.fromkeys(profile_ids)), REVEAL_BATCH_MAX):
        for audience_id, profile_id in (
            AudienceMembership.objects.filter(audience_id__in=list(audiences), profile_id__in=chunk)
            .order_by()
            .values_list("audience_id", "profile_id")
        ):
            rows += [
                SyncRecheck(workspace_id=workspace_id, sync_id=sync_id, profile_id=profile_id)
                for sync_id in audiences[audience_id]
            ]
    # Plain inserts, no upsert: a mark a running sync has read is deleted by it when it ends,
    # and a grant made meanwhile must leave a mark of its own.
    SyncRecheck.objects.bulk_create(rows, batch_size=REVEAL_BATCH_MAX)


@dataclass
class Rechecked:
    """What a run makes of its sync's marks: whom to send again, and which marks it deletes
    once it completes."""

    adds: list[Any] = field(default_factory=list)
    done: list[int] = field(default_factory=list)


def recheck_plan(
    *, sync: Sync, workspace: Any, planned: set[Any], pending: set[Any], incremental: bool
) -> Rechecked:
    """The people marked for `sync` to send again (see the module): not those the run plans
    anyway (`planned`) nor those owed a removal still unsent (`pending`, whose marks stay). A
    full run sends every member: it only takes the marks."""
    marks = list(
        SyncRecheck.objects.filter(sync=sync).order_by("id").values_list("id", "profile_id")
    )
    if not marks:
        return Rechecked()
    marked = sorted({p for _id, p in marks}, key=str)
    survivor: dict[Any, Any] = {}
    for chunk in chunks(marked, REVEAL_BATCH_MAX):
        survivor |= outbound.survivors(workspace=workspace, profile_ids=chunk)
    person = {p: survivor.get(p, p) for p in marked}
    waiting = {p for p in person.values() if p in pending}
    done = [pk for pk, p in marks if person[p] not in waiting]
    if not incremental:
        return Rechecked(done=done)
    candidates = sorted(set(person.values()) - planned - waiting, key=str)
    adds: set[Any] = set()
    for chunk in chunks(candidates, REVEAL_BATCH_MAX):
        members = set(
            AudienceMembership.objects.filter(
                audience_id=sync.audience_id, profile_id__in=chunk
            ).values_list("profile_id", flat=True)
        )
        if not members:
            continue
        held = ledger.holdings(
            workspace_id=workspace.pk,
            profile_ids=members,
            destination_ids=[sync.destination_id],
            audience_id=sync.audience_id,
        )
        members -= {p for _d, _a, p in held}
        members -= ledger.adds_given_up(
            workspace_id=workspace.pk,
            destination_id=sync.destination_id,
            audience_id=sync.audience_id,
            profile_ids=members,
            max_dead=settings.CDP_SYNC_MAX_RESENDS,
        )
        adds |= members
    return Rechecked(adds=sorted(adds, key=str), done=done)


def rechecks_done(*, ids: Sequence[int]) -> None:
    """Delete the marks a completed run read."""
    for chunk in chunks(list(ids), REVEAL_BATCH_MAX):
        SyncRecheck.objects.filter(pk__in=chunk).delete()
