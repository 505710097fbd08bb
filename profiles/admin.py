"""Admin for workspaces, API tokens, profiles and data keys. Writes go through services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from guardian.admin import GuardedModelAdmin

from cdp.core.admin import ReadOnlyAdminMixin, WorkspaceScopedAdmin, workspaces_for
from profiles import services
from profiles.enums import WorkspaceRole
from profiles.models import ApiToken, DataKey, Profile, Workspace


@admin.register(Workspace)
class WorkspaceAdmin(GuardedModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workspace]:
        return workspaces_for(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and workspaces_for(request).exists()

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # a workspace holds evidence; it is never deleted from the admin

    def save_model(self, request: HttpRequest, obj: Workspace, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
        else:
            created = services.workspace_create(slug=obj.slug, name=obj.name)
            obj.pk = created.pk


class ApiTokenForm(forms.ModelForm):
    permissions = forms.MultipleChoiceField(
        choices=WorkspaceRole.choices, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = ApiToken
        fields = ("workspace", "name", "permissions")


@admin.register(ApiToken)
class ApiTokenAdmin(WorkspaceScopedAdmin):
    form = ApiTokenForm
    list_display = ("name", "workspace", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("workspace",)
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if obj is None:
            return ()
        return ("workspace", "name", "permissions", "prefix", "created_by", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            return
        issued = services.api_token_create(
            workspace=form.cleaned_data["workspace"],
            name=form.cleaned_data["name"],
            permissions=form.cleaned_data["permissions"],
            created_by=request.user,
        )
        obj.pk = issued.token.pk
        messages.warning(
            request,
            f"Token for {issued.token.name}: {issued.secret} — copy it now, it is not shown again.",
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.filter(revoked_at__isnull=True):
            services.api_token_revoke(token=token)
        self.message_user(request, "Tokens revoked.")


@admin.register(Profile)
class ProfileAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    workspace_roles = (WorkspaceRole.VIEW_PROFILES,)
    list_display = ("id", "workspace", "created_at", "updated_at")
    list_filter = ("workspace",)
    date_hierarchy = "created_at"


@admin.register(DataKey)
class DataKeyAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    workspace_roles = (WorkspaceRole.VIEW_AUDIT,)
    list_display = ("id", "workspace", "profile", "kek_id", "created_at", "destroyed_at")
    list_filter = ("workspace", "kek_id")
    exclude = ("wrapped",)
