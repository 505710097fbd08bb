"""Admin for purposes, notices and the consent ledger. Read-mostly: notice versions are
published through the service and never edited, the ledger is append-only and shown without
any subject identifier, the timeline re-verifies the hash chains, and the report shows consent
rates from the current state."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from cdp.core.admin import ReadOnlyAdminMixin, WorkspaceScopedAdmin, workspaces_for
from consent import selectors, services
from consent.enums import DefaultMode
from consent.models import ConsentRecord, Notice, NoticeVersion, Purpose
from profiles import selectors as profile_selectors
from profiles.enums import WorkspaceRole
from profiles.exceptions import ProfileNotFound

WORKSPACE_FILTER = ("workspace", admin.RelatedOnlyFieldListFilter)
# Who reads the ledger, its timelines and the report: consent stewards, and profile stewards
# (the consent of the people they look after is part of what they see).
LEDGER_ROLES = (WorkspaceRole.MANAGE_CONSENT, WorkspaceRole.VIEW_PROFILES)
TIMELINE_LIMIT = 500
TCF_PURPOSE_IDS = range(1, 12)  # IAB TCF v2.2 purposes 1 to 11
TCF_VENDOR_IDS = range(1, 65536)  # 16 bits in a TC string


class ConsentStewardAdmin(WorkspaceScopedAdmin):
    """Configuration that consent stewards (`manage_consent` on the workspace) see and edit;
    a row's workspace and key are fixed once it exists."""

    workspace_roles = (WorkspaceRole.MANAGE_CONSENT,)
    identity_fields: tuple[str, ...] = ("workspace", "key")

    def _may_manage(self, request: HttpRequest, workspace: Any | None) -> bool:
        if workspace is None:
            return self._has_role(request)
        return request.user.is_superuser or profile_selectors.user_has_role(
            user=request.user, workspace=workspace, role=WorkspaceRole.MANAGE_CONSENT
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request, None)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may_manage(request, getattr(obj, "workspace", None))

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # consent records point at purposes and notice versions

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return () if obj is None else self.identity_fields


# --- purposes --------------------------------------------------------------------------------


def _id_list(value: Any, ids: Any, message: str) -> list[int]:
    """A JSON list of whole numbers among `ids` (TCF purpose or vendor ids), else `message`."""
    value = value or []
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v in ids for v in value
    ):
        raise ValidationError(message)
    return value


def _string_list(value: Any, example: str) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValidationError(f'Enter a JSON list of strings, e.g. ["{example}"].')
    return value


class PurposeForm(forms.ModelForm):
    class Meta:
        model = Purpose
        fields = (
            "workspace",
            "key",
            "name",
            "description",
            "legal_basis",
            "defaults",
            "sale_or_share",
            "tcf_purposes",
            "tcf_vendors",
            "dpv_purposes",
            "data_categories",
            "retention_days",
            "consent_validity_days",
            "position",
        )
        help_texts = {
            "defaults": 'Jurisdiction to opt_in or opt_out, e.g. {"EU": "opt_in", "US-CA": '
            '"opt_out", "default": "opt_out"}. The exact jurisdiction wins, then its country, '
            'then "default"; without any, opt_in.',
        }

    def clean_defaults(self) -> dict[str, str]:
        value = self.cleaned_data.get("defaults") or {}
        modes = set(DefaultMode.values)
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and k and v in modes for k, v in value.items()
        ):
            raise ValidationError(
                'Enter a JSON object of jurisdiction to "opt_in" or "opt_out", e.g. '
                '{"EU": "opt_in", "default": "opt_out"}.'
            )
        return value

    def clean_tcf_purposes(self) -> list[int]:
        return _id_list(
            self.cleaned_data.get("tcf_purposes"),
            TCF_PURPOSE_IDS,
            "Enter a JSON list of IAB TCF purpose ids (1 to 11), e.g. [8].",
        )

    def clean_tcf_vendors(self) -> list[int]:
        return _id_list(
            self.cleaned_data.get("tcf_vendors"),
            TCF_VENDOR_IDS,
            "Enter a JSON list of IAB TCF vendor ids, e.g. [755].",
        )

    def clean_dpv_purposes(self) -> list[str]:
        return _string_list(self.cleaned_data.get("dpv_purposes"), "dpv:ServiceOptimisation")

    def clean_data_categories(self) -> list[str]:
        return _string_list(self.cleaned_data.get("data_categories"), "behavioural")


@admin.register(Purpose)
class PurposeAdmin(ConsentStewardAdmin):
    """Purposes, edited by consent stewards. There is no update service for purposes: a save
    writes only the changed fields and auditlog records each change with its author. The
    consent gate reads the legal basis and defaults, so a change applies to the next gate."""

    form = PurposeForm
    change_list_template = "admin/consent/purpose/change_list.html"
    report_template = "admin/consent/purpose/report.html"
    list_display = (
        "key",
        "name",
        "workspace",
        "legal_basis",
        "defaults_summary",
        "sale_or_share",
        "retention_days",
        "consent_validity_days",
        "position",
    )
    list_filter = (WORKSPACE_FILTER, "legal_basis", "sale_or_share")
    list_select_related = ("workspace",)
    ordering = ("workspace", "position", "key")
    search_fields = ("key", "name")
    actions = ("seed_default_purposes",)

    @admin.display(description="defaults")
    def defaults_summary(self, obj: Purpose) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted((obj.defaults or {}).items())) or "—"

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "workspace" and not request.user.is_superuser:
            kwargs["queryset"] = workspaces_for(request, WorkspaceRole.MANAGE_CONSENT)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Purpose, form: Any, change: bool) -> None:
        if change:
            fields = [f for f in form.changed_data if f not in self.identity_fields]
            if fields:
                obj.save(update_fields=fields)
        else:
            obj.save()

    def has_seed_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request, None)

    @admin.action(
        description="Seed the default purposes and banner notice in my workspaces",
        permissions=["seed"],
    )
    def seed_default_purposes(self, request: HttpRequest, queryset: QuerySet[Purpose]) -> None:
        # Acts on the steward's workspaces, not on the selection: a workspace without purposes
        # has no rows to select. The changelist's button posts it with select_across.
        seeded = []
        for workspace in workspaces_for(request, WorkspaceRole.MANAGE_CONSENT).order_by("name"):
            before = selectors.purpose_list(workspace=workspace).count()
            services.purposes_ensure_defaults(workspace=workspace)
            if not before:
                seeded.append(workspace.name)
        if seeded:
            self.message_user(request, f"Default purposes seeded in: {', '.join(seeded)}.")
        else:
            self.message_user(
                request,
                "Every workspace already has purposes; nothing was changed.",
                messages.WARNING,
            )

    def get_urls(self) -> list[Any]:
        meta = self.model._meta
        return [
            path(
                "report/",
                self.admin_site.admin_view(self.report_view),
                name=f"{meta.app_label}_{meta.model_name}_report",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "can_seed": self.has_seed_permission(request)}
        return super().changelist_view(request, extra)

    def report_view(self, request: HttpRequest) -> HttpResponse:
        """Consent rates per purpose and workspace, from the current state."""
        allowed = workspaces_for(request, *LEDGER_ROLES).order_by("name")
        if not request.user.is_superuser and not allowed.exists():
            raise PermissionDenied
        reports = [
            {
                "workspace": workspace,
                "report": selectors.consent_report(workspace=workspace),
                "reconsent_sample": list(
                    selectors.consent_reconsent_profile_ids(workspace=workspace)[:20]
                ),
            }
            for workspace in allowed
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Consent report",
            "opts": self.model._meta,
            "reports": reports,
            "window_days": selectors.REPORT_WINDOW_DAYS,
        }
        return TemplateResponse(request, self.report_template, context)


# --- notices and their versions ----------------------------------------------------------------


class NoticeVersionInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Published versions, read-only: a change is a new version."""

    model = NoticeVersion
    extra = 0
    ordering = ("-version",)
    fields = ("version", "language", "text", "text_hash", "purposes", "policy_url", "published_at")
    readonly_fields = fields
    show_change_link = False


class NoticeForm(forms.ModelForm):
    class Meta:
        model = Notice
        fields = ("workspace", "key", "title")


class NoticeVersionPublishForm(forms.Form):
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        help_text="The exact text people will see. Its SHA-256 is stored with the version and "
        "in every receipt that cites it.",
    )
    language = forms.CharField(max_length=16, initial="en")
    purposes = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="The purposes this version asks about.",
    )
    policy_url = forms.URLField(required=False, label="Policy URL", assume_scheme="https")

    def __init__(self, *args: Any, purpose_choices: list[tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        cast(forms.MultipleChoiceField, self.fields["purposes"]).choices = purpose_choices


@admin.register(Notice)
class NoticeAdmin(ConsentStewardAdmin):
    """Notices: a steward adds one (workspace, key, title) and publishes versions of it; the
    versions are listed read-only on its page."""

    form = NoticeForm
    change_form_template = "admin/consent/notice/change_form.html"
    publish_template = "admin/consent/notice/publish.html"
    inlines = (NoticeVersionInline,)
    list_display = ("key", "title", "workspace", "latest_version", "created_at")
    list_filter = (WORKSPACE_FILTER,)
    list_select_related = ("workspace",)
    ordering = ("workspace", "key")
    search_fields = ("key", "title")

    @admin.display(description="latest version")
    def latest_version(self, obj: Notice) -> str:
        last = obj.versions.order_by("-version").first()
        return f"v{last.version} ({last.language})" if last else "—"

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "workspace" and not request.user.is_superuser:
            kwargs["queryset"] = workspaces_for(request, WorkspaceRole.MANAGE_CONSENT)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Notice, form: Any, change: bool) -> None:
        if change:
            if "title" in form.changed_data:
                obj.save(update_fields=["title"])
        else:
            obj.save()

    def response_add(self, request: HttpRequest, obj: Notice, post_url_continue: Any = None):
        # A notice says nothing until its first version is published.
        return HttpResponseRedirect(self._publish_url(obj))

    def _publish_url(self, notice: Notice) -> str:
        meta = self.model._meta
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_publish", args=[notice.pk])

    def get_urls(self) -> list[Any]:
        meta = self.model._meta
        return [
            path(
                "<path:object_id>/publish/",
                self.admin_site.admin_view(self.publish_view),
                name=f"{meta.app_label}_{meta.model_name}_publish",
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
        notice = self.get_object(request, unquote(object_id))
        extra = {**(extra_context or {})}
        if notice is not None and self.has_change_permission(request, notice):
            extra["publish_url"] = self._publish_url(notice)
        return super().change_view(request, object_id, form_url, extra)

    def publish_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the form, prefilled from the latest version. POST: publish version n + 1."""
        notice = self.get_object(request, unquote(object_id))
        if notice is None:
            raise Http404("No such notice.")
        if not self.has_change_permission(request, notice):
            raise PermissionDenied
        choices = [
            (p.key, f"{p.name} ({p.key})")
            for p in selectors.purpose_list(workspace=notice.workspace)
        ]
        latest = notice.versions.order_by("-version").first()
        initial = (
            {
                "text": latest.text,
                "language": latest.language,
                "purposes": latest.purposes,
                "policy_url": latest.policy_url,
            }
            if latest
            else {"purposes": [key for key, _ in choices]}
        )
        form = NoticeVersionPublishForm(
            request.POST if request.method == "POST" else None,
            initial=initial,
            purpose_choices=choices,
        )
        meta = self.model._meta
        change_url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[notice.pk])
        if form.is_valid():
            published = services.notice_version_publish(
                notice=notice,
                text=form.cleaned_data["text"],
                purposes=form.cleaned_data["purposes"],
                language=form.cleaned_data["language"],
                policy_url=form.cleaned_data["policy_url"],
            )
            version = published.version
            self.message_user(
                request,
                f"Published {notice.title} v{version.version} ({version.text_hash[:12]}); "
                f"{published.reconsent_flagged} consent grant(s) given under an earlier "
                "version flagged for re-consent.",
            )
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": "Publish a new version",
            "subtitle": str(notice),
            "opts": meta,
            "original": notice,
            "latest": latest,
            "form": form,
            "change_url": change_url,
        }
        return TemplateResponse(request, self.publish_template, context)


# --- the ledger ------------------------------------------------------------------------------


class LedgerWorkspaceFilter(admin.SimpleListFilter):
    """The steward's workspaces, from the workspace table: the stock related-only filter
    would scan the whole ledger for its distinct workspaces on every page."""

    title = "workspace"
    parameter_name = "workspace"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        return [(w.pk, w.name) for w in workspaces_for(request, *LEDGER_ROLES).order_by("name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(workspace_id=self.value()) if self.value() else queryset


class LedgerPurposeFilter(admin.SimpleListFilter):
    """The purposes of the steward's workspaces, from the purpose table (not a ledger scan)."""

    title = "purpose"
    parameter_name = "purpose"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        allowed = workspaces_for(request, *LEDGER_ROLES)
        purposes = list(
            Purpose.objects.filter(workspace__in=allowed)
            .select_related("workspace")
            .order_by("workspace__name", "position", "key")
        )
        several = len({p.workspace_id for p in purposes}) > 1
        return [(p.pk, f"{p.name} ({p.workspace.name})" if several else p.name) for p in purposes]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(purpose_id=self.value()) if self.value() else queryset


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """The append-only ledger. Nobody adds, changes or deletes a row here, superusers included.
    No subject identifier is shown: the subject's blind index and the keyed proof hashes stay
    out of every page; the timeline names a subject by its type only."""

    workspace_roles = LEDGER_ROLES
    change_list_template = "admin/consent/consentrecord/change_list.html"
    timeline_template = "admin/consent/consentrecord/timeline.html"
    list_display = (
        "server_time",
        "profile_id_display",
        "purpose",
        "decision",
        "method",
        "jurisdiction",
        "short_hash",
        "timeline_link",
    )
    list_filter = (LedgerWorkspaceFilter, LedgerPurposeFilter, "decision", "method", "jurisdiction")
    list_select_related = ("purpose",)
    ordering = ("-server_time", "-id")
    # A ledger grows large: no second COUNT(*) per page, and no date hierarchy (its MIN, MAX
    # and DISTINCT dates each scan every row in scope).
    show_full_result_count = False
    fields = (
        "id",
        "workspace",
        "profile_id_display",
        "subject_type",
        "purpose",
        "decision",
        "notice_version",
        "method",
        "jurisdiction",
        "source",
        "client_time",
        "server_time",
        "signals",
        "proof_kinds",
        "prev_hash",
        "record_hash",
    )
    readonly_fields = fields

    @admin.display(description="profile", ordering="profile_id")
    def profile_id_display(self, obj: ConsentRecord) -> str:
        return str(obj.profile_id) if obj.profile_id else "—"

    @admin.display(description="record hash")
    def short_hash(self, obj: ConsentRecord) -> str:
        return obj.record_hash[:12]

    @admin.display(description="proof")
    def proof_kinds(self, obj: ConsentRecord) -> str:
        # Only which proofs exist: the keyed hashes themselves stay out of the admin.
        kinds = sorted(obj.proof or {})
        return f"keyed hashes of: {', '.join(kinds)}" if kinds else "—"

    @admin.display(description="timeline")
    def timeline_link(self, obj: ConsentRecord) -> str:
        if not obj.profile_id:
            return "—"
        return format_html('<a href="{}">timeline</a>', self.timeline_url(obj.profile_id))

    def timeline_url(self, profile_id: Any) -> str:
        meta = self.model._meta
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_timeline", args=[profile_id])

    def get_urls(self) -> list[Any]:
        meta = self.model._meta
        return [
            path(
                "timeline/<uuid:profile_id>/",
                self.admin_site.admin_view(self.timeline_view),
                name=f"{meta.app_label}_{meta.model_name}_timeline",
            ),
            *super().get_urls(),
        ]

    def timeline_view(self, request: HttpRequest, profile_id: UUID) -> HttpResponse:
        """A profile's records (and those of profiles merged into it), newest first, with the
        hash-chain check of each subject. Another workspace's profile is a 404, like an id
        that does not exist."""
        workspace = workspaces_for(request, *LEDGER_ROLES).filter(profiles__pk=profile_id).first()
        if workspace is None:
            raise Http404("No such profile.")
        try:
            profile = profile_selectors.profile_get(workspace=workspace, profile_id=profile_id)
        except ProfileNotFound:
            raise Http404("No such profile.") from None
        if profile.pk != profile_id:  # absorbed by a merge: the survivor holds its consent
            return HttpResponseRedirect(self.timeline_url(profile.pk))
        people = [profile.pk, *profile_selectors.profile_absorbed_ids(profile=profile)]
        records = list(
            selectors.consent_history_for_profiles(workspace=workspace, profile_ids=people)[
                : TIMELINE_LIMIT + 1
            ]
        )
        checks = selectors.consent_chain_verify_profiles(workspace=workspace, profile_ids=people)
        broken = {c.broken_record for c in checks if c.broken_record is not None}
        rows = [
            {
                "record": record,
                "notice": (
                    f"{record.notice_version.notice.key} v{record.notice_version.version}"
                    if record.notice_version
                    else "—"
                ),
                "gpc": bool((record.signals or {}).get("gpc")),
                "tc_string": (record.signals or {}).get("tc_string") or "",
                "merged_from": record.profile_id if record.profile_id != profile.pk else None,
                "broken": record.pk in broken,
            }
            for record in records[:TIMELINE_LIMIT]
        ]
        meta = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": "Consent timeline",
            "subtitle": str(profile),
            "opts": meta,
            "profile": profile,
            "workspace": workspace,
            "states": selectors.consent_state_for_profile(
                workspace=workspace, profile_id=profile.pk
            ),
            "rows": rows,
            "truncated": len(records) > TIMELINE_LIMIT,
            "limit": TIMELINE_LIMIT,
            "checks": checks,
            "chain_intact": not broken,
            "merged_ids": people[1:],
        }
        return TemplateResponse(request, self.timeline_template, context)
