"""Background jobs of the profiles app (the `ingest` queue). Ids and key names go out, never
values."""

from __future__ import annotations

import logging

from celery import shared_task

from profiles import selectors, services

logger = logging.getLogger(__name__)


@shared_task(name="profiles.tasks.personal_data_reseal", acks_late=True)
def personal_data_reseal(workspace_id: int, keys: list[str]) -> dict[str, object]:
    """Seal what was stored in plain under trait keys since classified as personal data
    (`services.personal_data_reseal`). Safe to run again."""
    workspace = selectors.workspace_get_by_id(workspace_id=workspace_id)
    done = services.personal_data_reseal(workspace=workspace, keys=keys)
    logger.info(
        "resealed in workspace %s: %d trait values, %d events (%d unreadable)",
        workspace_id, done.traits, done.events, done.unreadable,
    )  # fmt: skip
    return {
        "workspace": workspace_id,
        "traits": done.traits,
        "profiles": done.profiles,
        "events": done.events,
        "unreadable": done.unreadable,
    }
