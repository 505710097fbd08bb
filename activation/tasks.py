"""Celery entry points of activation: ids in, one service call, counts out (never personal
data in arguments or results)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="activation.tasks.sync_run", acks_late=True)
def sync_run(run_id: str) -> dict[str, object]:
    """Carry out one queued sync run (activation.sync)."""
    from activation import sync

    run = sync.sync_run_execute(run_id=run_id)
    return {
        "run": str(run.pk),
        "status": run.status,
        "sent": run.sent,
        "removed": run.removed,
        "excluded": dict(run.excluded or {}),
    }


@shared_task(name="activation.tasks.removals_send_due")
def removals_send_due() -> dict[str, int]:
    """Send the removals that are due (scheduled every minute, and after each queueing)."""
    from activation import removals

    done = removals.removals_send_due()
    return {"sent": done.sent, "failed": done.failed, "dead": done.dead}


@shared_task(name="activation.tasks.syncs_start_due")
def syncs_start_due() -> dict[str, int]:
    """Queue a run of each scheduled sync whose interval has passed (every minute)."""
    from activation import sync

    return {"started": len(sync.syncs_start_due())}


@shared_task(name="activation.tasks.profiles_touched", acks_late=True)
def profiles_touched(
    workspace_id: int, profile_ids: list[str], all_audiences: bool = False
) -> dict[str, int]:
    """Computed traits and realtime audience membership of the profiles a batch of events
    touched (queued once per batch by the ingest hook; merges ask for every audience)."""
    from activation import realtime

    done = realtime.profiles_touched(
        workspace_id=workspace_id, profile_ids=profile_ids, all_audiences=all_audiences
    )
    return {
        "profiles": len(profile_ids),
        "values": done.values,
        "audiences": done.audiences,
        "entered": done.entered,
        "exited": done.exited,
    }


@shared_task(name="activation.tasks.audience_refresh", acks_late=True)
def audience_refresh(audience_id: int) -> dict[str, int]:
    """A full refresh of one audience's membership."""
    from activation import membership
    from activation.models import Audience

    audience = Audience.objects.select_related("workspace").get(pk=audience_id)
    delta = membership.audience_refresh(audience=audience)
    return {"audience": audience_id, "entered": delta.entered, "exited": delta.exited}


@shared_task(name="activation.tasks.audiences_refresh_all")
def audiences_refresh_all() -> dict[str, int]:
    """Scheduled (CELERY_BEAT_SCHEDULE): queue a full refresh of every active audience, so
    that windows move on and non-realtime audiences catch up."""
    from activation.enums import AudienceStatus
    from activation.models import Audience

    ids = list(
        Audience.objects.filter(status=AudienceStatus.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for audience_id in ids:
        audience_refresh.delay(audience_id)
    return {"queued": len(ids)}


@shared_task(name="activation.tasks.computed_trait_recompute", acks_late=True)
def computed_trait_recompute(trait_id: int) -> dict[str, int]:
    """Recompute one computed trait for every profile."""
    from activation import computed
    from activation.models import ComputedTrait

    trait = ComputedTrait.objects.select_related("workspace").get(pk=trait_id)
    return {"trait": trait_id, "values": computed.computed_trait_recompute(trait=trait)}


@shared_task(name="activation.tasks.computed_traits_recompute_all")
def computed_traits_recompute_all() -> dict[str, int]:
    """Scheduled (CELERY_BEAT_SCHEDULE): queue a full recompute of every enabled computed
    trait, so that windowed values decay as time passes."""
    from activation.models import ComputedTrait

    ids = list(
        ComputedTrait.objects.filter(enabled=True).order_by("pk").values_list("pk", flat=True)
    )
    for trait_id in ids:
        computed_trait_recompute.delay(trait_id)
    return {"queued": len(ids)}
