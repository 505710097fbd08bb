"""Activation reads, always scoped by workspace: a thin facade over the modules that
implement them (each function's docstring is in its module)."""

from __future__ import annotations

# Audience rules, evaluation and membership; computed traits (activation.audiences,
# .computed, .rules).
from activation.audiences import (  # noqa: F401
    AudiencePreview,
    audience_get,
    audience_list,
    audience_members,
    audience_preview,
    audience_profiles,
    audience_rules_validate,
    audiences_of_profile,
)
from activation.computed import computed_trait_list, computed_values_for_profile  # noqa: F401

# The delivery ledger (activation.ledger).
from activation.ledger import delivery_explain, delivery_search  # noqa: F401

# Destinations, syncs, runs and deliveries by id, workspace-scoped (activation.lookups).
from activation.lookups import (  # noqa: F401
    delivery_get,
    destination_get,
    destination_list,
    sync_get,
    sync_list,
    sync_run_get,
    sync_runs,
)

# Audience members' userId / anonymousId, masked (activation.members).
from activation.members import (  # noqa: F401
    audience_preview_sample,
    identifier_types,
    members_identifiers_masked,
)

# What a website may read about its visitor (activation.personalization).
from activation.personalization import (  # noqa: F401
    Personalization,
    personalization_config_get,
    personalization_for_visitor,
)
from activation.rules import RuleError  # noqa: F401
from activation.rules import schema as audience_rules_schema  # noqa: F401
