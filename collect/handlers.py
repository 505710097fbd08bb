"""The intake buffer as a store of personal data (see cdp.core.registry).

Rows live seconds: a request's messages wait there until a worker stores them. Nothing in a
row says whose messages it holds without decrypting every row, so an export reports the
buffer's state, and an erasure first drains the buffer (running first), so that the person's
pending messages reach the stores the later handlers erase (or, the person's identifiers being
suppressed by then, are dropped). Batches another worker is storing at that moment are waited
for; batches received after the erasure began are not (when drained, they drop the person's
messages as suppressed). Batches set aside after repeated failures are opened and the person's
messages taken out of them; the rest wait there for a steward's retry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from cdp.core import registry
from cdp.core.registry import ErasureReport, ErasureStatus, PersonalDataHandler
from collect import intake
from collect.models import IntakeBatch


def export_intake(profile: Any) -> dict[str, Any]:
    pending = IntakeBatch.objects.filter(workspace_id=profile.workspace_id).count()
    return {"intake_buffer": {"pending_batches_in_workspace": pending}}


def settle_intake(workspace_id: int, began: datetime) -> None:
    """Before the erasure's transaction: store what was received before it began, waiting for
    batches other workers hold."""
    intake.intake_drain_before(workspace_id=workspace_id, received_before=began)


def erase_intake(profile: Any) -> ErasureReport:
    """What was received before the erasure began is stored by now (settled before the
    erasure's transaction; drained here, waiting for other workers, when the erasure runs
    inside a caller's transaction); then the person's messages (suppressed by now) are taken
    out of batches set aside after failures."""
    return _erase(profile.workspace, matched=True)


def erase_intake_unmatched(workspace: Any) -> ErasureReport:
    """No profile matched the contact: the same, for messages carrying it (suppressed by now)
    that the buffer may hold."""
    return _erase(workspace, matched=False)


def _erase(workspace: Any, *, matched: bool) -> ErasureReport:
    began = registry.erasure_began()
    stored = 0
    if began is None:  # not settled: the erasure runs inside a caller's transaction
        began = timezone.now()
        stored = intake.intake_drain_before(workspace_id=workspace.pk, received_before=began).stored
    # Settled, nothing is waited for here, under the erasure's locks: what is still in flight
    # from before the erasure began is reported.
    held = intake.intake_live_before(workspace_id=workspace.pk, received_before=began)
    purged = intake.intake_purge_suppressed(workspace=workspace, received_before=began)
    problems = []
    if purged.unreadable:
        problems.append(
            f"batches set aside after repeated failures could not be checked ({purged.unreadable})"
        )
    if held:
        problems.append(f"batches another worker held were not stored in time ({held})")
    left = purged.unreadable + held
    if left:
        status = ErasureStatus.FAILED
    elif matched or purged.removed:
        status = ErasureStatus.ERASED
    else:
        status = ErasureStatus.NOTHING_FOUND
    return ErasureReport(
        store="collect.intake",
        status=status,
        counts={
            "messages_drained": stored,
            "set_aside_messages_removed": purged.removed,
            "batches_left": left,
        },
        detail="; ".join(problems),
    )


INTAKE_HANDLER = PersonalDataHandler(
    name="collect.intake",
    models=("collect.IntakeBatch",),
    export=export_intake,
    erase=erase_intake,
    erase_order=0,
    settle=settle_intake,
    erase_unmatched=erase_intake_unmatched,
)


# --- bulk imports -----------------------------------------------------------------------------
#
# An uploaded import file waits sealed (ImportChunk) until a worker has run it, minutes at
# most, then is deleted and its key destroyed. Its rows are not attributable to a person
# without decrypting and parsing the whole file; an erasure adds the person's identifiers to
# the suppression list first, so when a pending upload runs the person's rows are dropped.
# Error files never hold values of identifier or personal-data columns (they are masked, see
# collect.imports.rows.RowBuilder.masked).


def export_imports(profile: Any) -> dict[str, Any]:
    from collect.enums import ImportStatus
    from collect.models import ImportJob

    jobs = ImportJob.objects.filter(workspace_id=profile.workspace_id)
    return {
        "imports": {
            "pending_uploads_in_workspace": jobs.filter(
                status__in=(ImportStatus.QUEUED, ImportStatus.RUNNING)
            ).count(),
            "error_files_hold_personal_data": False,
        }
    }


def erase_imports(profile: Any) -> ErasureReport:
    from collect.enums import ImportStatus
    from collect.models import ImportChunk

    pending = (
        ImportChunk.objects.filter(
            job__workspace_id=profile.workspace_id,
            job__status__in=(ImportStatus.QUEUED, ImportStatus.RUNNING),
        )
        .values("job_id")
        .distinct()
        .count()
    )
    if pending == 0:
        return ErasureReport(
            store="collect.imports", status=ErasureStatus.NOTHING_FOUND, counts={"uploads": 0}
        )
    return ErasureReport(
        store="collect.imports",
        status=ErasureStatus.RETAINED,
        counts={"pending_uploads": pending},
        detail="uploads waiting for a worker stay sealed until processed; the person's rows "
        "in them are dropped then (suppressed identifiers) and the upload is shredded",
    )


IMPORTS_HANDLER = PersonalDataHandler(
    name="collect.imports",
    models=("collect.ImportJob", "collect.ImportChunk"),
    export=export_imports,
    erase=erase_imports,
    erase_order=0,
)
