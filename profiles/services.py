"""Writes for workspaces, roles, API tokens, profiles and data keys."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from cdp.core.crypto import envelope
from cdp.core.crypto.keyring import WrappedKey, get_keyring
from profiles.enums import WorkspaceRole
from profiles.exceptions import UnknownPermission, WorkspaceExists
from profiles.models import ApiToken, DataKey, Profile, Workspace

TOKEN_PREFIX = "cdp_"


@transaction.atomic
def workspace_create(*, slug: str, name: str) -> Workspace:
    """Create a workspace; the slug is its stable public name."""
    if Workspace.objects.filter(slug=slug).exists():
        raise WorkspaceExists()
    return Workspace.objects.create(slug=slug, name=name)


def _check_roles(roles: Iterable[str]) -> list[str]:
    roles = list(dict.fromkeys(roles))
    unknown = sorted(set(roles) - set(WorkspaceRole.values))
    if unknown:
        raise UnknownPermission(
            f"Unknown permission(s): {', '.join(unknown)}. "
            f"Choose from: {', '.join(WorkspaceRole.values)}."
        )
    return roles


@transaction.atomic
def steward_grant_roles(
    *, workspace: Workspace, user: AbstractBaseUser, roles: Iterable[str]
) -> None:
    """Give a steward roles on one workspace (object permissions)."""
    for role in _check_roles(roles):
        assign_perm(f"profiles.{role}", user, workspace)


@transaction.atomic
def steward_revoke_roles(
    *, workspace: Workspace, user: AbstractBaseUser, roles: Iterable[str]
) -> None:
    for role in _check_roles(roles):
        remove_perm(f"profiles.{role}", user, workspace)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


@transaction.atomic
def api_token_create(
    *,
    workspace: Workspace,
    name: str,
    permissions: Iterable[str],
    created_by: AbstractBaseUser | None = None,
) -> IssuedToken:
    """Issue a management-API token; the secret is returned once and only its hash is kept."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        workspace=workspace,
        name=name,
        prefix=secret[:12],
        token_hash=hash_token(secret),
        permissions=_check_roles(permissions),
        created_by=created_by,
    )
    return IssuedToken(token=token, secret=secret)


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    return token


def api_token_touch(*, token: ApiToken) -> None:
    """Record use, at most once a minute (a write per request would be wasteful)."""
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def data_key_create(*, profile: Profile) -> DataKey:
    """Generate a data key owned by `profile` (the plaintext key never leaves the crypto layer)."""
    new = envelope.generate_data_key()
    return DataKey.objects.create(
        id=new.id,
        workspace_id=profile.workspace_id,
        profile=profile,
        kek_id=new.wrapped.kek_id,
        wrapped=new.wrapped.blob,
    )


@transaction.atomic
def profile_create(*, workspace: Workspace) -> tuple[Profile, DataKey]:
    """A new profile with its first data key."""
    profile = Profile.objects.create(workspace=workspace)
    return profile, data_key_create(profile=profile)


@transaction.atomic
def data_keys_destroy(*, key_ids: Iterable[uuid.UUID]) -> int:
    """Crypto-shred: wipe the wrapped keys so every value sealed under them is unreadable."""
    ids = list(key_ids)
    count = DataKey.objects.filter(pk__in=ids, destroyed_at__isnull=True).update(
        wrapped=None, destroyed_at=timezone.now()
    )

    def forget() -> None:
        for key_id in ids:
            envelope.forget_data_key(key_id)

    forget()
    transaction.on_commit(forget)  # and again, in case a read re-cached one before commit
    return count


@dataclass(frozen=True)
class RewrapResult:
    rewrapped: int
    already_current: int
    primary_kek_id: str


def data_keys_rewrap(*, batch_size: int = 1000) -> RewrapResult:
    """Re-wrap every live data key still under an older master key with the primary one.

    Works in batches, each in its own transaction, so a long rotation can be interrupted and
    resumed: running it again only touches keys not yet on the primary KEK (idempotent). Data
    ciphertexts are not touched."""
    primary = get_keyring().primary_id
    done = 0
    while True:
        with transaction.atomic():
            batch = list(
                DataKey.objects.select_for_update(skip_locked=True)
                .filter(destroyed_at__isnull=True)
                .exclude(kek_id=primary)
                .order_by("pk")[:batch_size]
            )
            if not batch:
                break
            now = timezone.now()
            for key in batch:
                rewrapped = envelope.rewrap_data_key(
                    key.id, WrappedKey(kek_id=key.kek_id, blob=bytes(key.wrapped))
                )
                key.kek_id, key.wrapped, key.rewrapped_at = (
                    rewrapped.kek_id,
                    rewrapped.blob,
                    now,
                )
            DataKey.objects.bulk_update(batch, ["kek_id", "wrapped", "rewrapped_at"])
            done += len(batch)
    current = DataKey.objects.filter(destroyed_at__isnull=True, kek_id=primary).count()
    return RewrapResult(rewrapped=done, already_current=current - done, primary_kek_id=primary)
