"""Admin for workspaces, API tokens, sources, identity rules, trait classification, profiles,
merges and merge conflicts. Read-mostly: writes go through services, personal data is masked
everywhere except on the audited reveal page."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.cache import never_cache
from guardian.admin import GuardedModelAdmin

from cdp.core.admin import ReadOnlyAdminMixin, WorkspaceScopedAdmin, workspaces_for
from cdp.core.exceptions import ApplicationError, InvalidInput
from profiles import selectors, services
from profiles.enums import TraitClass, WorkspaceRole
from profiles.exceptions import IdentityVerificationOff, IdentityVerificationOn
from profiles.models import (
    ApiToken,
    DataKey,
    IdentityPolicy,
    IdentityRule,
    Merge,
    MergeConflict,
    Profile,
    Source,
    TraitSchema,
    Workspace,
)

EVENT_TIMELINE_LIMIT = 100

# The stock related-field filter lists every workspace in the database, naming other tenants
# to a steward; this one lists only workspaces present in the steward's (scoped) rows.
WORKSPACE_FILTER = ("workspace", admin.RelatedOnlyFieldListFilter)


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
    list_filter = (WORKSPACE_FILTER,)
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

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.filter(revoked_at__isnull=True):
            services.api_token_revoke(token=token)
        self.message_user(request, "Tokens revoked.")


# --- sources ---------------------------------------------------------------------------------


class SourceAddForm(forms.ModelForm):
    allowed_origins = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        required=False,
        help_text="One origin per line, e.g. https://shop.example.com. Empty: no browser "
        "origin is accepted (server-side sources need none).",
    )

    class Meta:
        model = Source
        fields = ("workspace", "name", "kind", "allowed_origins", "rate_limit_per_minute")

    def clean_allowed_origins(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["allowed_origins"].splitlines()]
        origins = []
        for line in filter(None, lines):
            try:
                # The service's own normalizer: the form refuses exactly what it would refuse.
                origins.append(services._normalize_origin(line))
            except InvalidInput as exc:
                raise ValidationError(f"{line!r}: {exc}") from None
        return list(dict.fromkeys(origins))


@admin.register(Source)
class SourceAdmin(WorkspaceScopedAdmin):
    """Stewards with any role on a workspace see its sources; superusers add them and switch
    them on and off. There is no update service yet, so an existing source is read-only here."""

    form = SourceAddForm
    list_display = (
        "name",
        "workspace",
        "kind",
        "enabled",
        "identity_verification",
        "allowed_origins_count",
        "rate_limit_per_minute",
        "created_at",
    )
    list_filter = (WORKSPACE_FILTER, "kind", "enabled", "identity_verification")
    list_select_related = ("workspace",)
    search_fields = ("name",)
    ordering = ("workspace", "name")
    actions = (
        "enable",
        "disable",
        "identity_verification_on",
        "identity_secret_rotate",
        "identity_verification_off",
    )
    # The identity-verification secret is no public key: it is shown once, on the page the
    # action that issued it answers (not through a message, which would travel in a cookie or
    # the session table), and never again; its changes are audited with the steward's name.
    issued_template = "admin/profiles/source_secret.html"
    # The write key is shown read-only on the change page, though the add message already gave
    # it: write keys are public by design (they ship inside browser JavaScript and apps), they
    # identify a source rather than protect it, and whoever installs an SDK needs to copy it.
    # It stays off the list page so the list is not a one-stop catalogue of keys.
    change_fields = (
        "workspace",
        "name",
        "kind",
        "write_key",
        "enabled",
        "allowed_origins_list",
        "rate_limit_per_minute",
        "priority",
        "identity_verification",
        "identity_secret_issued",
        "created_at",
    )

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if obj is None:
            return SourceAddForm.Meta.fields
        return self.change_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return () if obj is None else self.change_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # events point at their source; disable it instead

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="allowed origins")
    def allowed_origins_count(self, obj: Source) -> int:
        return len(obj.allowed_origins or ())

    @admin.display(description="allowed origins")
    def allowed_origins_list(self, obj: Source) -> str:
        return "\n".join(obj.allowed_origins or ()) or "—"

    @admin.display(description="identity-verification secret")
    def identity_secret_issued(self, obj: Source) -> str:
        issued = selectors.source_identity_secret_issued_at(source=obj)
        if issued is None:
            return "—"
        return f"issued {issued:%Y-%m-%d %H:%M} UTC (shown once; rotate to get a new one)"

    def save_model(self, request: HttpRequest, obj: Source, form: Any, change: bool) -> None:
        if change:
            return
        data = form.cleaned_data
        source = services.source_create(
            workspace=data["workspace"],
            name=data["name"],
            kind=data["kind"],
            allowed_origins=data["allowed_origins"],
            rate_limit_per_minute=data["rate_limit_per_minute"],
        )
        obj.pk = source.pk
        obj.refresh_from_db()
        messages.warning(
            request,
            f"Write key for {source.name}: {source.write_key} — embed it in the SDK snippet. "
            "It is public by design; the allowed origins and rate limit bound what it can do.",
        )

    @admin.action(description="Enable the selected sources", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset.filter(enabled=False):
            services.source_set_enabled(source=source, enabled=True)
        self.message_user(request, "Sources enabled.")

    @admin.action(description="Disable the selected sources", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset.filter(enabled=True):
            services.source_set_enabled(source=source, enabled=False)
        self.message_user(request, "Sources disabled: their write keys are now refused.")

    @admin.action(
        description="Turn on identity verification (shows each new secret once)",
        permissions=["change"],
    )
    def identity_verification_on(
        self, request: HttpRequest, queryset: QuerySet[Source]
    ) -> HttpResponse | None:
        # A source that has it on already keeps its secret: rotating is its own action. The
        # service decides that under the source's lock (two stewards, a second click).
        issued = []
        for source in queryset.filter(identity_verification=False):
            try:
                issued.append(services.source_identity_verification_enable(source=source))
            except IdentityVerificationOn:
                continue
        if not issued:
            self.message_user(request, "Identity verification was on already; nothing changed.")
            return None
        return self._show_secrets(request, issued, "Identity verification turned on")

    @admin.action(
        description="Rotate the identity-verification secret (shows each new secret once)",
        permissions=["change"],
    )
    def identity_secret_rotate(
        self, request: HttpRequest, queryset: QuerySet[Source]
    ) -> HttpResponse | None:
        issued = []
        for source in queryset.filter(identity_verification=True):
            try:
                issued.append(services.source_identity_secret_rotate(source=source))
            except IdentityVerificationOff:  # turned off meanwhile, under the service's lock
                continue
        if not issued:
            self.message_user(
                request,
                "None of these sources verifies identities: nothing to rotate.",
                messages.WARNING,
            )
            return None
        return self._show_secrets(request, issued, "Identity-verification secret rotated")

    @admin.action(description="Turn off identity verification", permissions=["change"])
    def identity_verification_off(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset.filter(identity_verification=True):
            services.source_identity_verification_disable(source=source)
        self.message_user(
            request,
            "Identity verification turned off: a userId is accepted without a userHash again, "
            "and the secrets were destroyed.",
        )

    def _show_secrets(
        self, request: HttpRequest, issued: list[services.IssuedSourceSecret], title: str
    ) -> HttpResponse:
        meta = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": meta,
            "issued": issued,
            "changelist_url": reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"),
        }
        response = TemplateResponse(request, self.issued_template, context)
        response["Cache-Control"] = "no-store"
        return response


# --- identity rules, identity policy, trait classification -------------------------------------


class StewardEditableAdmin(WorkspaceScopedAdmin):
    """Workspace configuration: stewards holding `view_profiles` on a workspace see it, those
    holding `manage_data` edit it. There are no services for these settings yet: a save writes
    only the changed fields, and auditlog records each change with its author (the models are
    registered in apps.py)."""

    workspace_roles = (WorkspaceRole.VIEW_PROFILES, WorkspaceRole.MANAGE_DATA)
    add_roles = (WorkspaceRole.MANAGE_DATA,)  # a new row goes into a workspace one may configure
    # Fields that identify the row; fixed once it exists.
    identity_fields: tuple[str, ...] = ("workspace",)

    def _may_edit(self, request: HttpRequest, obj: Any | None) -> bool:
        if request.user.is_superuser:
            return True
        if obj is None:
            return workspaces_for(request, WorkspaceRole.MANAGE_DATA).exists()
        return selectors.user_has_role(
            user=request.user, workspace=obj.workspace, role=WorkspaceRole.MANAGE_DATA
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_edit(request, None)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may_edit(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return () if obj is None else self.identity_fields

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=[f for f in form.changed_data if f not in self.identity_fields])
        else:
            obj.save()


def _string_list(value: Any, what: str) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f'Enter a JSON list of strings, e.g. ["{what}"].')
    return value


class IdentityRuleForm(forms.ModelForm):
    class Meta:
        model = IdentityRule
        fields = (
            "workspace",
            "identifier_type",
            "priority",
            "merge",
            "max_per_profile",
            "window_days",
            "blocked_values",
            "blocked_patterns",
        )

    def clean_blocked_values(self) -> list[str]:
        return _string_list(self.cleaned_data.get("blocked_values"), "undefined")

    def clean_blocked_patterns(self) -> list[str]:
        patterns = _string_list(self.cleaned_data.get("blocked_patterns"), "^0+$")
        for pattern in patterns:
            # Ingestion compiles every pattern of the workspace: a bad one would stop it.
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValidationError(
                    f"Not a valid regular expression: {pattern!r} ({exc})."
                ) from None
        return patterns


@admin.register(IdentityRule)
class IdentityRuleAdmin(StewardEditableAdmin):
    form = IdentityRuleForm
    identity_fields = ("workspace", "identifier_type")
    list_display = (
        "identifier_type",
        "workspace",
        "priority",
        "merge",
        "max_per_profile",
        "window_days",
        "blocked_values_count",
        "blocked_patterns_count",
    )
    list_filter = (WORKSPACE_FILTER, "merge")
    list_select_related = ("workspace",)
    ordering = ("workspace", "priority", "identifier_type")
    search_fields = ("identifier_type",)

    @admin.display(description="blocked values")
    def blocked_values_count(self, obj: IdentityRule) -> int:
        return len(obj.blocked_values or ())

    @admin.display(description="blocked patterns")
    def blocked_patterns_count(self, obj: IdentityRule) -> int:
        return len(obj.blocked_patterns or ())


class IdentityPolicyForm(forms.ModelForm):
    class Meta:
        model = IdentityPolicy
        fields = (
            "workspace",
            "max_merges_per_profile",
            "max_identities_per_profile",
            "dedup_window_days",
            "trait_identifiers",
        )

    def clean_trait_identifiers(self) -> dict[str, str]:
        value = self.cleaned_data.get("trait_identifiers") or {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in value.items()
        ):
            raise ValidationError(
                'Enter a JSON object of trait key to identifier type, e.g. {"loyalty_id": '
                '"loyalty_id"}.'
            )
        return value


@admin.register(IdentityPolicy)
class IdentityPolicyAdmin(StewardEditableAdmin):
    """One per workspace, created with it; edited, never added or deleted here."""

    form = IdentityPolicyForm
    list_display = (
        "workspace",
        "max_merges_per_profile",
        "max_identities_per_profile",
        "dedup_window_days",
        "trait_identifiers_count",
    )
    list_select_related = ("workspace",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="trait identifiers")
    def trait_identifiers_count(self, obj: IdentityPolicy) -> int:
        return len(obj.trait_identifiers or {})


_RESEALING = (
    "Trait values and event properties stored in plain while a key was an attribute are "
    "being encrypted in the background. Any computed trait over such an event property is "
    "disabled, its values deleted."
)


@admin.register(TraitSchema)
class TraitSchemaAdmin(StewardEditableAdmin):
    identity_fields = ("workspace", "key")
    fields = ("workspace", "key", "classification", "survivorship", "description")
    list_display = ("key", "workspace", "classification", "survivorship", "description")
    list_filter = (WORKSPACE_FILTER, "classification", "survivorship")
    list_select_related = ("workspace",)
    ordering = ("workspace", "key")
    search_fields = ("key",)
    actions = ("classify_as_attribute", "classify_as_pii")

    def _classify(
        self, request: HttpRequest, queryset: QuerySet[TraitSchema], classification: str
    ) -> int:
        # Row by row (each change has its own audit entry), only what the steward may change.
        mine = [s for s in queryset if self.has_change_permission(request, s)]
        return services.trait_schemas_classify(schemas=mine, classification=classification)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        was = form.initial.get("classification") if change else None
        super().save_model(request, obj, form, change)
        if services.trait_schema_reclassified(schema=obj, was=was):
            self.message_user(request, _RESEALING, messages.INFO)

    @admin.action(
        description="Classify as attribute (plain, usable in audiences)", permissions=["change"]
    )
    def classify_as_attribute(self, request: HttpRequest, queryset: QuerySet[TraitSchema]) -> None:
        changed = self._classify(request, queryset, TraitClass.ATTRIBUTE)
        self.message_user(
            request,
            f"{changed} trait key(s) classified as attributes. Values collected from now on are "
            "stored in plain; values already stored keep their form until they are next sent.",
            messages.WARNING,
        )

    @admin.action(description="Classify as personal data (encrypted)", permissions=["change"])
    def classify_as_pii(self, request: HttpRequest, queryset: QuerySet[TraitSchema]) -> None:
        changed = self._classify(request, queryset, TraitClass.PII)
        self.message_user(
            request,
            f"{changed} trait key(s) classified as personal data. Values collected from now on "
            f"are encrypted. {_RESEALING}",
            messages.SUCCESS,
        )


# --- profiles --------------------------------------------------------------------------------


class UnmergeForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=500,
        help_text="Why these profiles are not the same person. It is kept in the audit trail "
        "with your name.",
    )


class RevealForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=500,
        help_text="Why you need to see this person's data (e.g. the request you are handling). "
        "It is kept in the audit trail with your name.",
    )


@admin.register(Profile)
class ProfileAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """Profiles without personal data: the list shows none, the page shows identities and PII
    traits masked. Stewards holding `reveal_pii` may reveal them, giving a reason that is
    written to the audit trail before anything is decrypted."""

    workspace_roles = (WorkspaceRole.VIEW_PROFILES,)
    change_form_template = "admin/profiles/profile_change_form.html"
    reveal_template = "admin/profiles/profile_reveal.html"
    unmerge_template = "admin/profiles/profile_unmerge.html"
    list_display = (
        "id",
        "workspace",
        "status",
        "restricted",
        "created_at",
        "last_seen_at",
        "merge_count",
        "attributes_count",
    )
    list_filter = (WORKSPACE_FILTER, "status", "restricted")
    list_select_related = ("workspace",)
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    fields = (
        "id",
        "workspace",
        "status",
        "restricted",
        "merged_into",
        "merge_count",
        "first_seen_at",
        "last_seen_at",
        "created_at",
        "updated_at",
        "attributes",
    )

    @admin.display(description="attributes")
    def attributes_count(self, obj: Profile) -> int:
        return len(obj.attributes or {})

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is None or request.user.is_superuser:
            return super().has_view_permission(request, obj)
        return selectors.user_has_role(
            user=request.user,
            workspace=obj.workspace,  # type: ignore[attr-defined]
            role=WorkspaceRole.VIEW_PROFILES,
        )

    def _get_profile(self, request: HttpRequest, object_id: str) -> Profile:
        """The profile if it is in the user's workspaces; 404 otherwise, so that another
        workspace's ids are indistinguishable from ids that do not exist."""
        profile = self.get_object(request, unquote(object_id))
        if profile is None:
            raise Http404("No such profile.")
        if not self.has_view_permission(request, profile):
            raise PermissionDenied
        return profile

    def _may_reveal(self, request: HttpRequest, profile: Profile) -> bool:
        return selectors.user_has_role(
            user=request.user, workspace=profile.workspace, role=WorkspaceRole.REVEAL_PII
        )

    def _may_unmerge(self, request: HttpRequest, profile: Profile) -> bool:
        return selectors.user_has_role(
            user=request.user, workspace=profile.workspace, role=WorkspaceRole.MERGE_PROFILES
        )

    def get_urls(self) -> list[Any]:
        meta = self.model._meta
        return [
            path(
                "<path:object_id>/reveal/",
                self.admin_site.admin_view(never_cache(self.reveal_view)),
                name=f"{meta.app_label}_{meta.model_name}_reveal",
            ),
            path(
                "<path:object_id>/merges/<str:merge_id>/unmerge/",
                self.admin_site.admin_view(never_cache(self.unmerge_view)),
                name=f"{meta.app_label}_{meta.model_name}_unmerge",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        profile = self._get_profile(request, object_id)
        workspace = profile.workspace
        events = selectors.profile_events(workspace=workspace, profile=profile)[
            :EVENT_TIMELINE_LIMIT
        ]
        extra = {
            **(extra_context or {}),
            "identities": selectors.profile_identities(workspace=workspace, profile=profile),
            "traits": selectors.profile_traits(workspace=workspace, profile=profile),
            "events": [
                {
                    "timestamp": event.timestamp,
                    "type": event.get_type_display(),
                    "name": event.name,
                    "source": event.source.name,
                    # Only the plain properties: PII ones were sealed at ingestion.
                    "properties": json.dumps(event.properties, sort_keys=True, default=str),
                }
                for event in events
            ],
            "event_limit": EVENT_TIMELINE_LIMIT,
            "merges": selectors.profile_merges(workspace=workspace, profile=profile),
            "conflicts": selectors.profile_conflicts(workspace=workspace, profile=profile),
            "can_reveal": self._may_reveal(request, profile),
            "can_unmerge": self._may_unmerge(request, profile),
            # Lifting a restriction is data-subject request handling: governance's admin page
            # (linked by URL name, so the profiles app imports nothing of governance).
            "can_lift_restriction": profile.restricted
            and selectors.user_has_role(
                user=request.user, workspace=workspace, role=WorkspaceRole.HANDLE_REQUESTS
            ),
        }
        return super().change_view(request, object_id, form_url, extra)

    def unmerge_view(self, request: HttpRequest, object_id: str, merge_id: str) -> HttpResponse:
        """GET: what the unmerge gives back, and the reason form. POST with a reason: undo the
        merge (audited with the steward's name), back to the profile with the outcome."""
        profile = self._get_profile(request, object_id)
        if not self._may_unmerge(request, profile):
            raise PermissionDenied
        try:
            merge = selectors.profile_merge_get(
                workspace=profile.workspace, profile=profile, merge_id=merge_id
            )
        except ApplicationError:
            raise Http404("No such merge.") from None
        meta = self.model._meta
        change_url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[profile.pk])
        form = UnmergeForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                result = services.profile_unmerge(
                    workspace=profile.workspace,
                    merge=merge,
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    via="admin",
                )
            except ApplicationError as refused:
                self.message_user(request, refused.message, messages.ERROR)
                return HttpResponseRedirect(change_url)
            self.message_user(
                request,
                f"Merge {merge.pk} undone: profile {result.restored_id} is active again with "
                f"{result.identities} identities, {result.traits} traits and {result.events} "
                "events.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": "Undo a merge",
            "subtitle": str(profile),
            "opts": meta,
            "original": profile,
            "merge": merge,
            "form": form,
            "change_url": change_url,
        }
        return TemplateResponse(request, self.unmerge_template, context)

    def reveal_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the reason form. POST with a reason: audit, then show the decrypted values."""
        profile = self._get_profile(request, object_id)
        if not self._may_reveal(request, profile):
            raise PermissionDenied
        form = RevealForm(request.POST if request.method == "POST" else None)
        revealed = None
        if form.is_valid():
            revealed = services.profile_reveal(
                workspace=profile.workspace,
                profile=profile,
                actor=request.user,
                reason=form.cleaned_data["reason"],
                via="admin",
            )
        meta = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": "Reveal personal data",
            "subtitle": str(profile),
            "opts": meta,
            "original": profile,
            "form": form,
            "revealed": revealed,
            "change_url": reverse(
                f"admin:{meta.app_label}_{meta.model_name}_change", args=[profile.pk]
            ),
        }
        return TemplateResponse(request, self.reveal_template, context)


# --- merges and merge conflicts --------------------------------------------------------------


class UnmergedFilter(admin.SimpleListFilter):
    title = "undone"
    parameter_name = "undone"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "In effect"), ("yes", "Undone")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "no":
            return queryset.filter(unmerged_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(unmerged_at__isnull=False)
        return queryset


class ResolvedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Merge)
class MergeAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """The merge ledger. Stewards holding `merge_profiles` undo merges (most recent first),
    here or from the profile page."""

    workspace_roles = (WorkspaceRole.VIEW_PROFILES,)
    actions = ("unmerge",)
    list_display = (
        "id",
        "workspace",
        "survivor",
        "absorbed",
        "identifier_type",
        "rule",
        "created_at",
        "unmerged_at",
    )
    list_filter = (WORKSPACE_FILTER, "identifier_type", UnmergedFilter)
    list_select_related = ("workspace", "survivor", "absorbed")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    fields = (
        "workspace",
        "survivor",
        "absorbed",
        "identifier_type",
        "identity",
        "message_id",
        "rule",
        "evidence",
        "data_key_ids",
        "created_at",
        "unmerged_at",
    )

    def has_unmerge_permission(self, request: HttpRequest) -> bool:
        return bool(workspaces_for(request, WorkspaceRole.MERGE_PROFILES).exists())

    @admin.action(
        description="Undo the selected merges (most recent first)", permissions=["unmerge"]
    )
    def unmerge(self, request: HttpRequest, queryset: QuerySet[Merge]) -> None:
        allowed = set(
            workspaces_for(request, WorkspaceRole.MERGE_PROFILES).values_list("pk", flat=True)
        )
        undone, refused = 0, []
        for merge in queryset.filter(unmerged_at__isnull=True).order_by("-pk"):
            if merge.workspace_id not in allowed:
                refused.append(f"merge {merge.pk}: you may not merge or unmerge in its workspace")
                continue
            try:
                services.profile_unmerge(
                    workspace=merge.workspace, merge=merge, actor=request.user,
                    reason="admin: undo selected merges", via="admin",
                )  # fmt: skip
            except ApplicationError as error:
                refused.append(f"merge {merge.pk}: {error.message}")
                continue
            undone += 1
        self.message_user(request, f"{undone} merge(s) undone.")
        for message in refused:
            self.message_user(request, message, messages.WARNING)


@admin.register(MergeConflict)
class MergeConflictAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """Merges the rules refused. Stewards review them and mark them resolved; the profiles
    themselves are not changed by resolving."""

    workspace_roles = (WorkspaceRole.VIEW_PROFILES,)
    list_display = (
        "id",
        "workspace",
        "profile",
        "other_profile",
        "identifier_type",
        "reason",
        "created_at",
        "resolved_at",
    )
    list_filter = (WORKSPACE_FILTER, ResolvedFilter, "identifier_type")
    list_select_related = ("workspace", "profile", "other_profile")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    actions = ("mark_resolved",)
    fields = (
        "workspace",
        "profile",
        "other_profile",
        "identifier_type",
        "identity",
        "message_id",
        "reason",
        "created_at",
        "resolved_at",
    )

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return self._has_role(request)

    @admin.action(description="Mark the selected conflicts resolved", permissions=["resolve"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[MergeConflict]) -> None:
        resolved = 0
        for conflict in queryset.filter(resolved_at__isnull=True):
            services.merge_conflict_resolve(conflict=conflict, actor=request.user)
            resolved += 1
        self.message_user(request, f"{resolved} conflict(s) marked resolved.")


@admin.register(DataKey)
class DataKeyAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    workspace_roles = (WorkspaceRole.VIEW_AUDIT,)
    list_display = ("id", "workspace", "profile", "kek_id", "created_at", "destroyed_at")
    list_filter = (WORKSPACE_FILTER, "kek_id")
    exclude = ("wrapped",)
