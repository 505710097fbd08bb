"""Reads for workspaces, tokens, profiles and data keys; always scoped by workspace."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

from profiles.enums import WorkspaceRole
from profiles.exceptions import WorkspaceNotFound
from profiles.models import ApiToken, DataKey, Profile, Workspace

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


def user_has_role(
    *, user: AbstractBaseUser | AnonymousUser, workspace: Workspace, role: str
) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    return bool(user.has_perm(f"profiles.{role}", workspace))


def api_token_get_active(*, token_hash: str) -> ApiToken | None:
    return (
        ApiToken.objects.select_related("workspace")
        .filter(token_hash=token_hash, revoked_at__isnull=True)
        .first()
    )


def profile_get(*, workspace: Workspace, profile_id: object) -> Profile | None:
    return Profile.objects.filter(workspace=workspace, pk=profile_id).first()


def data_key_ids_for_profile(*, workspace: Workspace, profile_id: object) -> list[object]:
    return list(
        DataKey.objects.filter(workspace=workspace, profile_id=profile_id).values_list(
            "pk", flat=True
        )
    )
