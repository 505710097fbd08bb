"""Audience membership: materialized in AudienceMembership, with every entry and exit recorded
in MembershipChange (what incremental syncs read).

A full refresh evaluates the audience's compiled query once into a temporary table and then
applies the difference set-wise (INSERT .. SELECT and DELETE against it), whatever the size.
An incremental refresh evaluates the same query restricted to the given profiles (the ones a
batch of events touched) and applies their difference. The compiled query only ever returns
active, unrestricted profiles, so restricted and merged-away profiles leave at their next
refresh; merges, unmerges and restrictions also take them out at once (the hooks in apps.py),
and erased profiles are deleted with their memberships."""

# ruff: noqa: S608 - the SQL below is built from model metadata and a generated table name;
# every value is a parameter.

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from activation.enums import AudienceStatus, MembershipChangeKind
from activation.exceptions import RuleError
from activation.models import Audience, AudienceMembership, MembershipChange
from activation.rules import profiles_matching

logger = logging.getLogger(__name__)

ID_CHUNK = 500


@dataclass(frozen=True)
class MembershipDelta:
    entered: int
    exited: int


def _uuids(profile_ids: Iterable[Any]) -> list[uuid.UUID]:
    return sorted({p if isinstance(p, uuid.UUID) else uuid.UUID(str(p)) for p in profile_ids})


def _table(model: Any) -> str:
    return str(connection.ops.quote_name(model._meta.db_table))


def _column(model: Any, name: str) -> str:
    return str(connection.ops.quote_name(model._meta.get_field(name).column))


def _full(audience: Audience, now: datetime, at: datetime | None) -> MembershipDelta:
    """Replace the membership with the compiled query's answer, set-wise."""
    query = profiles_matching(
        workspace=audience.workspace, rules=audience.rules, at=at, audience_key=audience.key
    ).values("id")
    select_sql, select_params = query.query.sql_with_params()
    temp = f"activation_refresh_{uuid.uuid4().hex[:16]}"
    ops = connection.ops
    moment = ops.adapt_datetimefield_value(now)
    members, changes = _table(AudienceMembership), _table(MembershipChange)
    m_audience, m_profile = (
        _column(AudienceMembership, "audience"),
        _column(AudienceMembership, "profile"),
    )
    entered_at = _column(AudienceMembership, "entered_at")
    c_audience, c_profile = (
        _column(MembershipChange, "audience"),
        _column(MembershipChange, "profile"),
    )
    c_change, c_at = _column(MembershipChange, "change"), _column(MembershipChange, "at")
    not_in_target = f"NOT EXISTS (SELECT 1 FROM {temp} t WHERE t.id = {{row}}.{m_profile})"
    not_member = (
        f"NOT EXISTS (SELECT 1 FROM {members} m WHERE m.{m_audience} = %s AND m.{m_profile} = t.id)"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {temp} AS SELECT q.id FROM ({select_sql}) q", select_params
        )
        try:
            if connection.vendor == "postgresql":
                cursor.execute(f"ANALYZE {temp}")
            cursor.execute(
                f"INSERT INTO {changes} ({c_audience}, {c_profile}, {c_change}, {c_at}) "
                f"SELECT %s, m.{m_profile}, %s, %s FROM {members} m "
                f"WHERE m.{m_audience} = %s AND " + not_in_target.format(row="m"),
                [audience.pk, MembershipChangeKind.EXITED, moment, audience.pk],
            )
            cursor.execute(
                f"DELETE FROM {members} WHERE {m_audience} = %s AND "
                + not_in_target.format(row=members),
                [audience.pk],
            )
            exited = cursor.rowcount
            cursor.execute(
                f"INSERT INTO {changes} ({c_audience}, {c_profile}, {c_change}, {c_at}) "
                f"SELECT %s, t.id, %s, %s FROM {temp} t WHERE {not_member}",
                [audience.pk, MembershipChangeKind.ENTERED, moment, audience.pk],
            )
            cursor.execute(
                f"INSERT INTO {members} ({m_audience}, {m_profile}, {entered_at}) "
                f"SELECT %s, t.id, %s FROM {temp} t WHERE {not_member}",
                [audience.pk, moment, audience.pk],
            )
            entered = cursor.rowcount
            cursor.execute(f"SELECT count(*) FROM {temp}")
            size = int(cursor.fetchone()[0])
        finally:
            cursor.execute(f"DROP TABLE {temp}")
    audience.size = size
    return MembershipDelta(entered=entered, exited=exited)


def _incremental(
    audience: Audience, profile_ids: list[uuid.UUID], now: datetime, at: datetime | None
) -> MembershipDelta:
    entered = exited = 0
    for start in range(0, len(profile_ids), ID_CHUNK):
        chunk = profile_ids[start : start + ID_CHUNK]
        matching = set(
            profiles_matching(
                workspace=audience.workspace,
                rules=audience.rules,
                at=at,
                profile_ids=chunk,
                audience_key=audience.key,
            ).values_list("pk", flat=True)
        )
        current = set(
            AudienceMembership.objects.filter(audience=audience, profile_id__in=chunk).values_list(
                "profile_id", flat=True
            )
        )
        entering = sorted(matching - current)
        leaving = sorted(current - matching)
        _record(audience, entering, leaving, now)
        entered += len(entering)
        exited += len(leaving)
    audience.size = max(0, audience.size + entered - exited)
    return MembershipDelta(entered=entered, exited=exited)


def _record(
    audience: Audience, entering: Sequence[Any], leaving: Sequence[Any], now: datetime
) -> None:
    if leaving:
        AudienceMembership.objects.filter(audience=audience, profile_id__in=leaving).delete()
    AudienceMembership.objects.bulk_create(
        [AudienceMembership(audience=audience, profile_id=pid, entered_at=now) for pid in entering]
    )
    MembershipChange.objects.bulk_create(
        [
            *(
                MembershipChange(
                    audience=audience, profile_id=pid, change=MembershipChangeKind.EXITED, at=now
                )
                for pid in leaving
            ),
            *(
                MembershipChange(
                    audience=audience, profile_id=pid, change=MembershipChangeKind.ENTERED, at=now
                )
                for pid in entering
            ),
        ]
    )


@transaction.atomic
def audience_refresh(
    *, audience: Audience, profile_ids: Sequence[Any] | None = None, at: datetime | None = None
) -> MembershipDelta:
    """Bring the audience's membership up to date: fully (profile_ids None) or for these
    profiles; records who entered and who left. A paused or archived audience is left as it
    is. Raises RuleError when its rules no longer compile (a stage or trait it names is gone).
    The audience's row stays locked until the transaction ends (see `changes_settled`)."""
    locked = Audience.objects.select_for_update().select_related("workspace").get(pk=audience.pk)
    if locked.status != AudienceStatus.ACTIVE:
        return MembershipDelta(entered=0, exited=0)
    now = timezone.now()
    if profile_ids is None:
        delta = _full(locked, now, at)
        locked.last_computed_at = now
        locked.save(update_fields=["size", "last_computed_at", "updated_at"])
    else:
        delta = _incremental(locked, _uuids(profile_ids), now, at)
        if delta.entered or delta.exited:
            locked.save(update_fields=["size", "updated_at"])
    audience.size, audience.last_computed_at = locked.size, locked.last_computed_at
    return delta


def audiences_refresh_for_profiles(
    *, workspace_id: int, profile_ids: Sequence[Any], realtime_only: bool = True
) -> dict[str, MembershipDelta]:
    """Refresh the workspace's active (realtime, unless `realtime_only=False`) audiences for
    these profiles; an audience whose rules no longer compile is logged and skipped."""
    audiences = Audience.objects.filter(workspace_id=workspace_id, status=AudienceStatus.ACTIVE)
    if realtime_only:
        audiences = audiences.filter(realtime=True)
    deltas = {}
    for audience in audiences.order_by("key"):
        try:
            deltas[audience.key] = audience_refresh(audience=audience, profile_ids=profile_ids)
        except RuleError as error:
            logger.warning("audience %s not refreshed: %s", audience.pk, error)
    return deltas


def changes_settled(audience_ids: Iterable[Any]) -> None:
    """Lock these audiences' rows (in id order) until the transaction ends.

    Every writer of MembershipChange holds its audiences' locks from before it draws a change
    id until it commits (`audience_refresh`, `memberships_end`), so an audience's changes
    commit in the order of their ids. An incremental sync reads the changes after its cursor
    (activation.sync): whatever it sees is then every change up to the last one it read, and
    none can commit later below its cursor and be skipped. (Ids come from a sequence in the
    order they are drawn, which is not the order transactions commit in.)"""
    wanted = sorted(set(audience_ids))
    if wanted:
        list(Audience.objects.select_for_update().filter(pk__in=wanted).order_by("pk"))


@transaction.atomic
def memberships_end(*, workspace_id: int, profile_ids: Sequence[Any]) -> int:
    """Take these profiles out of every audience of the workspace at once, recording the
    exits (a profile merged away, or restricted); returns how many memberships ended."""
    ids = _uuids(profile_ids)
    now = timezone.now()
    ended = 0
    # Every audience concerned is locked first, in one go (in id order: two of these at once
    # cannot deadlock), before any change id is drawn.
    changes_settled(
        audience_id
        for start in range(0, len(ids), ID_CHUNK)
        for audience_id in AudienceMembership.objects.filter(
            audience__workspace_id=workspace_id, profile_id__in=ids[start : start + ID_CHUNK]
        )
        .values_list("audience_id", flat=True)
        .distinct()
    )
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        rows = list(
            AudienceMembership.objects.filter(
                audience__workspace_id=workspace_id, profile_id__in=chunk
            ).values_list("audience_id", "profile_id")
        )
        if not rows:
            continue
        # Locked already, unless a membership was added meanwhile (then locked now).
        changes_settled(audience_id for audience_id, _profile_id in rows)
        MembershipChange.objects.bulk_create(
            [
                MembershipChange(
                    audience_id=audience_id,
                    profile_id=profile_id,
                    change=MembershipChangeKind.EXITED,
                    at=now,
                )
                for audience_id, profile_id in rows
            ]
        )
        AudienceMembership.objects.filter(
            audience__workspace_id=workspace_id, profile_id__in=chunk
        ).delete()
        per_audience: dict[Any, int] = {}
        for audience_id, _profile_id in rows:
            per_audience[audience_id] = per_audience.get(audience_id, 0) + 1
        for audience_id, count in per_audience.items():
            Audience.objects.filter(pk=audience_id).update(size=Greatest(F("size") - count, 0))
        ended += len(rows)
    return ended
