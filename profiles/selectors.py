"""Reads for workspaces, tokens, profiles and data keys; always scoped by workspace."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

from cdp.core.crypto import blind_index
from profiles.enums import IdentifierType, ProfileStatus, Survivorship, WorkspaceRole
from profiles.exceptions import ProfileNotFound, WorkspaceNotFound
from profiles.identifiers import (
    FALLBACK_PRIORITY,
    normalize_identifier,
    normalize_identifier_type,
)
from profiles.ingest import pick_surviving_value
from profiles.models import (
    ApiToken,
    DataKey,
    Event,
    Identity,
    IdentityRule,
    Merge,
    MergeConflict,
    Profile,
    Source,
    Trait,
    TraitSchema,
    Workspace,
)
from profiles.views_model import MASK, IdentityView, TraitView

ROLE_PERMS = [f"profiles.{role}" for role in WorkspaceRole.values]


def workspace_get(*, slug: str) -> Workspace:
    try:
        return Workspace.objects.get(slug=slug)
    except Workspace.DoesNotExist:
        raise WorkspaceNotFound() from None


def workspace_list_for_user(
    *, user: AbstractBaseUser | AnonymousUser, role: str | None = None
) -> QuerySet[Workspace]:
    """Workspaces the user holds any role on (or `role`); superusers see all."""
    if not user.is_authenticated or not user.is_active:
        return Workspace.objects.none()
    if getattr(user, "is_superuser", False):
        return Workspace.objects.all()
    perms = [f"profiles.{role}"] if role else ROLE_PERMS
    return get_objects_for_user(
        user, perms, klass=Workspace, any_perm=True, accept_global_perms=False
    )


def user_has_role(*, user: Any, workspace: Workspace, role: str) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    return bool(user.has_perm(f"profiles.{role}", workspace))


def api_token_get_active(*, token_hash: str) -> ApiToken | None:
    return (
        ApiToken.objects.select_related("workspace")
        .filter(token_hash=token_hash, revoked_at__isnull=True)
        .first()
    )


def profile_get(*, workspace: Workspace, profile_id: Any) -> Profile:
    """A profile of the workspace; an id absorbed by a merge answers with the survivor."""
    try:
        profile = Profile.objects.get(workspace=workspace, pk=profile_id)
    except (Profile.DoesNotExist, ValueError, DjangoValidationError):
        raise ProfileNotFound() from None
    hops = 0
    while profile.status == ProfileStatus.MERGED and profile.merged_into_id and hops < 100:
        profile = Profile.objects.get(pk=profile.merged_into_id)
        hops += 1
    return profile


def profile_find_by_identifier(
    *, workspace: Workspace, identifier_type: str, value: str
) -> Profile | None:
    """Look a profile up by an identifier value, through its blind index (no decryption)."""
    kind = normalize_identifier_type(identifier_type)
    normalized = normalize_identifier(kind, value)
    if not kind or normalized is None:
        return None
    index = blind_index(workspace.pk, kind, normalized)
    identity = (
        Identity.objects.filter(workspace=workspace, identifier_type=kind, blind_index=index)
        .select_related("profile")
        .first()
    )
    return identity.profile if identity else None


LOOKUP_TYPES = tuple(IdentifierType.values)


def profile_list(*, workspace: Workspace) -> QuerySet[Profile]:
    return Profile.objects.filter(workspace=workspace, status=ProfileStatus.ACTIVE).order_by(
        "-created_at"
    )


def profile_identities(
    *, workspace: Workspace, profile: Profile, reveal: bool = False
) -> list[IdentityView]:
    """A profile's identities; values masked unless `reveal` (callers audit reveals)."""
    rows = (
        Identity.objects.filter(workspace=workspace, profile=profile)
        .select_related("source")
        .order_by("identifier_type", "first_seen_at")
    )
    return [
        IdentityView(
            id=i.pk,
            type=i.identifier_type,
            value=i.value if reveal else MASK,
            source=i.source.name if i.source else None,
            first_seen_at=i.first_seen_at,
            last_seen_at=i.last_seen_at,
        )
        for i in rows
    ]


def profile_traits(
    *, workspace: Workspace, profile: Profile, reveal: bool = False
) -> list[TraitView]:
    """A profile's traits after survivorship. PII values are decrypted only when `reveal`."""
    policies = dict(
        TraitSchema.objects.filter(workspace=workspace).values_list("key", "survivorship")
    )
    grouped: dict[str, list[Trait]] = {}
    for trait in (
        Trait.objects.filter(workspace=workspace, profile=profile)
        .select_related("source")
        .defer("value_pii")
    ):
        grouped.setdefault(trait.key, []).append(trait)
    views = []
    for key in sorted(grouped):
        rows = grouped[key]
        policy = policies.get(key, Survivorship.LATEST)
        chosen = pick_surviving_value(
            policy,
            [(t, t.observed_at, t.first_observed_at, t.source.priority) for t in rows],
        )
        value = chosen.value_attribute
        if chosen.is_pii:
            value = chosen.value_pii if reveal else MASK
        views.append(
            TraitView(
                key=key,
                is_pii=chosen.is_pii,
                value=value,
                source=chosen.source.name,
                observed_at=chosen.observed_at,
                candidates=len(rows),
            )
        )
    return views


def profile_events(*, workspace: Workspace, profile: Profile) -> QuerySet[Event]:
    """A profile's event timeline, newest first (sealed PII stays sealed)."""
    return (
        Event.objects.filter(workspace=workspace, profile=profile)
        .select_related("source")
        .defer("sealed")
        .order_by("-timestamp")
    )


def profile_merges(*, workspace: Workspace, profile: Profile) -> QuerySet[Merge]:
    return Merge.objects.filter(workspace=workspace, survivor=profile).order_by("-created_at")


def profile_conflicts(*, workspace: Workspace, profile: Profile) -> QuerySet[MergeConflict]:
    return MergeConflict.objects.filter(workspace=workspace, profile=profile).order_by(
        "-created_at"
    )


def data_key_ids_for_profile(*, workspace: Workspace, profile_id: Any) -> list[Any]:
    return list(
        DataKey.objects.filter(workspace=workspace, profile_id=profile_id).values_list(
            "pk", flat=True
        )
    )


def source_get_by_write_key(*, write_key: str) -> Source | None:
    """The source a write key belongs to (enabled or not), with its workspace; None if unknown.
    Not scoped by workspace: the write key is what tells collection which workspace it is."""
    if not write_key:
        return None
    return Source.objects.select_related("workspace").filter(write_key=write_key).first()


def source_allowed_origins_enabled() -> frozenset[str]:
    """Every origin some enabled source accepts, across workspaces. CORS preflights carry no
    credentials, so they can only be answered against this union; the actual request is then
    checked against its own source's origins."""
    origins: set[str] = set()
    for allowed in Source.objects.filter(enabled=True).values_list("allowed_origins", flat=True):
        origins.update(str(origin) for origin in allowed or ())
    return frozenset(origins)


def source_list(*, workspace: Workspace) -> QuerySet[Source]:
    return Source.objects.filter(workspace=workspace).order_by("name")


def api_token_exists(*, workspace: Workspace, name: str) -> bool:
    return ApiToken.objects.filter(workspace=workspace, name=name, revoked_at__isnull=True).exists()


def workspace_has_events(*, workspace: Workspace) -> bool:
    return Event.objects.filter(workspace=workspace).exists()


def source_get(*, source_id: int) -> Source:
    return Source.objects.select_related("workspace").get(pk=source_id)


def profile_absorbed_ids(*, profile: Profile) -> list[Any]:
    """Ids of the profiles merged into `profile` (they point straight at it)."""
    return list(Profile.objects.filter(merged_into=profile).values_list("pk", flat=True))


def workspace_get_by_id(*, workspace_id: Any) -> Workspace:
    """The workspace with this primary key (ids come from signed tokens, never from input)."""
    try:
        return Workspace.objects.get(pk=workspace_id)
    except (Workspace.DoesNotExist, ValueError, TypeError):
        raise WorkspaceNotFound() from None


def profile_primary_identity(*, workspace: Workspace, profile: Profile) -> tuple[str, str] | None:
    """The profile's strongest identifier as (type, value): lowest identity-rule priority,
    then the earliest seen. Only that one value is decrypted; None if it has none."""
    priority = dict(
        IdentityRule.objects.filter(workspace=workspace).values_list("identifier_type", "priority")
    )
    candidates = Identity.objects.filter(workspace=workspace, profile=profile).defer("value")
    strongest = min(
        candidates,
        key=lambda i: (
            priority.get(i.identifier_type, FALLBACK_PRIORITY),
            i.first_seen_at,
            str(i.pk),
        ),
        default=None,
    )
    if strongest is None:
        return None
    return strongest.identifier_type, str(strongest.value)


def identifier_normalize(*, identifier_type: str, value: object) -> str | None:
    """The canonical form of an identifier value, as ingestion and lookups use it (None when
    not usable), for apps that key records of their own by an identity (the consent ledger)."""
    kind = normalize_identifier_type(identifier_type)
    return normalize_identifier(kind, value) if kind else None
