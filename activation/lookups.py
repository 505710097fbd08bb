"""Workspace-scoped reads of destinations, syncs, sync runs and deliveries, for the management
API and the admin. A getter answers None for an id of another workspace exactly as for one that
does not exist (or is malformed), so callers can answer both with the same 404."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import QuerySet

from activation.models import Delivery, Destination, Sync, SyncRun
from cdp.core.ids import integer_id


def _uuid(value: Any) -> UUID | None:
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except (TypeError, ValueError):
        return None


def destination_list(*, workspace: Any) -> QuerySet[Destination]:
    return (
        Destination.objects.filter(workspace=workspace)
        .prefetch_related("purposes")
        .order_by("name")
    )


def destination_get(*, workspace: Any, destination_id: Any) -> Destination | None:
    pk = _uuid(destination_id)
    if pk is None:
        return None
    return destination_list(workspace=workspace).filter(pk=pk).first()


def sync_list(*, workspace: Any) -> QuerySet[Sync]:
    return (
        Sync.objects.filter(workspace=workspace)
        .select_related("audience", "destination")
        .order_by("-created_at")
    )


def sync_get(*, workspace: Any, sync_id: Any) -> Sync | None:
    pk = integer_id(sync_id)
    if pk is None:
        return None
    return sync_list(workspace=workspace).filter(pk=pk).first()


def sync_runs(*, sync: Sync) -> QuerySet[SyncRun]:
    """A sync's runs, newest first."""
    return SyncRun.objects.filter(sync=sync).order_by("-created_at")


def sync_run_get(*, workspace: Any, run_id: Any) -> SyncRun | None:
    pk = _uuid(run_id)
    if pk is None:
        return None
    return SyncRun.objects.filter(workspace=workspace, pk=pk).first()


def delivery_get(*, workspace: Any, delivery_id: Any) -> Delivery | None:
    pk = _uuid(delivery_id)
    if pk is None:
        return None
    return (
        Delivery.objects.filter(workspace=workspace, pk=pk)
        .select_related("workspace", "destination", "audience")
        .first()
    )
