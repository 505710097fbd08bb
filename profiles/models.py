"""Workspaces, API tokens, profiles and the data keys that protect each profile's data."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from cdp.core.ids import uuid7
from profiles.enums import WorkspaceRole


class Workspace(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        permissions = [(role.value, role.label) for role in WorkspaceRole]

    def __str__(self) -> str:
        return self.name


class ApiToken(models.Model):
    """A management-API token for one workspace. Only a SHA-256 of the secret is stored."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    permissions = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_permission(self, codename: str) -> bool:
        return codename in self.permissions


class Profile(models.Model):
    """One person in a workspace. Its personal data lives in related rows, sealed under the
    data keys it owns."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="profiles")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["workspace", "created_at"], name="profile_ws_created")]

    def __str__(self) -> str:
        return f"Profile {self.id}"


class DataKey(models.Model):
    """A profile's data key, wrapped by a master key (KEK). Destroying it (crypto-shredding)
    clears `wrapped` for good; the row stays as evidence of when that happened."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="data_keys")
    profile = models.ForeignKey(
        Profile, null=True, blank=True, on_delete=models.SET_NULL, related_name="data_keys"
    )
    kek_id = models.CharField(max_length=64)
    wrapped = models.BinaryField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    rewrapped_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["profile"], name="datakey_profile"),
            models.Index(fields=["kek_id"], name="datakey_kek"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(destroyed_at__isnull=True, wrapped__isnull=False)
                    | models.Q(destroyed_at__isnull=False, wrapped__isnull=True)
                ),
                name="datakey_wrapped_xor_destroyed",
            )
        ]

    def __str__(self) -> str:
        return f"Data key {self.id}"
