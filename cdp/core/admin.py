"""Admin base classes: workspace scoping for stewards and read-only evidence tables, and the
JSON form field of their forms."""

from __future__ import annotations

from typing import Any

from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Model, QuerySet
from django.forms.fields import InvalidJSONInput, JSONString
from django.http import HttpRequest
from guardian.shortcuts import get_objects_for_user
from rest_framework.exceptions import ParseError

from cdp.core.api.parsers import NulCharacter, loads

ROLE_CODENAMES = (
    "view_profiles",
    "reveal_pii",
    "manage_consent",
    "handle_requests",
    "manage_audiences",
    "view_audit",
    "merge_profiles",
)


def workspaces_for(request: HttpRequest, *roles: str) -> QuerySet[Any]:
    """Workspaces the admin user holds any of `roles` on (all roles when none given)."""
    model = apps.get_model(settings.CDP_WORKSPACE_MODEL)
    user = request.user
    if user.is_superuser:
        return model.objects.all()
    label = model._meta.app_label
    perms = [f"{label}.{r}" for r in (roles or ROLE_CODENAMES)]
    return get_objects_for_user(user, perms, klass=model, any_perm=True, accept_global_perms=False)


class JSONFormField(forms.JSONField):
    """Django's JSONField, reading as the API does (cdp.core.api.parsers.loads). The standard
    library recursed on deep nesting (RecursionError, a 500, also when the form was shown
    again), and took NaN, Infinity and 1e400, which PostgreSQL's jsonb refuses on save, as it
    refuses a NUL or a lone surrogate: each of these is now the field's error."""

    def _read(self, value: str) -> Any:
        try:
            return loads(value.encode())
        except NulCharacter as exc:
            raise ValidationError(exc.message, code="invalid") from None
        except ParseError as exc:
            raise ValidationError(str(exc.detail), code="invalid") from None
        except UnicodeError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None

    def to_python(self, value: Any) -> Any:
        if self.disabled:
            return value
        if value in self.empty_values:
            return None
        if isinstance(value, list | dict | int | float | JSONString):
            return value
        converted = self._read(value)
        return JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            return self._read(data)
        except ValidationError:
            return InvalidJSONInput(data)


class WorkspaceScopedAdmin(admin.ModelAdmin):
    """Shows a steward only rows of their workspaces. `workspace_path` is the lookup from the
    model to its workspace; `workspace_roles` are the roles that grant access to this admin."""

    formfield_overrides = {models.JSONField: {"form_class": JSONFormField}}
    workspace_path = "workspace"
    workspace_roles: tuple[str, ...] = ()
    # The roles whose workspaces a new row may go into (default: workspace_roles). Admins that
    # some roles only view (configuration) narrow it to the roles that may change it.
    add_roles: tuple[str, ...] = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        allowed = workspaces_for(request, *self.workspace_roles)
        return qs.filter(**{f"{self.workspace_path}__in": allowed})

    def _has_role(self, request: HttpRequest) -> bool:
        return request.user.is_active and (
            request.user.is_superuser or workspaces_for(request, *self.workspace_roles).exists()
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._has_role(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._has_role(request)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "workspace" and not request.user.is_superuser:
            kwargs["queryset"] = workspaces_for(request, *(self.add_roles or self.workspace_roles))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReadOnlyAdminMixin:
    """Evidence tables: visible, never edited or deleted through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
