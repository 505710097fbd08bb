from celery import shared_task

from collect import intake
from collect.imports import services as import_services
from collect.imports import storage as import_storage
from profiles import services as profile_services


@shared_task(name="collect.tasks.intake_drain", acks_late=True)
def intake_drain() -> int:
    """Drain the intake buffer into the identity pipeline (no arguments: the rows are the
    queue; several drains may run at once, each skipping the others' rows)."""
    return intake.intake_drain()


@shared_task(name="collect.tasks.intake_keys_shred")
def intake_keys_shred() -> int:
    """Destroy intake keys that seal nothing any more (scheduled hourly): the intake buffer's,
    and those of imports whose upload was processed or whose error file expired."""
    import_services.import_files_expire()
    in_use = intake.intake_keys_in_use() | import_storage.import_keys_in_use()
    return profile_services.intake_keys_shred(in_use=in_use)


@shared_task(name="collect.tasks.import_job_run", acks_late=True)
def import_job_run(job_id: str) -> dict[str, object]:
    """Run an uploaded import (collect.imports); the argument is the job's id, never data."""
    job = import_services.import_job_run(job_id=job_id)
    return {"job": job_id, "status": job.status, "rows_ok": job.rows_ok}
