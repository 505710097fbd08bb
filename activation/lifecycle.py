"""Lifecycle stages: named rules in the audience language that audiences use as
`{"lifecycle": "<key>"}`. Every workspace gets the defaults below when it is created (a hook
from profiles.services.workspace_create); stewards edit them, or add their own.

The defaults follow the Segment e-commerce spec (`Order Completed` with a `revenue` property):
a store that names its events otherwise edits the stages. Stages are not exclusive: a
high-value customer is also a repeat customer."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction

from activation.exceptions import LifecycleStageInvalid, LifecycleStageKeyTaken
from activation.models import LifecycleStage
from activation.rules import compile_rules

ORDER = "Order Completed"
KEY_PATTERN = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")

DEFAULT_STAGES: list[dict[str, Any]] = [
    {
        "key": "new_visitor",
        "name": "New visitor",
        "description": "First seen within the last 30 days and has not ordered.",
        "rules": {
            "all": [
                {"profile": {"field": "first_seen_at", "op": "within_last_days", "value": 30}},
                {"event": {"name": ORDER, "did_not": True}},
            ]
        },
    },
    {
        "key": "first_time_buyer",
        "name": "First-time buyer",
        "description": "Exactly one order.",
        "rules": {"event": {"name": ORDER, "count": {"op": "=", "value": 1}}},
    },
    {
        "key": "repeat_customer",
        "name": "Repeat customer",
        "description": "Two orders or more.",
        "rules": {"event": {"name": ORDER, "count": {"op": ">=", "value": 2}}},
    },
    {
        "key": "high_value",
        "name": "High-value customer",
        "description": "Orders worth 1,000 or more (revenue) over the last 365 days.",
        "rules": {
            "event": {
                "name": ORDER,
                "within_last_days": 365,
                "aggregate": {"fn": "sum", "property": "revenue", "op": ">=", "value": 1000},
            }
        },
    },
    {
        "key": "churn_risk",
        "name": "Churn risk",
        "description": "Has ordered, but not in the last 90 days; seen within 180 days.",
        "rules": {
            "all": [
                {"event": {"name": ORDER}},
                {"event": {"name": ORDER, "within_last_days": 90, "did_not": True}},
                {"not": {"lifecycle": "inactive"}},
            ]
        },
    },
    {
        "key": "inactive",
        "name": "Inactive",
        "description": "Not seen for 180 days.",
        "rules": {
            "not": {"profile": {"field": "last_seen_at", "op": "within_last_days", "value": 180}}
        },
    },
]


@transaction.atomic
def lifecycle_stages_ensure_defaults(*, workspace: Any) -> list[LifecycleStage]:
    """Seed the default lifecycle stages, once per workspace (a workspace that has stages,
    edited or not, is left alone)."""
    if not LifecycleStage.objects.filter(workspace=workspace).exists():
        LifecycleStage.objects.bulk_create(
            [
                LifecycleStage(
                    workspace=workspace,
                    key=spec["key"],
                    name=spec["name"],
                    description=spec["description"],
                    rules=spec["rules"],
                    position=position,
                )
                for position, spec in enumerate(DEFAULT_STAGES)
            ]
        )
    return list(LifecycleStage.objects.filter(workspace=workspace))


def _check(workspace: Any, key: str, rules: Any) -> None:
    compile_rules(workspace=workspace, rules=rules, stage_key=key)


@transaction.atomic
def lifecycle_stage_create(
    *,
    workspace: Any,
    key: str,
    name: str,
    rules: Any,
    description: str = "",
    position: int | None = None,
) -> LifecycleStage:
    """A new stage; its rules are checked (and may not refer back to it)."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise LifecycleStageInvalid("key", "A stage key is 1-64 letters, digits, '-' or '_'.")
    if LifecycleStage.objects.filter(workspace=workspace, key=key).exists():
        raise LifecycleStageKeyTaken()
    _check(workspace, key, rules)
    if position is None:
        position = LifecycleStage.objects.filter(workspace=workspace).count()
    return LifecycleStage.objects.create(
        workspace=workspace,
        key=key,
        name=name or key,
        description=description,
        rules=rules,
        position=position,
    )


@transaction.atomic
def lifecycle_stage_update(*, stage: LifecycleStage, **fields: Any) -> LifecycleStage:
    """Change a stage's name, description, position or rules (checked, cycles refused)."""
    allowed = {"name", "description", "rules", "position"}
    unknown = set(fields) - allowed
    if unknown:
        field = sorted(unknown)[0]
        raise LifecycleStageInvalid(field, f"A stage's {field} cannot be changed.")
    if "rules" in fields:
        _check(stage.workspace, stage.key, fields["rules"])
    for name, value in fields.items():
        setattr(stage, name, value)
    stage.save()
    return stage
