"""The sync engine: sending an audience to a destination, consent-gated at send time, every
record written to the delivery ledger.

A run (`SyncRun`) is queued by `sync_run_start` and carried out by a Celery task, in batches:

1. Removals owed to the destination for this audience go out first, so that a person taken
   back (consent withdrawn, say) and allowed again since is not added, then removed.
2. The plan. Full: every member is sent, and everyone the ledger says the destination holds
   who is no longer a member is removed. Incremental: the membership changes after the
   sync's cursor; entered (and not surely held: the last ledger row is no delivered add) is
   sent, exited (and possibly held) is removed, and a member whose last add was dead-lettered
   or never confirmed is sent again, even once the cursor has passed its change. A member
   who granted consent again since, or whose restriction of processing was lifted (a
   `SyncRecheck` left by the consent-grant or restriction-lifted hook, activation.regrants),
   and whom the destination does not hold is sent too: no membership change may name them.
   The writers of changes commit an audience's changes in id order
   (`membership.changes_settled`), so a change never commits below the cursor.
3. Removals are queued (`Removal`, sealed payload) and sent at once; a failure stays queued
   and is retried by the removal task with backoff.
4. Each batch of additions is evaluated at send time (activation.eligibility: active, not
   restricted, every purpose of the destination allowed with a basis the ledger can name);
   the others are counted by reason. Identifier values and traits are decrypted for that
   batch only. The ledger rows are written *before* the records leave (status failed), then
   marked delivered or dead, so a crash between the two never leaves a send unrecorded.
   Webhooks get one signed POST per batch (at most the destination's `batch_size` records;
   retried with backoff, then dead-lettered); file destinations get rows appended to one file,
   moved into place when the run completes. A receiver that asks for a longer wait than a
   worker may hold (`CDP_WEBHOOK_MAX_WAIT_SECONDS`) stops the run instead: the batch is not
   dead-lettered, its ledger rows stay failed, the cursor stays, and the next run sends it.
   The wait is kept on the sync (`deferred_until`): the scheduler starts no run before it,
   and records once that it held the sync back. The deferrals in a row are counted
   (`deferrals`, reset by a delivered batch); the run deferred for the
   CDP_SYNC_MAX_DEFERRALS-th time in a row fails, its batch dead-lettered.
   Consent is checked again right after a batch is sent: a withdrawal that raced the send
   queues a removal.
5. A run whose sync or destination was disabled after it was queued is refused when it
   starts, and stops between batches if that happens while it runs. A file run then
   publishes nothing, whether the switch-off came between batches or just before the file
   was moved into place: the file is deleted and its ledger rows stay unconfirmed (failed).
6. Ad platforms refuse an audience smaller than the destination's minimum (run refused,
   nothing written). In a full run of a file destination, a member the destination holds who
   may no longer be sent is taken back (a removal), which heals any removal missed earlier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from activation import destinations, eligibility, ledger, outbound, regrants, removals
from activation.enums import (
    AD_PLATFORMS,
    DeliveryAction,
    DeliveryStatus,
    DestinationKind,
    MembershipChangeKind,
    RemovalReason,
    SyncMode,
    SyncRunStatus,
)
from activation.exceptions import SyncDisabled, SyncRunning
from activation.models import AudienceMembership, Delivery, MembershipChange, Removal, Sync, SyncRun
from activation.platforms import AudienceTooSmall, check_min_audience_size
from cdp.core.exceptions import ApplicationError, InvalidInput
from cdp.core.iterables import chunks
from profiles.selectors import REVEAL_BATCH_MAX

logger = logging.getLogger(__name__)

UNFINISHED = (SyncRunStatus.QUEUED, SyncRunStatus.RUNNING)
# After this many batches in a row could not be delivered, the run stops (the destination is
# down); the cursor is not moved, so the next run tries those changes again.
ABORT_AFTER_DEAD_BATCHES = 3
DEAD_LETTER = "dead_letter"
REMOVAL_PENDING = "removal_pending"
NO_MATCH_KEY = "no_match_key"
BELOW_MIN_SIZE = "below_min_size"
# Records left for the next run because the receiver asked for a longer wait.
DEFERRED = "deferred"


@transaction.atomic
def sync_run_start(*, sync: Sync, actor: Any = None, mode: str | None = None) -> SyncRun:
    """Queue a run of `sync` (its own mode unless `mode`); the task starts once the
    transaction commits. A run still queued or running refuses another, unless it is older
    than CDP_SYNC_STALE_MINUTES (its worker died: it is marked failed)."""
    mode = mode or sync.mode
    if mode not in SyncMode.values:
        raise InvalidInput(
            f"Unknown sync mode; choose from {', '.join(SyncMode.values)}.", code="invalid_mode"
        )
    locked = Sync.objects.select_for_update().select_related("destination").get(pk=sync.pk)
    if not locked.enabled or not locked.destination.enabled:
        raise SyncDisabled()
    now = timezone.now()
    stale = now - timedelta(minutes=settings.CDP_SYNC_STALE_MINUTES)
    SyncRun.objects.filter(sync=locked, status__in=UNFINISHED, created_at__lt=stale).update(
        status=SyncRunStatus.FAILED,
        error="Abandoned: the worker running it stopped.",
        finished_at=now,
    )
    if SyncRun.objects.filter(sync=locked, status__in=UNFINISHED).exists():
        raise SyncRunning()
    run = SyncRun.objects.create(
        workspace_id=locked.workspace_id,
        sync=locked,
        mode=mode,
        started_by=actor if getattr(actor, "pk", None) else None,
    )
    run_id = str(run.pk)

    def enqueue() -> None:
        from activation import tasks

        tasks.sync_run.delay(run_id)

    transaction.on_commit(enqueue)
    return run


def syncs_start_due(*, now: datetime | None = None) -> list[SyncRun]:
    """Queue a run of every enabled scheduled sync whose interval has passed since its last
    run (the beat task calls this every minute)."""
    now = now or timezone.now()
    started = []
    for sync in (
        Sync.objects.filter(enabled=True, destination__enabled=True, interval_minutes__gt=0)
        .select_related("destination")
        .order_by("pk")
    ):
        if sync.last_run_at and sync.last_run_at > now - timedelta(minutes=sync.interval_minutes):
            continue
        if sync.deferred_until is not None and sync.deferred_until > now:
            _scheduled_run_skip(sync=sync, now=now)
            continue
        try:
            started.append(sync_run_start(sync=sync))
        except (SyncRunning, SyncDisabled):
            continue
    return started


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _scheduled_run_skip(*, sync: Sync, now: datetime) -> None:
    """Record, once per deferral, that the scheduler holds the sync back because its
    destination asked to wait: a refused run the steward sees among the sync's runs (one a
    minute, as the beat ticks, would bury the others)."""
    assert sync.deferred_until is not None
    error = (
        f"Not run: the destination asked not to be sent to before "
        f"{_utc(sync.deferred_until)}; scheduled runs wait until then."
    )
    if SyncRun.objects.filter(sync=sync, status=SyncRunStatus.REFUSED, error=error).exists():
        return
    SyncRun.objects.create(
        workspace_id=sync.workspace_id,
        sync=sync,
        mode=sync.mode,
        status=SyncRunStatus.REFUSED,
        error=error,
        finished_at=now,
    )


def sync_run_execute(*, run_id: Any) -> SyncRun:
    """Carry out a queued run (the task calls this). A run not queued any more (a retried
    task, a run already done) is left as it is."""
    claimed = SyncRun.objects.filter(pk=run_id, status=SyncRunStatus.QUEUED).update(
        status=SyncRunStatus.RUNNING, started_at=timezone.now()
    )
    run = SyncRun.objects.select_related(
        "workspace", "sync__audience", "sync__destination__workspace"
    ).get(pk=run_id)
    if not claimed:
        return run
    runner = _Runner(run)
    try:
        runner.execute()
    except Exception as exc:
        # The class only: a message might quote a value.
        detail = exc.message if isinstance(exc, ApplicationError) else type(exc).__name__
        runner.finish(SyncRunStatus.FAILED, error=f"The run failed: {detail}.")
        runner.discard_file()
        raise
    return run


@dataclass
class _Plan:
    adds: list[Any]
    removes: list[tuple[Any, str]]  # (profile id, removal reason)
    cursor: int
    # Members whose last add did not arrive, sent again after the adds (incremental runs)
    resends: list[Any] = field(default_factory=list)


@dataclass
class _Runner:
    run: SyncRun
    artifacts: list[str] = field(default_factory=list)
    partial: bool = False
    aborted: bool = False
    # A re-sent add met a receiver down or busy (not one refusing it): the others wait too.
    resends_halted: bool = False
    # The receiver asked the run's adds to wait CDP_SYNC_MAX_DEFERRALS runs in a row.
    deferrals_exhausted: bool = False
    errors: list[str] = field(default_factory=list)
    sent_ids: list[Any] = field(default_factory=list)
    sink: outbound.FileSink | None = None

    def __post_init__(self) -> None:
        self.sync = self.run.sync
        self.destination = self.sync.destination
        self.audience = self.sync.audience
        self.workspace = self.run.workspace
        self.purposes = list(self.destination.purposes.all())
        self.is_file = self.destination.kind != DestinationKind.WEBHOOK
        self.pending: set[Any] = set()
        self.held: set[Any] = set()
        # The sync's rechecks (activation.regrants) this run read: deleted once it completes.
        self.rechecked: list[int] = []

    # --- bookkeeping -------------------------------------------------------------------

    def exclude(self, reason: str, count: int = 1) -> None:
        self.run.excluded[reason] = self.run.excluded.get(reason, 0) + count

    def progress(self) -> None:
        self.run.save(update_fields=["total", "processed", "sent", "removed", "excluded"])

    def finish(self, status: str, *, error: str = "") -> None:
        now = timezone.now()
        self.run.status = status
        self.run.finished_at = now
        self.run.error = error[:2000]
        self.run.artifact = "\n".join(self.artifacts)[:500]
        self.run.save(
            update_fields=[
                "status",
                "finished_at",
                "error",
                "artifact",
                "total",
                "processed",
                "sent",
                "removed",
                "excluded",
            ]
        )
        Sync.objects.filter(pk=self.sync.pk).update(last_run_at=self.run.started_at or now)

    def discard_file(self) -> None:
        if self.sink is not None:
            self.sink.discard()
            self.sink = None

    # --- the run -------------------------------------------------------------------------

    def disabled(self, *, lock: bool = False) -> str:
        """Why the run may not go on (the sync or the destination was disabled since it was
        queued), or "". Read afresh: an admin may switch either off while the run goes. With
        `lock`, both rows stay locked until the caller's transaction ends."""
        rows = Sync.objects.filter(pk=self.sync.pk)
        if lock:
            rows = rows.select_for_update()
        flags = rows.values_list("enabled", "destination__enabled").first()
        sync_enabled, destination_enabled = flags or (False, False)
        if not sync_enabled:
            return "The sync was disabled"
        if not destination_enabled:
            return "The destination was disabled"
        return ""

    def stopped(self, *, lock: bool = False) -> bool:
        """Whether the run stops before its next batch (or before its file is published): it
        was aborted, or its sync or destination was disabled meanwhile (one small query)."""
        if not self.aborted:
            why = self.disabled(lock=lock)
            if why:
                self.aborted = True
                self.errors.append(
                    f"{why} during the run: its file was not published and no one was added; "
                    "the next run sends them."
                    if self.is_file
                    else f"{why} during the run: the rest was not sent."
                )
        return self.aborted

    def execute(self) -> None:
        run = self.run
        run.excluded = dict(run.excluded or {})
        why = self.disabled()
        if why:
            self.finish(
                SyncRunStatus.REFUSED, error=f"{why} after this run was queued: nothing was sent."
            )
            return
        if not self.purposes:
            self.finish(
                SyncRunStatus.REFUSED,
                error="The destination declares no purpose: nothing may be sent.",
            )
            return
        flushed = removals.removals_flush(
            destination=self.destination, audience=self.audience, sync_run=run
        )
        run.removed += flushed.sent
        self.artifacts += flushed.artifacts
        self.partial |= bool(flushed.dead or flushed.failed)
        if self.destination.kind in AD_PLATFORMS and not any(
            destinations.advertising_purpose(p) for p in self.purposes
        ):
            # Checked when purposes are set; a purpose edited since (its basis, or GPC no
            # longer opting out) or a destination made before the check is refused here,
            # after the removals owed to it went out (taking people back is always allowed).
            self.finish(
                SyncRunStatus.REFUSED,
                error="An ad platform destination must serve a purpose held on consent that "
                "GPC opts out of (such as advertising): no one was added.",
            )
            return
        self.pending = set(
            Removal.objects.filter(
                destination=self.destination,
                audience=self.audience,
                status__in=removals.UNSENT,
                profile_id__isnull=False,
            ).values_list("profile_id", flat=True)
        )
        plan = self.plan()
        run.total = len(plan.adds) + len(plan.removes) + len(plan.resends)
        self.progress()

        if self.destination.kind in AD_PLATFORMS:
            eligible = self.eligible_count()
            if eligible < self.destination.min_audience_size:
                self.refuse(eligible)
                return

        size = outbound.batch_size(self.destination)
        for chunk in chunks(plan.removes, size):
            if self.stopped():
                break
            self.take_back(chunk)
            run.processed += len(chunk)
            self.progress()
        dead_streak = 0
        for chunk in chunks(plan.adds, size):
            if self.stopped():
                break
            delivered = self.add_batch(chunk)
            run.processed += len(chunk)
            self.progress()
            dead_streak = 0 if delivered else dead_streak + 1
            if dead_streak >= ABORT_AFTER_DEAD_BATCHES:
                self.aborted = True
                self.errors.append(
                    f"Stopped after {ABORT_AFTER_DEAD_BATCHES} batches in a row could not be "
                    "delivered; the next run tries again."
                )
                break
        # Adds that did not arrive before, after the run's own work, each on its own for a
        # webhook (a record the receiver refuses must not take others down with it every run):
        # their failures neither stop the run nor hold its cursor.
        resend_size = 1 if self.destination.kind == DestinationKind.WEBHOOK else size
        for chunk in chunks(plan.resends, resend_size):
            if self.stopped() or self.resends_halted:
                break
            self.add_batch(chunk, resend=True)
            run.processed += len(chunk)
            self.progress()
        if self.sink is not None and not self.close_file():
            return
        if not self.aborted:
            Sync.objects.filter(pk=self.sync.pk).update(cursor=plan.cursor)
            regrants.rechecks_done(ids=self.rechecked)
        status = SyncRunStatus.SUCCEEDED
        if self.deferrals_exhausted or (self.aborted and not run.sent and not run.removed):
            status = SyncRunStatus.FAILED
        elif self.partial or self.aborted:
            status = SyncRunStatus.PARTIAL
        self.finish(status, error=" ".join(dict.fromkeys(self.errors)))

    def plan(self) -> _Plan:
        audience = self.audience
        if self.run.mode == SyncMode.FULL:
            cursor = (
                MembershipChange.objects.filter(audience=audience).aggregate(last=Max("id"))["last"]
                or self.sync.cursor
            )
            members = list(
                AudienceMembership.objects.filter(audience=audience)
                .order_by("profile_id")
                .values_list("profile_id", flat=True)
            )
            self.held = {
                p
                for _d, _a, p in ledger.holdings(
                    workspace_id=self.workspace.pk,
                    destination_ids=[self.destination.pk],
                    audience_id=audience.pk,
                )
            }
            member_set = set(members)
            gone = self.still_present((self.held - member_set) - self.pending, member_set)
            exits: list[tuple[Any, str]] = [(p, RemovalReason.EXITED) for p in gone]
            self.rechecked = self.rechecks_plan(member_set, incremental=False).done
            return _Plan(members, exits, cursor)
        latest: dict[Any, str] = {}
        cursor = self.sync.cursor
        for change_id, profile_id, change in (
            MembershipChange.objects.filter(audience=audience, id__gt=self.sync.cursor)
            .order_by("id")
            .values_list("id", "profile_id", "change")
        ):
            latest[profile_id] = change
            cursor = change_id
        changed = list(latest)
        self.held = set()
        delivered: set[Any] = set()
        for chunk in chunks(changed, REVEAL_BATCH_MAX):
            # One read of the chunk's ledger rows gives both sets.
            may_hold, surely_holds = ledger.holdings_split(
                workspace_id=self.workspace.pk,
                profile_ids=chunk,
                destination_ids=[self.destination.pk],
                audience_id=audience.pk,
            )
            self.held |= {p for _d, _a, p in may_hold}
            delivered |= {p for _d, _a, p in surely_holds}
        current = set(
            AudienceMembership.objects.filter(
                audience=audience, profile_id__in=changed
            ).values_list("profile_id", flat=True)
        )
        # Removals go by what the destination may hold (self.held); additions by what it
        # surely holds, so that an add that did not arrive is not taken as done.
        adds = [
            p
            for p, change in latest.items()
            if change == MembershipChangeKind.ENTERED and p in current and p not in delivered
        ]
        resends = self.undelivered_members(set(latest))
        exited = {
            p
            for p, change in latest.items()
            if change == MembershipChangeKind.EXITED
            and p in self.held
            and p not in current
            and p not in self.pending
        }
        removes: list[tuple[Any, str]] = [
            (p, RemovalReason.EXITED) for p in self.still_present(exited, None)
        ]
        # Members who granted consent again since the last run: no membership change names
        # them, yet a destination that took them back may receive them again.
        rechecked = self.rechecks_plan(set(latest) | set(resends), incremental=True)
        self.rechecked = rechecked.done
        return _Plan(adds + rechecked.adds, removes, cursor, resends)

    def rechecks_plan(self, planned: set[Any], *, incremental: bool) -> regrants.Rechecked:
        """The sync's rechecks (activation.regrants): whom to send again besides `planned`."""
        return regrants.recheck_plan(
            sync=self.sync,
            workspace=self.workspace,
            planned=planned,
            pending=self.pending,
            incremental=incremental,
        )

    def undelivered_members(self, planned: set[Any]) -> list[Any]:
        """Members, not among `planned`, whose last add to the destination did not arrive
        (dead-lettered, or never confirmed): incremental runs send them again, a dead-lettered
        one up to CDP_SYNC_MAX_RESENDS times (a full run sends every member anyway)."""
        undelivered = ledger.adds_undelivered(
            workspace_id=self.workspace.pk,
            destination_id=self.destination.pk,
            audience_id=self.audience.pk,
            max_dead=settings.CDP_SYNC_MAX_RESENDS,
        )
        members: list[Any] = []
        for chunk in chunks(sorted(undelivered - planned, key=str), REVEAL_BATCH_MAX):
            members += AudienceMembership.objects.filter(
                audience=self.audience, profile_id__in=chunk
            ).values_list("profile_id", flat=True)
        return sorted(members, key=str)

    def still_present(self, leaving: set[Any], members: set[Any] | None) -> list[Any]:
        """Those of `leaving` to take back. On an ad platform (which knows people by hashed
        identifiers, not profile ids), a profile merged into a member of the audience left only
        in name: its identities belong to the member now, so it is not removed."""
        if self.destination.kind not in AD_PLATFORMS or not leaving:
            return sorted(leaving, key=str)
        merged: dict[Any, Any] = {}
        for chunk in chunks(sorted(leaving, key=str), REVEAL_BATCH_MAX):
            merged |= outbound.survivors(workspace=self.workspace, profile_ids=chunk)
        if members is None:
            members = set(
                AudienceMembership.objects.filter(
                    audience=self.audience, profile_id__in=set(merged.values())
                ).values_list("profile_id", flat=True)
            )
        return sorted((p for p in leaving if merged.get(p) not in members), key=str)

    def eligible_count(self) -> int:
        """How many members the destination may receive now (the minimum size applies to the
        audience the platform would hold, not to one run's changes)."""
        members = list(
            AudienceMembership.objects.filter(audience=self.audience)
            .order_by("profile_id")
            .values_list("profile_id", flat=True)
        )
        count = 0
        for chunk in chunks(members, REVEAL_BATCH_MAX):
            count += len(
                eligibility.evaluate(
                    workspace=self.workspace, purposes=self.purposes, profile_ids=chunk
                ).allowed
            )
        return count

    def refuse(self, count: int) -> None:
        try:
            check_min_audience_size(count, self.destination.min_audience_size)
            message = "The audience is too small to be exported to an ad platform."
        except AudienceTooSmall as exc:
            message = exc.message
        self.run.excluded = {BELOW_MIN_SIZE: count}
        self.run.processed = 0
        self.finish(SyncRunStatus.REFUSED, error=message)

    def take_back(self, chunk: list[tuple[Any, str]]) -> None:
        """Queue and send removals for (profile, reason) pairs of this audience."""
        by_reason: dict[str, list[Any]] = {}
        for profile_id, reason in chunk:
            by_reason.setdefault(reason, []).append(profile_id)
        for reason, ids in by_reason.items():
            people = outbound.people_load(destination=self.destination, profile_ids=ids)
            with transaction.atomic():
                queued = removals.removals_queue(
                    destination=self.destination,
                    audience_id=self.audience.pk,
                    people=[people[p] for p in ids],
                    reason=reason,
                    not_before=timezone.now() + removals.LEASE,
                )
            sendable = [r for r, out in queued if out is not None]
            self.partial |= len(sendable) < len(queued)
            done = removals.removals_send(
                removals=sendable,
                outgoing={r.pk: out for r, out in queued if out is not None},
                sync_run=self.run,
            )
            self.run.removed += done.sent
            self.artifacts += done.artifacts
            if done.dead or done.failed:
                self.partial = True
                self.pending |= {r.profile_id for r in sendable}

    def add_batch(self, chunk: list[Any], *, resend: bool = False) -> bool:
        """Evaluate, send and record one batch of additions; False when it could not be
        delivered (dead-lettered). A `resend` (an add that did not arrive before) the receiver
        could not take for a retryable reason (down, busy, asking to wait) stays failed, to be
        sent again, and is not counted as refused; the run's other re-sends wait with it."""
        run = self.run
        verdict = eligibility.evaluate(
            workspace=self.workspace, purposes=self.purposes, profile_ids=chunk
        )
        for reason in verdict.excluded.values():
            self.exclude(reason)
        if run.mode == SyncMode.FULL:
            # A member the destination holds who may no longer be sent is taken back.
            held = {
                p: reason
                for p, reason in verdict.excluded.items()
                if p in self.held and p not in self.pending
            }
            if held:
                reasons = eligibility.removal_reasons(workspace=self.workspace, excluded=held)
                self.take_back([(p, reasons[p]) for p in held])
        allowed = [p for p in chunk if p in verdict.allowed]
        waiting = [p for p in allowed if p in self.pending]
        if waiting:
            self.exclude(REMOVAL_PENDING, len(waiting))
            allowed = [p for p in allowed if p not in self.pending]
        if not allowed:
            return True
        people = outbound.people_load(destination=self.destination, profile_ids=allowed)
        records = []
        for profile_id in allowed:
            out = outbound.outgoing(self.destination, DeliveryAction.ADD, people[profile_id])
            if out is None:
                self.exclude(NO_MATCH_KEY)
            else:
                records.append(out)
        del people
        if not records:
            return True
        at = timezone.now()
        # Write-ahead: the ledger names every record before it leaves.
        rows = Delivery.objects.bulk_create(
            [
                Delivery(
                    workspace_id=self.workspace.pk,
                    destination=self.destination,
                    audience=self.audience,
                    sync_run=run,
                    profile_id=out.profile_id,
                    action=DeliveryAction.ADD,
                    basis=verdict.allowed[out.profile_id],
                    payload_sha256=out.sha256,
                    status=DeliveryStatus.FAILED,
                    delivered_at=at,
                )
                for out in records
            ]
        )
        sent_ids = [out.profile_id for out in records]
        if self.is_file:
            if self.sink is None:
                self.sink = outbound.FileSink(
                    destination=self.destination,
                    audience=self.audience,
                    action=DeliveryAction.ADD,
                    at=run.started_at or at,
                )
            self.sink.write(records)
            run.sent += len(records)
            self.sent_ids += sent_ids
            return True
        result = outbound.webhook_send(
            destination=self.destination,
            action=DeliveryAction.ADD,
            records=records,
            audience=self.audience,
            sync_run_id=run.pk,
        )
        if resend and not result.delivered and result.retryable:
            self.resends_halted = True
            self.partial = True
            self.exclude(DEFERRED, len(records))
            self.errors.append(
                f"A re-sent batch could not be delivered now ({result.error}); "
                "the next run sends it again."
            )
            if result.retry_after is not None:
                self.defer_until(result.retry_after)
            return False
        if result.retry_after is not None and result.retryable:
            return self.defer(rows, result)
        status = DeliveryStatus.DELIVERED if result.delivered else DeliveryStatus.DEAD
        Delivery.objects.filter(pk__in=[row.pk for row in rows]).update(status=status)
        if not result.delivered:
            self.partial = True
            self.exclude(DEAD_LETTER, len(records))
            self.errors.append(f"A batch could not be delivered ({result.error}).")
            return False
        run.sent += len(records)
        self.undefer()
        self.recheck(sent_ids)
        return True

    def defer_until(self, seconds: float) -> datetime:
        """Keep the receiver's "not before" on the sync: the scheduler starts no run before."""
        until = timezone.now() + timedelta(seconds=seconds)
        Sync.objects.filter(pk=self.sync.pk).update(deferred_until=until)
        self.sync.deferred_until = until
        return until

    def defer(self, rows: list[Delivery], result: outbound.SendResult) -> bool:
        """The receiver asked for a longer wait than a worker may hold for the run's own adds:
        the run stops and leaves its cursor for the next, which the scheduler starts no sooner
        than asked. The rows stay failed (to be sent again), unless the receiver has asked so
        CDP_SYNC_MAX_DEFERRALS runs in a row: then the batch is dead-lettered and the run
        fails, so that a receiver that always asks to wait does not stop every run unseen."""
        assert result.retry_after is not None
        until = self.defer_until(result.retry_after)
        limit = max(1, settings.CDP_SYNC_MAX_DEFERRALS)
        # At most the limit: past it every deferral fails the same way, and the counter must
        # not climb run after run to its column's end.
        count = min(self.sync.deferrals + 1, limit)
        Sync.objects.filter(pk=self.sync.pk).update(deferrals=count)
        self.sync.deferrals = count
        self.aborted = True
        asked = (
            f"The destination asked to wait {result.retry_after:.0f} s ({result.error})"
            if result.asked
            else f"The destination kept failing ({result.error}) past the retry budget of a "
            f"send (CDP_WEBHOOK_MAX_WAIT_SECONDS); the next try is in {result.retry_after:.0f} s"
        )
        if count < limit:
            self.exclude(DEFERRED, len(rows))
            self.errors.append(
                f"{asked}; the next run sends the rest. Scheduled runs wait until "
                f"{_utc(until)} (deferral {count} of at most {limit} in a row)."
            )
            return False
        Delivery.objects.filter(pk__in=[row.pk for row in rows]).update(status=DeliveryStatus.DEAD)
        self.deferrals_exhausted = True
        self.exclude(DEAD_LETTER, len(rows))
        self.errors.append(
            f"{asked}, {count} runs in a row (CDP_SYNC_MAX_DEFERRALS: {limit}): the batch "
            f"was dead-lettered and the run failed. Check the destination; scheduled runs "
            f"wait until {_utc(until)}."
        )
        return False

    def undefer(self) -> None:
        """A batch was delivered: the receiver takes records again, its deferrals in a row end."""
        if self.sync.deferrals or self.sync.deferred_until is not None:
            Sync.objects.filter(pk=self.sync.pk).update(deferrals=0, deferred_until=None)
            self.sync.deferrals = 0
            self.sync.deferred_until = None

    def close_file(self) -> bool:
        """Move the run's file into place (or refuse it, for an ad platform below its
        minimum, or abandon it, when the sync or destination was disabled during the run);
        False when the run was refused."""
        assert self.sink is not None
        run = self.run
        if self.aborted:
            # Its sync or destination was disabled between batches: half a file is never
            # published (an uploader takes what it finds for the run's whole work).
            self.abandon_file()
            return True
        if (
            self.destination.kind in AD_PLATFORMS
            and run.mode == SyncMode.FULL
            and self.sink.rows < self.destination.min_audience_size
        ):
            rows = self.sink.rows
            self.discard_file()
            # Nothing left the platform: the ledger rows of the unwritten file go too.
            Delivery.objects.filter(sync_run=run, action=DeliveryAction.ADD).delete()
            run.sent = 0
            self.refuse(rows)
            return False
        path: str | None = None
        with transaction.atomic():
            # Read with the sync's and destination's rows locked until the file is in place:
            # a switch-off commits either before (the file is not published) or after it
            # (this run was out already), never between the check and the move.
            if not self.stopped(lock=True):
                path = self.sink.commit()
        if path is None:
            self.abandon_file()
            return True
        self.sink = None
        self.artifacts.append(path)
        Delivery.objects.filter(
            sync_run=run, action=DeliveryAction.ADD, status=DeliveryStatus.FAILED
        ).update(status=DeliveryStatus.DELIVERED)
        for chunk in chunks(self.sent_ids, REVEAL_BATCH_MAX):
            self.recheck(chunk)
        return True

    def abandon_file(self) -> None:
        """The run stopped before its file was published: the file is deleted and its ledger
        rows stay as written ahead and never confirmed (failed): the next run sends those
        records again."""
        self.discard_file()
        self.run.sent = 0
        self.sent_ids = []

    def recheck(self, profile_ids: list[Any]) -> None:
        """Consent may have changed while the batch was on its way: take back whoever may no
        longer be sent (their consent hook ran before the ledger named them)."""
        verdict = eligibility.evaluate(
            workspace=self.workspace, purposes=self.purposes, profile_ids=profile_ids
        )
        by_reason: dict[str, list[Any]] = {}
        reasons = eligibility.removal_reasons(workspace=self.workspace, excluded=verdict.excluded)
        for profile_id, reason in reasons.items():
            by_reason.setdefault(reason, []).append(profile_id)
        for reason, ids in by_reason.items():
            removals.removals_owed(workspace_id=self.workspace.pk, profile_ids=ids, reason=reason)
