"""Keeping derived data current as profiles change: the hooks activation registers in
cdp.core.hooks (apps.py) and the service the `profiles_touched` task runs.

- Events ingested: one `profiles_touched` task per ingested batch, after its commit: the
  touched profiles' computed traits, then their membership of realtime audiences.
- Profiles merged: in the merge's transaction, the absorbed profiles leave every audience and
  lose their computed values; after commit, the survivors are recomputed for every audience.
- A merge undone: after commit, both sides are recomputed for every audience.
- Processing restricted: the profiles leave every audience at once.
- A restriction lifted: in its transaction, the profiles are recomputed for every audience
  and marked for the syncs of the audiences they are members of again (activation.regrants),
  so that the next incremental run sends them.
- Workspace created: the default lifecycle stages are seeded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from activation import regrants
from activation.computed import computed_traits_update, computed_values_drop
from activation.lifecycle import lifecycle_stages_ensure_defaults
from activation.membership import audiences_refresh_for_profiles, memberships_end


@dataclass(frozen=True)
class Touched:
    traits: int
    values: int
    audiences: int
    entered: int
    exited: int


def profiles_touched(
    *, workspace_id: int, profile_ids: Sequence[Any], all_audiences: bool = False
) -> Touched:
    """Recompute the computed traits of these profiles, then their membership of the
    workspace's realtime audiences (of every active audience with `all_audiences`)."""
    traits = computed_traits_update(workspace_id=workspace_id, profile_ids=profile_ids)
    deltas = audiences_refresh_for_profiles(
        workspace_id=workspace_id, profile_ids=profile_ids, realtime_only=not all_audiences
    )
    return Touched(
        traits=traits.traits,
        values=traits.values,
        audiences=len(deltas),
        entered=sum(d.entered for d in deltas.values()),
        exited=sum(d.exited for d in deltas.values()),
    )


def _enqueue(workspace_id: int, profile_ids: Sequence[Any], *, all_audiences: bool) -> None:
    from activation import tasks

    ids = sorted({str(p) for p in profile_ids})
    if ids:
        tasks.profiles_touched.delay(workspace_id, ids, all_audiences)


def on_ingested(workspace_id: int, profile_ids: Sequence[Any]) -> None:
    """Ingest hook (runs after the batch committed): one task for the whole batch."""
    _enqueue(workspace_id, profile_ids, all_audiences=False)


def on_merged(workspace_id: int, merges: Sequence[tuple[Any, Any]]) -> None:
    """Merge hook (inside the merge's transaction)."""
    absorbed = [a for _s, a in merges]
    memberships_end(workspace_id=workspace_id, profile_ids=absorbed)
    computed_values_drop(profile_ids=absorbed)
    survivors = [s for s, _a in merges]
    transaction.on_commit(lambda: _enqueue(workspace_id, survivors, all_audiences=True))


def on_unmerged(workspace_id: int, unmerges: Sequence[tuple[Any, Any]]) -> None:
    """Unmerge hook (inside the unmerge's transaction)."""
    both = [p for pair in unmerges for p in pair]
    transaction.on_commit(lambda: _enqueue(workspace_id, both, all_audiences=True))


def on_restricted(workspace_id: int, profile_ids: Sequence[Any]) -> None:
    """Restriction hook (inside the restricting transaction)."""
    memberships_end(workspace_id=workspace_id, profile_ids=profile_ids)


def on_restriction_lifted(workspace_id: int, profile_ids: Sequence[Any]) -> None:
    """Restriction-lifted hook (inside the lifting transaction). At once, not in a task after
    commit: the marks need the membership recomputed first, and a steward lifts one person at a
    time. The marks cover members the restriction kept from being sent without ending their
    membership (restricted behind the services' back, or excluded at send time)."""
    profiles_touched(workspace_id=workspace_id, profile_ids=profile_ids, all_audiences=True)
    regrants.rechecks_mark_lifted(workspace_id=workspace_id, profile_ids=profile_ids)


def on_workspace_created(workspace: Any) -> None:
    lifecycle_stages_ensure_defaults(workspace=workspace)
