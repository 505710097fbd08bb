"""Activation writes: a thin facade over the modules that implement them (each function's
docstring is in its module)."""

from __future__ import annotations

# Audiences, membership, computed traits and lifecycle stages (activation.audiences,
# .membership, .computed, .lifecycle, .realtime).
from activation.audiences import audience_create, audience_update  # noqa: F401
from activation.computed import (  # noqa: F401
    computed_trait_create,
    computed_trait_recompute,
    computed_trait_update,
    computed_traits_update,
)

# Changing a destination (activation.destination_edits).
from activation.destination_edits import destination_update  # noqa: F401

# Destinations, syncs and removals (activation.destinations, .sync, .removals).
from activation.destinations import destination_create, sync_create  # noqa: F401
from activation.lifecycle import (  # noqa: F401
    lifecycle_stage_create,
    lifecycle_stage_update,
    lifecycle_stages_ensure_defaults,
)

# Revealing audience members' userId / anonymousId, audited (activation.members).
from activation.members import members_identifiers_reveal  # noqa: F401
from activation.membership import (  # noqa: F401
    MembershipDelta,
    audience_refresh,
    audiences_refresh_for_profiles,
    memberships_end,
)

# What /v1/personalize may expose (activation.personalization).
from activation.personalization import personalization_config_set  # noqa: F401
from activation.realtime import profiles_touched  # noqa: F401
from activation.removals import removal_retry  # noqa: F401
from activation.sync import sync_run_start, syncs_start_due  # noqa: F401
