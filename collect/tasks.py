from celery import shared_task

from collect import intake
from profiles import services as profile_services


@shared_task(name="collect.tasks.intake_drain", acks_late=True)
def intake_drain() -> int:
    """Drain the intake buffer into the identity pipeline (no arguments: the rows are the
    queue; several drains may run at once, each skipping the others' rows)."""
    return intake.intake_drain()


@shared_task(name="collect.tasks.intake_keys_shred")
def intake_keys_shred() -> int:
    """Destroy intake keys that seal nothing any more (scheduled hourly)."""
    return profile_services.intake_keys_shred(in_use=intake.intake_keys_in_use())
