"""What a website may read about its visitor (`GET /v1/personalize`, served by collect): the
keys of the audiences the visitor is in and the traits the workspace chose to expose, only when
the personalization purpose allows processing the visitor now.

Nothing here is personal data by construction: trait keys must be classified as plain
attributes (checked when the settings are saved, and again at every answer, since a key may be
reclassified as personal data later), and computed traits aggregate plain event properties
only. Every refusal is an empty answer with a reason, never an error: a website renders its
default content either way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from auditlog.context import set_actor
from django.db import transaction

from activation.audiences import audiences_of_profile
from activation.computed import computed_trait_list, computed_values_for_profile
from activation.exceptions import PersonalizationInvalid, UserIdNotAccepted
from activation.models import PersonalizationConfig
from consent import selectors as consent_selectors
from profiles import selectors as profile_selectors
from profiles.enums import IdentifierType
from profiles.exceptions import ProfileNotFound

# Why an answer is empty.
DISABLED = "disabled"
UNKNOWN = "unknown"
RESTRICTED = "restricted"
NO_CONSENT = "no_consent"
MAX_KEYS = 50
SETTINGS = ("enabled", "purpose", "expose_audiences", "accept_user_id", "traits", "computed_traits")


@dataclass(frozen=True)
class Personalization:
    audiences: list[str] = field(default_factory=list)
    traits: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def personalization_config_get(*, workspace: Any) -> PersonalizationConfig:
    """The workspace's settings; an unsaved default (audiences only, no traits, the
    `personalization` purpose, anonymousId lookups only) when it has none."""
    found = PersonalizationConfig.objects.filter(workspace=workspace).first()
    return found or PersonalizationConfig(workspace=workspace)


def _keys(value: Any, name: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(k, str) and k for k in value):
        raise PersonalizationInvalid(name, f"`{name}` is a list of keys.")
    if len(value) > MAX_KEYS:
        raise PersonalizationInvalid(name, f"At most {MAX_KEYS} keys.")
    return list(dict.fromkeys(value))


@transaction.atomic
def personalization_config_set(
    *, workspace: Any, actor: Any = None, **settings: Any
) -> PersonalizationConfig:
    """Save the workspace's personalization settings (those given; the others kept): traits
    must be classified as plain attributes, computed traits and the purpose must exist."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise PersonalizationInvalid(unknown[0], f"Unknown setting `{unknown[0]}`.")
    config = personalization_config_get(workspace=workspace)
    for name in ("enabled", "expose_audiences", "accept_user_id"):
        if name in settings and not isinstance(settings[name], bool):
            raise PersonalizationInvalid(name, f"`{name}` is true or false.")
    if "purpose" in settings:
        purpose = settings["purpose"]
        if (
            not isinstance(purpose, str)
            or consent_selectors.purpose_get(workspace=workspace, key=purpose) is None
        ):
            raise PersonalizationInvalid("purpose", "No purpose of the workspace has this key.")
    if "traits" in settings:
        settings["traits"] = _keys(settings["traits"], "traits")
        plain = profile_selectors.trait_keys_attribute(workspace=workspace)
        refused = [k for k in settings["traits"] if k not in plain]
        if refused:
            raise PersonalizationInvalid(
                "traits",
                f"Only traits classified as plain attributes can be exposed; not: "
                f"{', '.join(refused)}.",
            )
    if "computed_traits" in settings:
        settings["computed_traits"] = _keys(settings["computed_traits"], "computed_traits")
        known = set(computed_trait_list(workspace=workspace).values_list("key", flat=True))
        missing = [k for k in settings["computed_traits"] if k not in known]
        if missing:
            raise PersonalizationInvalid(
                "computed_traits", f"No computed trait with the key(s): {', '.join(missing)}."
            )
    for name, value in settings.items():
        setattr(config, name, value)
    both = sorted(set(config.traits) & set(config.computed_traits))
    if both:
        raise PersonalizationInvalid(
            "computed_traits", f"A key is both a trait and a computed trait: {', '.join(both)}."
        )
    if actor is not None:
        with set_actor(actor):
            config.save()
    else:
        config.save()
    return config


def _visitor(workspace: Any, identities: Sequence[tuple[str, str]]) -> Any:
    for identifier_type, value in identities:
        found = profile_selectors.profile_find_by_identifier(
            workspace=workspace, identifier_type=identifier_type, value=value
        )
        if found is None:
            continue
        try:  # an identity of a profile absorbed by a merge answers for the survivor
            return profile_selectors.profile_get(workspace=workspace, profile_id=found.pk)
        except ProfileNotFound:
            continue
    return None


def personalization_for_visitor(
    *,
    workspace: Any,
    identities: Sequence[tuple[str, str]],
    jurisdiction: str = "",
    gpc: bool = False,
) -> Personalization:
    """The visitor's audiences and exposed traits, or an empty answer with the reason: the
    workspace turned personalization off, the visitor is unknown (in this workspace), their
    processing is restricted, or the purpose does not allow it now (for the visitor's
    jurisdiction; a GPC signal refuses a purpose that is a sale or sharing). `identities` are
    (type, value), strongest first; a userId is refused unless the workspace accepts it."""
    config = personalization_config_get(workspace=workspace)
    if not config.enabled:
        return Personalization(reason=DISABLED)
    if not config.accept_user_id and any(t == IdentifierType.USER_ID for t, _ in identities):
        raise UserIdNotAccepted()
    profile = _visitor(workspace, identities)
    if profile is None:
        return Personalization(reason=UNKNOWN)
    if profile.restricted:
        return Personalization(reason=RESTRICTED)
    purpose = consent_selectors.purpose_get(workspace=workspace, key=config.purpose)
    if purpose is None or (gpc and purpose.sale_or_share):
        return Personalization(reason=NO_CONSENT)
    allowed = (
        consent_selectors.consent_gate_profiles(
            workspace=workspace, purpose=purpose, jurisdiction=jurisdiction
        )
        .filter(pk=profile.pk)
        .exists()
    )
    if not allowed:
        return Personalization(reason=NO_CONSENT)
    audiences: list[str] = []
    if config.expose_audiences:
        audiences = list(
            audiences_of_profile(workspace=workspace, profile_id=profile.pk).values_list(
                "key", flat=True
            )
        )
    traits: dict[str, Any] = {}
    if config.traits:
        # Checked again here: a key reclassified as personal data since is never answered.
        plain = profile_selectors.trait_keys_attribute(workspace=workspace)
        attributes = profile.attributes or {}
        traits = {k: attributes[k] for k in config.traits if k in plain and k in attributes}
    if config.computed_traits:
        values = computed_values_for_profile(workspace=workspace, profile_id=profile.pk)
        traits.update({k: values[k] for k in config.computed_traits if k in values})
    return Personalization(audiences=audiences, traits=traits)
