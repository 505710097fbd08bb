"""Personal-data handlers for what the profiles app stores (see cdp.core.registry)."""

from __future__ import annotations

from typing import Any

from cdp.core.registry import ErasureReport, ErasureStatus, PersonalDataHandler
from profiles import services
from profiles.models import DataKey, Profile


def export_profile(profile: Profile) -> dict[str, Any]:
    keys = DataKey.objects.filter(profile=profile).order_by("created_at")
    return {
        "profile": {
            "id": str(profile.pk),
            "workspace": profile.workspace.slug,
            "created_at": profile.created_at.isoformat(),
            "updated_at": profile.updated_at.isoformat(),
        },
        "data_keys": [
            {"id": str(k.pk), "created_at": k.created_at.isoformat()} for k in keys
        ],
    }


def erase_profile(profile: Profile) -> ErasureReport:
    key_ids = list(DataKey.objects.filter(profile=profile).values_list("pk", flat=True))
    destroyed = services.data_keys_destroy(key_ids=key_ids)
    deleted, _ = Profile.objects.filter(pk=profile.pk).delete()
    return ErasureReport(
        store="profiles.profile",
        status=ErasureStatus.ERASED if deleted else ErasureStatus.NOTHING_FOUND,
        counts={"data_keys_destroyed": destroyed, "profiles_deleted": deleted},
    )


HANDLERS: list[PersonalDataHandler] = []

# Runs last: every other handler must read and delete its rows before the keys are destroyed.
PROFILE_HANDLER = PersonalDataHandler(
    name="profiles.profile",
    models=("profiles.Profile", "profiles.DataKey"),
    export=export_profile,
    erase=erase_profile,
    erase_order=1000,
)

HANDLERS.append(PROFILE_HANDLER)
