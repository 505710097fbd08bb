"""Hooks a lower layer calls and a higher one fills (registered in AppConfig.ready(), like the
personal-data registry): when profiles merge, the consent app must combine their consent
states in the same transaction, without profiles importing consent and without signals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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
