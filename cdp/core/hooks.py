"""Hooks a lower layer calls and a higher one fills (registered in AppConfig.ready(), like the
personal-data registry): when profiles merge, the consent app must combine their consent
states in the same transaction, without profiles importing consent and without signals; when a
merge is undone, consent re-separates the states and activation recomputes derived data."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

_logger = logging.getLogger(__name__)

MergeHook = Callable[[int, Sequence[tuple[Any, Any]]], None]

_merge_hooks: dict[str, MergeHook] = {}


def register_merge_hook(name: str, hook: MergeHook) -> None:
    """`hook(workspace_id, [(survivor_id, absorbed_id), ...])`, called inside the merge's
    transaction after the rows have moved."""
    _merge_hooks[name] = hook


def run_merge_hooks(workspace_id: int, merges: Sequence[tuple[Any, Any]]) -> None:
    if not merges:
        return
    for name in sorted(_merge_hooks):
        _merge_hooks[name](workspace_id, merges)


UnmergeHook = Callable[[int, Sequence[tuple[Any, Any]]], None]

_unmerge_hooks: dict[str, UnmergeHook] = {}


def register_unmerge_hook(name: str, hook: UnmergeHook) -> None:
    """`hook(workspace_id, [(survivor_id, restored_id), ...])`, called inside the unmerge's
    transaction after the rows, keys and profiles are back where the ledger says: recompute
    whatever was derived from the merged profile for both of them."""
    _unmerge_hooks[name] = hook


def run_unmerge_hooks(workspace_id: int, unmerges: Sequence[tuple[Any, Any]]) -> None:
    if not unmerges:
        return
    for name in sorted(_unmerge_hooks):
        _unmerge_hooks[name](workspace_id, unmerges)


# --- consent changes and restrictions (activation takes people back from destinations, and
# sends them again once they grant consent again or their restriction is lifted) ----------------

ConsentChangeHook = Callable[[int, Sequence[Any], Sequence[str]], None]
RestrictionHook = Callable[[int, Sequence[Any]], None]

_consent_change_hooks: dict[str, ConsentChangeHook] = {}
_restriction_hooks: dict[str, RestrictionHook] = {}


def register_consent_change_hook(name: str, hook: ConsentChangeHook) -> None:
    """`hook(workspace_id, profile_ids, purpose_keys)`, called by the consent services inside
    the transaction that recorded a decision that no longer allows processing (denied,
    withdrawn, expired) for those purposes of those profiles."""
    _consent_change_hooks[name] = hook


def run_consent_change_hooks(
    workspace_id: int, profile_ids: Sequence[Any], purpose_keys: Sequence[str]
) -> None:
    if not profile_ids or not purpose_keys:
        return
    for name in sorted(_consent_change_hooks):
        _consent_change_hooks[name](workspace_id, profile_ids, purpose_keys)


ConsentGrantHook = Callable[[int, Sequence[Any], Sequence[str]], None]

_consent_grant_hooks: dict[str, ConsentGrantHook] = {}


def register_consent_grant_hook(name: str, hook: ConsentGrantHook) -> None:
    """`hook(workspace_id, profile_ids, purpose_keys)`, called by the consent services inside
    the transaction that recorded a grant for those purposes of those profiles: a destination
    that took the person back when they refused may receive them again, and nothing else
    (their audience membership did not change) tells an incremental sync so. It runs for every
    grant, in drains of thousands: keep it set-wise and short (mark, do not send)."""
    _consent_grant_hooks[name] = hook


def run_consent_grant_hooks(
    workspace_id: int, profile_ids: Sequence[Any], purpose_keys: Sequence[str]
) -> None:
    if not profile_ids or not purpose_keys:
        return
    for name in sorted(_consent_grant_hooks):
        _consent_grant_hooks[name](workspace_id, profile_ids, purpose_keys)


def register_restriction_hook(name: str, hook: RestrictionHook) -> None:
    """`hook(workspace_id, profile_ids)`, called by the profiles services inside the
    transaction that restricted processing of those profiles (GDPR Art. 18)."""
    _restriction_hooks[name] = hook


def run_restriction_hooks(workspace_id: int, profile_ids: Sequence[Any]) -> None:
    if not profile_ids:
        return
    for name in sorted(_restriction_hooks):
        _restriction_hooks[name](workspace_id, profile_ids)


_restriction_lifted_hooks: dict[str, RestrictionHook] = {}


def register_restriction_lifted_hook(name: str, hook: RestrictionHook) -> None:
    """`hook(workspace_id, profile_ids)`, called by the profiles services inside the
    transaction that lifted the restriction of processing of those profiles: what the
    restriction took away (audience membership, what destinations were sent) must come back,
    since nothing else (no event, no consent change) tells activation so."""
    _restriction_lifted_hooks[name] = hook


def run_restriction_lifted_hooks(workspace_id: int, profile_ids: Sequence[Any]) -> None:
    if not profile_ids:
        return
    for name in sorted(_restriction_lifted_hooks):
        _restriction_lifted_hooks[name](workspace_id, profile_ids)


# --- events ingested and workspaces created (activation keeps derived data current) -----------

IngestHook = Callable[[int, Sequence[Any]], None]
WorkspaceCreatedHook = Callable[[Any], None]

_ingest_hooks: dict[str, IngestHook] = {}
_workspace_created_hooks: dict[str, WorkspaceCreatedHook] = {}


def register_ingest_hook(name: str, hook: IngestHook) -> None:
    """`hook(workspace_id, profile_ids)`, called once per ingested batch after its transaction
    committed (the rows are visible), with the profiles the batch stored events or traits
    for. Keep it short (enqueue a task): it runs in the ingesting request or worker."""
    _ingest_hooks[name] = hook


def run_ingest_hooks(workspace_id: int, profile_ids: Sequence[Any]) -> None:
    """Run every ingest hook; one that fails is logged and the others still run, since the
    batch is committed already and what the hooks derive is recomputed on a schedule too."""
    if not profile_ids:
        return
    for name in sorted(_ingest_hooks):
        try:
            _ingest_hooks[name](workspace_id, profile_ids)
        except Exception:
            _logger.exception("ingest hook %s failed for workspace %s", name, workspace_id)


def register_workspace_created_hook(name: str, hook: WorkspaceCreatedHook) -> None:
    """`hook(workspace)`, called inside the transaction that created the workspace: higher
    apps seed their per-workspace defaults there (activation: the lifecycle stages)."""
    _workspace_created_hooks[name] = hook


def run_workspace_created_hooks(workspace: Any) -> None:
    for name in sorted(_workspace_created_hooks):
        _workspace_created_hooks[name](workspace)


# --- trait keys classified as personal data (activation drops its plain copies) ---------------

KeysPersonalHook = Callable[[int, Sequence[str]], None]

_keys_personal_hooks: dict[str, KeysPersonalHook] = {}


def register_keys_personal_hook(name: str, hook: KeysPersonalHook) -> None:
    """`hook(workspace_id, keys)`, called by the profiles services inside the transaction that
    classified trait keys as personal data which were plain attributes until then: what a
    higher app derived from plain values under those keys (activation: computed traits over an
    event property of that name) must not stay in plain either."""
    _keys_personal_hooks[name] = hook


def run_keys_personal_hooks(workspace_id: int, keys: Sequence[str]) -> None:
    if not keys:
        return
    for name in sorted(_keys_personal_hooks):
        _keys_personal_hooks[name](workspace_id, keys)
