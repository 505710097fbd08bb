"""Admin for audiences, computed traits, lifecycle stages, destinations, syncs, sync runs,
removals, the delivery ledger and the personalization settings.

Everything is scoped to the workspaces a steward holds `manage_audiences` on (the ledger also
to `view_profiles`: the consent behind each send is part of what profile stewards see). Writes
go through the activation services: a form is checked by running its service in a savepoint
that is rolled back (so a rule error shows on the form, with its JSON pointer), and the save
runs it for real. No identifier value appears anywhere here: previews and member lists name
profiles by id, a destination's secret is write-only, a removal's sealed payload is never
shown."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from rest_framework.exceptions import ParseError

from activation import selectors, services
from activation.enums import RemovalStatus
from activation.exceptions import SyncDisabled, SyncRunning
from activation.models import (
    Audience,
    ComputedTrait,
    Delivery,
    Destination,
    LifecycleStage,
    MembershipChange,
    PersonalizationConfig,
    Removal,
    Sync,
    SyncRun,
)
from cdp.core.admin import JSONFormField, ReadOnlyAdminMixin, WorkspaceScopedAdmin, workspaces_for
from cdp.core.api.parsers import NulCharacter, loads
from cdp.core.exceptions import ApplicationError
from cdp.core.ids import integer_id
from consent import selectors as consent_selectors
from profiles import selectors as profile_selectors
from profiles.enums import WorkspaceRole

MANAGE = WorkspaceRole.MANAGE_AUDIENCES
LEDGER_ROLES = (WorkspaceRole.MANAGE_AUDIENCES, WorkspaceRole.VIEW_PROFILES)
WORKSPACE_FILTER = ("workspace", admin.RelatedOnlyFieldListFilter)
PREVIEW_SAMPLE = 10
RECENT_CHANGES = 20
LEDGER_SEARCH_LIMIT = 200


class _DryRun(Exception):
    """Raised to roll back the savepoint of a check."""


def dry_run(call: Callable[[], Any]) -> ApplicationError | None:
    """Run a service in a savepoint that is always rolled back: its error, or None if it
    would succeed. Forms use it to show a service's refusal on the form."""
    try:
        with transaction.atomic():
            call()
            raise _DryRun
    except _DryRun:
        return None
    except ApplicationError as error:
        return error


def _error_text(error: ApplicationError) -> str:
    path = getattr(error, "path", None)
    return f"at {path}: {error.message}" if path else error.message


def _json_pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _may(request: HttpRequest, workspace: Any, *roles: str) -> bool:
    user = request.user
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    return any(
        profile_selectors.user_has_role(user=user, workspace=workspace, role=role)
        for role in roles or (MANAGE,)
    )


class ActivationStewardAdmin(WorkspaceScopedAdmin):
    """Configuration that audience stewards (`manage_audiences` on the workspace) see and
    change; a row's workspace and key are fixed once it exists."""

    workspace_roles = (MANAGE,)
    identity_fields: tuple[str, ...] = ("workspace", "key")

    def _workspace_of(self, obj: Any) -> Any:
        return getattr(obj, "workspace", None)

    def _may_manage(self, request: HttpRequest, obj: Any | None) -> bool:
        workspace = self._workspace_of(obj) if obj is not None else None
        if workspace is None:
            return self._has_role(request)
        return _may(request, workspace, MANAGE)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request, None)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may_manage(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # memberships, syncs and the ledger point at these rows

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return () if obj is None else self.identity_fields


def _changed(form: forms.ModelForm, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: form.cleaned_data[n] for n in names if n in form.changed_data}


# --- the rules builder (audiences and lifecycle stages) ----------------------------------------


class RulesField(JSONFormField):
    widget = forms.Textarea(
        attrs={
            "rows": 16,
            "cols": 90,
            "spellcheck": "false",
            "class": "rules-editor vLargeTextField",
        }
    )


class _RulesBuilderAdmin(ActivationStewardAdmin):
    """The change form shows the rule language's JSON Schema and a live preview: the page's
    script posts the rules to `preview/` as they are typed, and shows how many profiles match
    now and a sample of them (ids, attributes, identifier types; no identifier value), or
    the rule error with its JSON pointer."""

    change_form_template = "admin/activation/rules_change_form.html"

    def get_urls(self) -> list[Any]:
        meta = self.model._meta
        return [
            path(
                "preview/",
                self.admin_site.admin_view(never_cache(self.preview_view)),
                name=f"{meta.app_label}_{meta.model_name}_preview",
            ),
            *super().get_urls(),
        ]

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        meta = self.model._meta
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        extra = {
            **(extra_context or {}),
            "preview_url": reverse(f"admin:{meta.app_label}_{meta.model_name}_preview"),
            "rules_schema": _json_pretty(selectors.audience_rules_schema()),
            "builder_workspace": getattr(obj, "workspace_id", ""),
        }
        return super().changeform_view(request, object_id, form_url, extra)

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """POST `{"workspace": id, "rules": {...}}` -> `{"count", "sample"}`, or 400 with
        `{"error": {"path", "message"}}`. A workspace the steward holds no role on is a 404."""
        if not self._has_role(request):
            raise PermissionDenied
        if request.method != "POST":
            return JsonResponse({"error": {"path": "/", "message": "POST the rules."}}, status=405)
        try:
            # The API's reader: the standard library recursed on deep nesting, and read NaN,
            # 1e400, NUL and lone surrogates, which PostgreSQL refused in the query (500s).
            body = loads(request.body or b"{}")
        except ParseError as exc:
            return JsonResponse({"error": {"path": "/", "message": str(exc.detail)}}, status=400)
        except NulCharacter as exc:
            return JsonResponse({"error": {"path": "/", "message": exc.message}}, status=400)
        if not isinstance(body, dict):
            body = {}
        workspace_id = integer_id(body.get("workspace", ""))
        workspace = (
            workspaces_for(request, MANAGE).filter(pk=workspace_id).first()
            if workspace_id is not None
            else None
        )
        if workspace is None:
            return JsonResponse(
                {"error": {"path": "/", "message": "Choose one of your workspaces."}}, status=404
            )
        try:
            data = selectors.audience_preview_sample(
                workspace=workspace, rules=body.get("rules"), sample=PREVIEW_SAMPLE
            )
        except selectors.RuleError as error:
            return JsonResponse(
                {"error": {"path": error.path, "message": error.message}}, status=400
            )
        profile_url = "admin:profiles_profile_change"
        for row in data["sample"]:
            row["url"] = reverse(profile_url, args=[row["id"]])
        return JsonResponse(json.loads(json.dumps(data, default=str)))


# --- audiences -------------------------------------------------------------------------------


class AudienceForm(forms.ModelForm):
    rules = RulesField(help_text="The rules in the audience language (schema below).")

    class Meta:
        model = Audience
        fields = ("workspace", "key", "name", "description", "rules", "realtime", "status")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        workspace = data.get("workspace") or getattr(self.instance, "workspace", None)
        key = data.get("key") or self.instance.key
        if workspace is not None and "rules" in data:
            try:
                selectors.audience_rules_validate(
                    workspace=workspace, rules=data["rules"], audience_key=key or None
                )
            except selectors.RuleError as error:
                self.add_error("rules", _error_text(error))
        return data


@admin.register(Audience)
class AudienceAdmin(_RulesBuilderAdmin):
    """Audiences with the rules builder. A save goes through `audience_create` /
    `audience_update` (rules checked, audited); the membership fills at the next refresh or
    with the "Refresh membership now" action. The page lists the latest entries and exits;
    the full history is under membership changes."""

    form = AudienceForm
    list_display = (
        "key",
        "name",
        "workspace",
        "status",
        "realtime",
        "size",
        "last_computed_at",
        "history_link",
    )
    list_filter = (WORKSPACE_FILTER, "status", "realtime")
    list_select_related = ("workspace",)
    ordering = ("workspace", "key")
    search_fields = ("key", "name")
    actions = ("refresh_membership",)
    readonly_after = ("size", "last_computed_at", "created_by", "created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return () if obj is None else (*self.identity_fields, *self.readonly_after)

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        fields = ["workspace", "key", "name", "description", "rules", "realtime", "status"]
        return fields if obj is None else [*fields, *self.readonly_after]

    @admin.display(description="history")
    def history_link(self, obj: Audience) -> str:
        url = reverse("admin:activation_membershipchange_changelist")
        return format_html('<a href="{}?audience__id__exact={}">entries and exits</a>', url, obj.pk)

    def save_model(self, request: HttpRequest, obj: Audience, form: Any, change: bool) -> None:
        names = ("name", "description", "rules", "realtime", "status")
        if change:
            fields = _changed(form, names)
            if fields:
                services.audience_update(audience=obj, actor=request.user, **fields)
            return
        data = form.cleaned_data
        created = services.audience_create(
            workspace=data["workspace"],
            key=data["key"],
            name=data["name"],
            rules=data["rules"],
            realtime=data["realtime"],
            description=data["description"],
            actor=request.user,
        )
        if data["status"] != created.status:
            services.audience_update(audience=created, actor=request.user, status=data["status"])
        form.instance = created
        obj.pk = created.pk

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        audience = self.get_object(request, unquote(object_id))
        extra = {**(extra_context or {})}
        if audience is not None:
            extra["recent_changes"] = list(
                MembershipChange.objects.filter(audience=audience).order_by("-id")[:RECENT_CHANGES]
            )
            extra["history_url"] = (
                reverse("admin:activation_membershipchange_changelist")
                + f"?audience__id__exact={audience.pk}"
            )
        return super().change_view(request, object_id, form_url, extra)

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request, None)

    @admin.action(description="Refresh membership now", permissions=["refresh"])
    def refresh_membership(self, request: HttpRequest, queryset: QuerySet[Audience]) -> None:
        for audience in queryset.select_related("workspace"):
            if not _may(request, audience.workspace, MANAGE):
                raise PermissionDenied
            delta = services.audience_refresh(audience=audience)
            self.message_user(
                request,
                f"{audience.key}: {delta.entered} entered, {delta.exited} left.",
            )


@admin.register(MembershipChange)
class MembershipChangeAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """Entered/exited history of audience membership, by profile id."""

    workspace_path = "audience__workspace"
    workspace_roles = LEDGER_ROLES
    list_display = ("at", "audience", "profile_id", "change")
    list_filter = ("change", ("audience", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("audience",)
    ordering = ("-id",)
    show_full_result_count = False
    fields = ("audience", "profile_id", "change", "at")
    readonly_fields = fields


# --- lifecycle stages ------------------------------------------------------------------------


class LifecycleStageForm(forms.ModelForm):
    rules = RulesField(help_text="The stage's rules in the audience language (schema below).")

    class Meta:
        model = LifecycleStage
        fields = ("workspace", "key", "name", "description", "rules", "position")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        if self.instance.pk:
            stage = LifecycleStage.objects.get(pk=self.instance.pk)
            fields = {n: data[n] for n in ("name", "description", "rules", "position") if n in data}
            error = dry_run(lambda: services.lifecycle_stage_update(stage=stage, **fields))
        else:
            error = dry_run(
                lambda: services.lifecycle_stage_create(
                    workspace=data["workspace"],
                    key=data["key"],
                    name=data["name"],
                    rules=data["rules"],
                    description=data.get("description", ""),
                    position=data.get("position"),
                )
            )
        if error is not None:
            self.add_error("rules" if hasattr(error, "path") else None, _error_text(error))
        return data


@admin.register(LifecycleStage)
class LifecycleStageAdmin(_RulesBuilderAdmin):
    """Lifecycle stages (rules in the audience language, used as `{"lifecycle": key}`)."""

    form = LifecycleStageForm
    list_display = ("key", "name", "workspace", "position", "updated_at")
    list_filter = (WORKSPACE_FILTER,)
    list_select_related = ("workspace",)
    ordering = ("workspace", "position", "key")
    search_fields = ("key", "name")
    actions = ("seed_default_stages",)

    def save_model(
        self, request: HttpRequest, obj: LifecycleStage, form: Any, change: bool
    ) -> None:
        if change:
            fields = _changed(form, ("name", "description", "rules", "position"))
            if fields:
                services.lifecycle_stage_update(stage=obj, **fields)
            return
        data = form.cleaned_data
        created = services.lifecycle_stage_create(
            workspace=data["workspace"],
            key=data["key"],
            name=data["name"],
            rules=data["rules"],
            description=data["description"],
            position=data["position"],
        )
        form.instance = created
        obj.pk = created.pk

    def has_seed_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request, None)

    @admin.action(description="Add the default stages to my workspaces", permissions=["seed"])
    def seed_default_stages(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for workspace in workspaces_for(request, MANAGE).order_by("name"):
            services.lifecycle_stages_ensure_defaults(workspace=workspace)
        self.message_user(request, "Default lifecycle stages are in place.")


# --- computed traits -------------------------------------------------------------------------


class ComputedTraitForm(forms.ModelForm):
    class Meta:
        model = ComputedTrait
        fields = (
            "workspace",
            "key",
            "name",
            "kind",
            "event_name",
            "event_filter",
            "property",
            "window_days",
            "enabled",
        )
        help_texts = {
            "event_filter": 'Property filters in the audience language, e.g. [{"property": '
            '"category", "op": "=", "value": "shoes"}]. Only plain (non-personal) properties.',
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        workspace = data.get("workspace") or self.instance.workspace
        # A definition is checked the same way on add and change: as a new trait that is
        # not computed (the save recomputes it).
        error = dry_run(
            lambda: services.computed_trait_create(
                workspace=workspace,
                key=f"admin-check-{uuid4().hex[:16]}",
                name=data.get("name") or "check",
                kind=data.get("kind") or self.instance.kind,
                event_name=data.get("event_name") or "",
                event_filter=data.get("event_filter") or [],
                property=data.get("property") or "",
                window_days=data.get("window_days"),
                compute=False,
            )
        )
        if error is not None:
            field = getattr(error, "field", None)
            self.add_error(field if field in self.fields else None, _error_text(error))
        return data


@admin.register(ComputedTrait)
class ComputedTraitAdmin(ActivationStewardAdmin):
    """Computed traits (counts, sums, last values over events); a save recomputes them."""

    form = ComputedTraitForm
    list_display = ("key", "name", "workspace", "kind", "event_name", "window_days", "enabled")
    list_filter = (WORKSPACE_FILTER, "kind", "enabled")
    list_select_related = ("workspace",)
    ordering = ("workspace", "key")
    search_fields = ("key", "name", "event_name")
    identity_fields = ("workspace", "key", "kind", "last_computed_at")
    actions = ("recompute",)

    def save_model(self, request: HttpRequest, obj: ComputedTrait, form: Any, change: bool) -> None:
        editable = ("name", "event_name", "event_filter", "property", "window_days", "enabled")
        if change:
            fields = _changed(form, editable)
            if fields:
                services.computed_trait_update(trait=obj, **fields)
            return
        data = form.cleaned_data
        created = services.computed_trait_create(
            workspace=data["workspace"],
            key=data["key"],
            name=data["name"],
            kind=data["kind"],
            event_name=data["event_name"],
            event_filter=data["event_filter"] or [],
            property=data["property"],
            window_days=data["window_days"],
            enabled=data["enabled"],
        )
        form.instance = created
        obj.pk = created.pk

    def has_recompute_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request, None)

    @admin.action(description="Recompute now", permissions=["recompute"])
    def recompute(self, request: HttpRequest, queryset: QuerySet[ComputedTrait]) -> None:
        for trait in queryset.select_related("workspace"):
            if not _may(request, trait.workspace, MANAGE):
                raise PermissionDenied
            values = services.computed_trait_recompute(trait=trait)
            self.message_user(request, f"{trait.key}: {values} values computed.")


# --- destinations ----------------------------------------------------------------------------


class DestinationForm(forms.ModelForm):
    """The secret is write-only: never rendered, kept when left empty."""

    # Named apart from the model's fields: the admin would otherwise bind them to the model
    # (the m2m of purposes, the sealed secret).
    purpose_keys = forms.MultipleChoiceField(
        label="Purposes",
        choices=(),
        widget=forms.CheckboxSelectMultiple,
        help_text="A profile is sent only when every one of these allows it at send time.",
    )
    new_secret = forms.CharField(
        label="Secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only (a webhook's signing key, 16 characters or more). Leave empty "
        "to keep the current one.",
    )

    class Meta:
        model = Destination
        fields = ("workspace", "name", "kind", "data", "config", "min_audience_size", "enabled")
        help_texts = {
            "data": 'What it receives, e.g. {"identifiers": ["email"], "traits": ["country"]}.',
            "config": 'Non-secret settings, e.g. {"url": "https://..."} for a webhook.',
        }

    def __init__(self, *args: Any, workspaces: QuerySet[Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        scope = (
            [self.instance.workspace]
            if not self.instance._state.adding
            else list(workspaces if workspaces is not None else [])
        )
        keys: dict[str, str] = {}
        for workspace in scope:
            for purpose in consent_selectors.purpose_list(workspace=workspace):
                keys.setdefault(purpose.key, f"{purpose.name} ({purpose.key})")
        purposes_field = self.fields["purpose_keys"]
        assert isinstance(purposes_field, forms.MultipleChoiceField)
        purposes_field.choices = sorted(keys.items())
        if not self.instance._state.adding:
            self.initial["purpose_keys"] = [p.key for p in self.instance.purposes.all()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        if not self.instance._state.adding:
            destination = Destination.objects.get(pk=self.instance.pk)
            fields = self.update_fields()
            error = dry_run(lambda: services.destination_update(destination=destination, **fields))
        else:
            error = dry_run(
                lambda: services.destination_create(
                    workspace=data["workspace"],
                    name=data["name"],
                    kind=data["kind"],
                    purposes=data["purpose_keys"],
                    data=data["data"],
                    config=data["config"],
                    secret=data["new_secret"] or None,
                    min_audience_size=data["min_audience_size"],
                )
            )
        if error is not None:
            self.add_error(None, _error_text(error))
        return data

    def update_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        names = ("name", "data", "config", "min_audience_size", "enabled")
        fields = {n: data[n] for n in names if n in self.changed_data}
        if "purpose_keys" in self.changed_data:
            fields["purposes"] = data["purpose_keys"]
        if data.get("new_secret"):
            fields["secret"] = data["new_secret"]
        return fields


@admin.register(Destination)
class DestinationAdmin(ActivationStewardAdmin):
    form = DestinationForm
    list_display = ("name", "kind", "workspace", "purposes_list", "has_secret", "enabled")
    list_filter = (WORKSPACE_FILTER, "kind", "enabled")
    list_select_related = ("workspace",)
    ordering = ("workspace", "name")
    search_fields = ("name",)
    identity_fields = ("workspace", "kind")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        workspaces = workspaces_for(request, MANAGE)

        class ScopedForm(form):  # type: ignore[valid-type, misc]
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, workspaces=workspaces, **kw)

        return ScopedForm

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).prefetch_related("purposes")

    @admin.display(description="purposes")
    def purposes_list(self, obj: Destination) -> str:
        return ", ".join(sorted(p.key for p in obj.purposes.all())) or "—"

    @admin.display(description="secret", boolean=True)
    def has_secret(self, obj: Destination) -> bool:
        # From the key column: the sealed value is never opened for a page.
        return obj.data_key_id is not None

    def save_model(self, request: HttpRequest, obj: Destination, form: Any, change: bool) -> None:
        if change:
            fields = form.update_fields()
            if fields:
                saved = Destination.objects.get(pk=obj.pk)
                services.destination_update(destination=saved, actor=request.user, **fields)
            return
        data = form.cleaned_data
        created = services.destination_create(
            workspace=data["workspace"],
            name=data["name"],
            kind=data["kind"],
            purposes=data["purpose_keys"],
            data=data["data"],
            config=data["config"],
            secret=data["new_secret"] or None,
            min_audience_size=data["min_audience_size"],
            actor=request.user,
        )
        form.instance = created
        obj.pk = created.pk

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return  # the purposes were set by the service


# --- syncs and their runs ----------------------------------------------------------------------


class SyncForm(forms.ModelForm):
    class Meta:
        model = Sync
        fields = ("audience", "destination", "mode", "interval_minutes", "enabled")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors or self.instance.pk:
            return data
        error = dry_run(
            lambda: services.sync_create(
                audience=data["audience"],
                destination=data["destination"],
                mode=data["mode"],
                interval_minutes=data["interval_minutes"],
            )
        )
        if error is not None:
            self.add_error(None, _error_text(error))
        return data


@admin.register(Sync)
class SyncAdmin(ActivationStewardAdmin):
    """Audiences connected to destinations, with a "Run now" action (the run is queued and
    carried out by a worker; its progress is under sync runs)."""

    form = SyncForm
    list_display = (
        "id",
        "audience",
        "destination",
        "workspace",
        "mode",
        "interval_minutes",
        "enabled",
        "last_run_at",
        "deferred",
        "runs_link",
    )
    list_filter = (WORKSPACE_FILTER, "mode", "enabled")
    list_select_related = ("audience", "destination", "workspace")
    ordering = ("-created_at",)
    identity_fields = ("audience", "destination", "last_run_at", "deferred_until", "deferrals")
    actions = ("run_now",)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name in ("audience", "destination"):
            model = Audience if db_field.name == "audience" else Destination
            allowed = workspaces_for(request, MANAGE)
            kwargs["queryset"] = model.objects.filter(workspace__in=allowed).select_related(
                "workspace"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="destination asked to wait")
    def deferred(self, obj: Sync) -> str:
        """Why scheduled runs are held back, while they are: the receiver's "not before" and
        how many runs in a row it deferred."""
        if obj.deferred_until is None or obj.deferred_until <= timezone.now():
            return "—"
        until = timezone.localtime(obj.deferred_until).strftime("%Y-%m-%d %H:%M")
        return f"until {until} ({obj.deferrals} in a row)"

    @admin.display(description="runs")
    def runs_link(self, obj: Sync) -> str:
        url = reverse("admin:activation_syncrun_changelist")
        return format_html('<a href="{}?sync__id__exact={}">runs</a>', url, obj.pk)

    def save_model(self, request: HttpRequest, obj: Sync, form: Any, change: bool) -> None:
        if change:
            # Schedule and switch only: the audience and destination are fixed.
            fields = [f for f in ("mode", "interval_minutes", "enabled") if f in form.changed_data]
            if fields:
                obj.save(update_fields=fields)
            return
        data = form.cleaned_data
        created = services.sync_create(
            audience=data["audience"],
            destination=data["destination"],
            mode=data["mode"],
            interval_minutes=data["interval_minutes"],
            actor=request.user,
        )
        if not data["enabled"]:
            created.enabled = False
            created.save(update_fields=["enabled"])
        form.instance = created
        obj.pk = created.pk

    def has_run_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request, None)

    @admin.action(description="Run now", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Sync]) -> None:
        for sync in queryset.select_related("workspace", "audience", "destination"):
            if not _may(request, sync.workspace, MANAGE):
                raise PermissionDenied
            try:
                run = services.sync_run_start(sync=sync, actor=request.user)
            except (SyncRunning, SyncDisabled) as error:
                self.message_user(request, f"{sync}: {error.message}", messages.WARNING)
                continue
            self.message_user(request, f"{sync}: run {run.pk} queued.")


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """Runs with their progress and counts: sent, removed, and excluded by reason."""

    workspace_roles = (MANAGE,)
    list_display = (
        "created_at",
        "sync",
        "mode",
        "status",
        "progress",
        "sent",
        "removed",
        "excluded_summary",
        "finished_at",
    )
    list_filter = ("status", "mode", ("sync", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("sync__audience", "sync__destination")
    ordering = ("-created_at",)
    show_full_result_count = False
    fields = (
        "id",
        "sync",
        "mode",
        "status",
        "progress",
        "total",
        "processed",
        "sent",
        "removed",
        "excluded_summary",
        "error",
        "artifact",
        "started_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields

    @admin.display(description="progress")
    def progress(self, obj: SyncRun) -> str:
        if not obj.total:
            return "—"
        return f"{obj.processed}/{obj.total} ({100 * obj.processed // obj.total}%)"

    @admin.display(description="excluded")
    def excluded_summary(self, obj: SyncRun) -> str:
        excluded = obj.excluded or {}
        return ", ".join(f"{k}: {v}" for k, v in sorted(excluded.items())) or "—"


@admin.register(Removal)
class RemovalAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """Removals owed to destinations. What the destination needs to find the person is sealed
    and never shown; a dead or failed removal can be put back in the queue."""

    workspace_roles = (MANAGE,)
    list_display = (
        "created_at",
        "destination",
        "audience",
        "profile_id",
        "reason",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
    )
    list_filter = ("status", "reason", ("destination", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("destination", "audience")
    ordering = ("-created_at",)
    show_full_result_count = False
    fields = (
        "id",
        "destination",
        "audience",
        "profile_id",
        "reason",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "sent_at",
    )
    readonly_fields = fields
    actions = ("retry",)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return self._has_role(request)

    @admin.action(description="Retry now", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Removal]) -> None:
        requeued = skipped = 0
        for removal in queryset.select_related("workspace"):
            if not _may(request, removal.workspace, MANAGE):
                raise PermissionDenied
            before = removal.status
            after = services.removal_retry(removal=removal).status
            if before != RemovalStatus.QUEUED and after == RemovalStatus.QUEUED:
                requeued += 1
            else:
                skipped += 1
        if requeued:
            self.message_user(request, f"{requeued} removal(s) queued again.")
        if skipped:
            self.message_user(
                request,
                f"{skipped} removal(s) not queued again: only a dead or failed removal whose "
                "payload is kept can be retried.",
                messages.WARNING,
            )


# --- the delivery ledger ---------------------------------------------------------------------


class LedgerSearchForm(forms.Form):
    profile = forms.UUIDField(required=False, label="Profile id")
    destination = forms.ModelChoiceField(queryset=Destination.objects.none(), required=False)
    audience = forms.ModelChoiceField(queryset=Audience.objects.none(), required=False)

    def __init__(self, *args: Any, workspaces: QuerySet[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        destination = self.fields["destination"]
        audience = self.fields["audience"]
        assert isinstance(destination, forms.ModelChoiceField)
        assert isinstance(audience, forms.ModelChoiceField)
        destination.queryset = Destination.objects.filter(workspace__in=workspaces).order_by("name")
        audience.queryset = Audience.objects.filter(workspace__in=workspaces).order_by("key")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """The delivery ledger: one row per record sent to or removed from a destination. The
    search page answers "why was this person sent to this destination?"."""

    workspace_roles = LEDGER_ROLES
    change_list_template = "admin/activation/delivery/change_list.html"
    search_template = "admin/activation/delivery/search.html"
    explain_template = "admin/activation/delivery/explain.html"
    list_display = (
        "delivered_at",
        "profile_id",
        "destination",
        "audience",
        "action",
        "status",
        "short_hash",
        "explain_link",
    )
    list_filter = ("action", "status", ("destination", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("destination", "audience")
    ordering = ("-delivered_at", "-id")
    show_full_result_count = False
    fields = (
        "id",
        "profile_id",
        "destination",
        "audience",
        "sync_run",
        "action",
        "status",
        "basis",
        "payload_sha256",
        "delivered_at",
    )
    readonly_fields = fields

    @admin.display(description="payload hash")
    def short_hash(self, obj: Delivery) -> str:
        return obj.payload_sha256[:12]

    @admin.display(description="why?")
    def explain_link(self, obj: Delivery) -> str:
        return format_html('<a href="{}">why?</a>', self._explain_url(obj.pk))

    def _explain_url(self, delivery_id: Any) -> str:
        return reverse("admin:activation_delivery_explain", args=[delivery_id])

    def get_urls(self) -> list[Any]:
        return [
            path(
                "search/",
                self.admin_site.admin_view(self.search_view),
                name="activation_delivery_search",
            ),
            path(
                "<uuid:delivery_id>/explain/",
                self.admin_site.admin_view(self.explain_view),
                name="activation_delivery_explain",
            ),
            *super().get_urls(),
        ]

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            **extra,
        }

    def search_view(self, request: HttpRequest) -> HttpResponse:
        """Deliveries of a profile, a destination or an audience (at least one), newest
        first, each with a link to its explanation."""
        allowed = workspaces_for(request, *LEDGER_ROLES)
        if not request.user.is_superuser and not allowed.exists():
            raise PermissionDenied
        form = LedgerSearchForm(request.GET or None, workspaces=allowed)
        rows: list[Delivery] = []
        searched = False
        if form.is_valid() and any(form.cleaned_data.values()):
            searched = True
            data = form.cleaned_data
            for workspace in allowed.order_by("name"):
                if data["destination"] and data["destination"].workspace_id != workspace.pk:
                    continue
                if data["audience"] and data["audience"].workspace_id != workspace.pk:
                    continue
                rows.extend(
                    selectors.delivery_search(
                        workspace=workspace,
                        profile_id=data["profile"],
                        destination=data["destination"],
                        audience=data["audience"],
                    )[:LEDGER_SEARCH_LIMIT]
                )
            rows.sort(key=lambda d: (d.delivered_at, str(d.pk)), reverse=True)
        context = self._context(
            request,
            "Why was this person sent?",
            form=form,
            rows=rows[:LEDGER_SEARCH_LIMIT],
            searched=searched,
            limit=LEDGER_SEARCH_LIMIT,
        )
        return TemplateResponse(request, self.search_template, context)

    def explain_view(self, request: HttpRequest, delivery_id: UUID) -> HttpResponse:
        """One delivery explained (activation.ledger.delivery_explain). A delivery of a
        workspace the steward holds no role on is a 404, like one that does not exist."""
        workspace = (
            workspaces_for(request, *LEDGER_ROLES)
            .filter(pk__in=Delivery.objects.filter(pk=delivery_id).values("workspace_id"))
            .first()
        )
        delivery = (
            selectors.delivery_get(workspace=workspace, delivery_id=delivery_id)
            if workspace is not None
            else None
        )
        if delivery is None:
            raise Http404("No such delivery.")
        explained = selectors.delivery_explain(workspace=delivery.workspace, delivery=delivery)
        context = self._context(
            request,
            "Why was this person sent?",
            delivery=delivery,
            explained=explained,
            rules=_json_pretty(explained["audience"]["rules"]) if explained["audience"] else "",
            search_url=reverse("admin:activation_delivery_search")
            + f"?profile={delivery.profile_id}",
        )
        return TemplateResponse(request, self.explain_template, context)


# --- personalization -------------------------------------------------------------------------


class PersonalizationConfigForm(forms.ModelForm):
    class Meta:
        model = PersonalizationConfig
        fields = (
            "workspace",
            "enabled",
            "purpose",
            "expose_audiences",
            "accept_user_id",
            "traits",
            "computed_traits",
        )
        help_texts = {
            "traits": 'Attribute trait keys, e.g. ["country", "plan"]: only keys classified as '
            "plain attributes are accepted.",
            "computed_traits": 'Computed trait keys, e.g. ["orders_90d"].',
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        workspace = data.get("workspace") or self.instance.workspace
        settings = {n: data[n] for n in self._meta.fields or () if n != "workspace" and n in data}
        settings["traits"] = settings.get("traits") or []
        settings["computed_traits"] = settings.get("computed_traits") or []
        error = dry_run(
            lambda: services.personalization_config_set(workspace=workspace, **settings)
        )
        if error is not None:
            field = getattr(error, "field", None)
            self.add_error(field if field in self.fields else None, _error_text(error))
        return data


@admin.register(PersonalizationConfig)
class PersonalizationConfigAdmin(ActivationStewardAdmin):
    """What `GET /v1/personalize` may answer about a visitor, per workspace."""

    form = PersonalizationConfigForm
    list_display = ("workspace", "enabled", "purpose", "expose_audiences", "accept_user_id")
    list_select_related = ("workspace",)
    identity_fields = ("workspace",)

    def save_model(
        self, request: HttpRequest, obj: PersonalizationConfig, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        workspace = data.get("workspace") or obj.workspace
        settings = {n: data[n] for n in form._meta.fields if n != "workspace" and n in data}
        settings["traits"] = settings.get("traits") or []
        settings["computed_traits"] = settings.get("computed_traits") or []
        saved = services.personalization_config_set(
            workspace=workspace, actor=request.user, **settings
        )
        form.instance = saved
        obj.pk = saved.pk
