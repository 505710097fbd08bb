"""Audiences: creation and changes (rules checked, changes audited), evaluation and preview."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from auditlog.context import set_actor
from django.db import transaction
from django.db.models import QuerySet

from activation.enums import AudienceStatus
from activation.exceptions import AudienceInvalid, AudienceKeyTaken
from activation.models import DESCRIPTION_MAX_LENGTH, Audience, AudienceMembership
from activation.rules import compile_rules, profiles_matching
from profiles.enums import ProfileStatus

KEY_PATTERN = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
EDITABLE = ("name", "description", "rules", "realtime", "status")


@contextlib.contextmanager
def _acting(actor: Any) -> Iterator[None]:
    """Attribute the audit entries of the block to `actor` (the admin and the API set it
    already; a service called from elsewhere with an actor sets it here)."""
    if actor is None:
        yield
        return
    with set_actor(actor):
        yield


def audience_rules_validate(*, workspace: Any, rules: Any, audience_key: str | None = None) -> None:
    """Raise RuleError (JSON pointer + message) unless `rules` compile in this workspace;
    `audience_key`, the audience the rules are for, may not be referred back to."""
    compile_rules(workspace=workspace, rules=rules, audience_key=audience_key)


def audience_profiles(*, workspace: Any, rules: Any, at: datetime | None = None) -> QuerySet[Any]:
    """The active, unrestricted profiles matching `rules` at `at` (now): one SQL query."""
    return profiles_matching(workspace=workspace, rules=rules, at=at)


@dataclass(frozen=True)
class AudiencePreview:
    count: int
    sample_profile_ids: list[UUID]


def audience_preview(*, workspace: Any, rules: Any, sample: int = 10) -> AudiencePreview:
    """How many profiles the rules match now, and the ids of a few of them (newest first)."""
    profiles = audience_profiles(workspace=workspace, rules=rules)
    ids = list(profiles.order_by("-created_at", "-pk").values_list("pk", flat=True)[:sample])
    return AudiencePreview(count=profiles.count(), sample_profile_ids=ids)


@transaction.atomic
def audience_create(
    *,
    workspace: Any,
    key: str,
    name: str,
    rules: Any,
    realtime: bool = False,
    actor: Any = None,
    description: str = "",
) -> Audience:
    """A new audience (rules checked, audited); its membership fills at the next refresh."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise AudienceInvalid("key", "An audience key is 1-64 letters, digits, '-' or '_'.")
    _check_texts(name=name, description=description)
    if Audience.objects.filter(workspace=workspace, key=key).exists():
        raise AudienceKeyTaken()
    audience_rules_validate(workspace=workspace, rules=rules, audience_key=key)
    with _acting(actor):
        return Audience.objects.create(
            workspace=workspace,
            key=key,
            name=name or key,
            description=description,
            rules=rules,
            realtime=realtime,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )


@transaction.atomic
def audience_update(*, audience: Audience, actor: Any = None, **fields: Any) -> Audience:
    """Change an audience's name, description, rules, realtime flag or status (rules checked,
    audited). The key stays: other audiences refer to it."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        field = sorted(unknown)[0]
        raise AudienceInvalid(field, f"An audience's {field} cannot be changed.")
    if "status" in fields and fields["status"] not in AudienceStatus.values:
        raise AudienceInvalid(
            "status", f"Unknown status; choose from: {', '.join(AudienceStatus.values)}."
        )
    _check_texts(**{k: v for k, v in fields.items() if k in ("name", "description")})
    if "rules" in fields:
        audience_rules_validate(
            workspace=audience.workspace, rules=fields["rules"], audience_key=audience.key
        )
    for name, value in fields.items():
        setattr(audience, name, value)
    with _acting(actor):
        audience.save()
    return audience


def _check_texts(**texts: Any) -> None:
    """The name and description fit their columns (a longer value would fail the insert)."""
    limits = {
        "name": Audience._meta.get_field("name").max_length,
        "description": DESCRIPTION_MAX_LENGTH,
    }
    for field, value in texts.items():
        if not isinstance(value, str):
            raise AudienceInvalid(field, f"The {field} is text.")
        if len(value) > (limits[field] or 0):
            raise AudienceInvalid(field, f"The {field} is at most {limits[field]} characters.")


def audience_get(*, workspace: Any, key: str) -> Audience | None:
    """The workspace's audience with this key; None for a key that cannot be one (it comes from
    the URL as given: PostgreSQL would refuse a NUL in it rather than find nothing)."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        return None
    return Audience.objects.filter(workspace=workspace, key=key).first()


def audience_list(*, workspace: Any) -> QuerySet[Audience]:
    return Audience.objects.filter(workspace=workspace).order_by("key")


def audience_members(*, audience: Audience) -> QuerySet[AudienceMembership]:
    """The audience's current members that may be processed now: a profile restricted since the
    last refresh is left out here too, not only at the next refresh."""
    return AudienceMembership.objects.filter(
        audience=audience, profile__status=ProfileStatus.ACTIVE, profile__restricted=False
    ).order_by("entered_at", "profile_id")


def audiences_of_profile(*, workspace: Any, profile_id: Any) -> QuerySet[Audience]:
    """The active audiences the profile is a member of."""
    return Audience.objects.filter(
        workspace=workspace,
        status=AudienceStatus.ACTIVE,
        memberships__profile_id=profile_id,
    ).order_by("key")
