"""The intake buffer as a store of personal data (see cdp.core.registry).

Rows live seconds: a request's messages wait there until a worker stores them. Nothing in a
row says whose messages it holds without decrypting every row, so an export reports the
buffer's state, and an erasure first drains the buffer (running first), so that the person's
pending messages reach the stores the later handlers erase."""

from __future__ import annotations

from typing import Any

from cdp.core.registry import ErasureReport, ErasureStatus, PersonalDataHandler
from collect import intake
from collect.models import IntakeBatch


def export_intake(profile: Any) -> dict[str, Any]:
    pending = IntakeBatch.objects.filter(workspace_id=profile.workspace_id).count()
    return {"intake_buffer": {"pending_batches_in_workspace": pending}}


def erase_intake(profile: Any) -> ErasureReport:
    drained = intake.intake_drain()
    left = IntakeBatch.objects.filter(workspace_id=profile.workspace_id).count()
    return ErasureReport(
        store="collect.intake",
        status=ErasureStatus.ERASED if left == 0 else ErasureStatus.FAILED,
        counts={"messages_drained": drained, "batches_left": left},
        detail="" if left == 0 else "batches set aside after repeated failures remain",
    )


INTAKE_HANDLER = PersonalDataHandler(
    name="collect.intake",
    models=("collect.IntakeBatch",),
    export=export_intake,
    erase=erase_intake,
    erase_order=0,
)
