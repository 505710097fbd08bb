"""Governance in the admin: the audit trail (read-only, for superusers and auditors, with a chain
check) and the stewards' queue of data-subject requests."""

from __future__ import annotations

from typing import Any, cast

from auditlog import get_logentry_model
from auditlog.admin import LogEntryAdmin
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.db.models import Model, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from guardian.shortcuts import get_users_with_perms

from cdp.core.admin import ReadOnlyAdminMixin, WorkspaceScopedAdmin
from cdp.core.exceptions import ApplicationError
from governance import selectors, services
from governance.enums import FINAL_STATES
from governance.models import DataSubjectRequest, RequestEvent
from profiles.enums import WorkspaceRole

AuditLogEntry = get_logentry_model()
if admin.site.is_registered(AuditLogEntry):
    admin.site.unregister(AuditLogEntry)


@admin.register(AuditLogEntry)
class AuditTrailAdmin(ReadOnlyAdminMixin, LogEntryAdmin):
    change_list_template = "admin/governance/audit_trail_change_list.html"

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}

    def get_urls(self) -> list[Any]:
        return [
            path(
                "verify/",
                self.admin_site.admin_view(self.verify_view),
                name="governance_audit_verify",
            ),
            *super().get_urls(),
        ]

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        result = services.audit_chain_verify()
        if result.first_break is None:
            messages.success(request, f"Audit chain intact: {result.checked} entries verified.")
        else:
            messages.error(
                request,
                f"Audit chain broken at entry {result.first_break.entry_id}: "
                f"{result.first_break.reason}.",
            )
        meta = AuditLogEntry._meta
        return HttpResponseRedirect(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))


# --- Data-subject requests: the steward's queue ----------------------------------------------


class RequestEventInline(admin.TabularInline):
    """The request's history, read-only (every action writes one through the services)."""

    model = RequestEvent
    fields = ("at", "action", "from_state", "to_state", "actor", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("at", "id")

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Shown on a request's page, which the queue's own scoping already allowed.
        return True


class RequestActionForm(forms.Form):
    """What an action needs beyond the selection: a reason or note, a date, an assignee."""

    reason = forms.CharField(
        label="Reason or note",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Your own words; do not quote the person's data.",
    )
    until = forms.DateField(
        label="New deadline (GDPR only; empty = the latest allowed)",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    assignee: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        label="Steward", queryset=get_user_model().objects.none(), required=False
    )

    def __init__(self, *args: Any, stewards: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if stewards is not None:
            cast("forms.ModelChoiceField[Any]", self.fields["assignee"]).queryset = stewards


# name -> (label, needs reason, form fields shown)
REQUEST_ACTIONS: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "approve": ("Approve (start work)", False, ("reason",)),
    "deny": ("Deny, with a reason", True, ("reason",)),
    "extend": ("Extend the deadline, with a reason", True, ("reason", "until")),
    "hold": ("Place a legal hold", True, ("reason",)),
    "unhold": ("Lift the legal hold", False, ("reason",)),
    "fulfil": ("Fulfil and close", False, ("reason",)),
    "note": ("Add a note", True, ("reason",)),
    "verify": ("Mark identity verified (checked by other means)", True, ("reason",)),
    "assign": ("Assign to a steward", False, ("assignee",)),
}


def _run(name: str, dsr: DataSubjectRequest, actor: Any, data: dict[str, Any]) -> None:
    reason = data.get("reason", "")
    if name == "approve":
        services.request_approve(request=dsr, actor=actor, note=reason)
    elif name == "deny":
        services.request_deny(request=dsr, actor=actor, reason=reason)
    elif name == "extend":
        services.request_extend(request=dsr, actor=actor, reason=reason, until=data.get("until"))
    elif name == "hold":
        services.request_hold(request=dsr, actor=actor, reason=reason)
    elif name == "unhold":
        services.request_unhold(request=dsr, actor=actor, note=reason)
    elif name == "fulfil":
        services.request_fulfil(request=dsr, actor=actor, note=reason)
    elif name == "note":
        services.request_note(request=dsr, actor=actor, note=reason)
    elif name == "verify":
        services.request_verify_manually(request=dsr, actor=actor, note=reason)
    elif name == "assign":
        services.request_assign(request=dsr, assignee=data["assignee"], actor=actor)


def _make_action(name: str) -> Any:
    label = REQUEST_ACTIONS[name][0]

    def action(modeladmin: DataSubjectRequestAdmin, request: HttpRequest, queryset: Any) -> Any:
        return modeladmin.run_action(request, queryset, name)

    action.__name__ = f"request_{name}"
    return admin.action(description=label, permissions=["change"])(action)


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(WorkspaceScopedAdmin):
    """The queue: a steward's workspaces only, soonest deadline first, overdue highlighted.
    The contact is never decrypted here (lists or change page); actions call the services."""

    workspace_roles = (WorkspaceRole.HANDLE_REQUESTS.value,)
    list_display = (
        "short_id",
        "type",
        "regime",
        "state",
        "days_left",
        "deadline",
        "contact_masked",
        "assigned_to",
        "legal_hold",
        "paused",
        "workspace",
    )
    list_filter = ("state", "type", "regime", "legal_hold", "paused")
    list_select_related = ("workspace", "assigned_to")
    fields = (
        "id",
        "workspace",
        "type",
        "regime",
        "state",
        "contact_masked",
        "profile",
        "received_at",
        "verified_at",
        "acknowledge_by",
        "due_at",
        "extended_due_at",
        "extension_reason",
        "days_left",
        "legal_hold",
        "paused",
        "assigned_to",
        "denial_reason",
        "verification_attempts",
        "closed_at",
    )
    readonly_fields = fields
    inlines = (RequestEventInline,)
    actions = tuple(_make_action(name) for name in REQUEST_ACTIONS)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The contact and details stay sealed bytes: nothing here reads them.
        return (
            super()
            .get_queryset(request)
            .defer("contact", "details")
            .annotate(deadline_at=Coalesce("extended_due_at", "due_at"))
            .order_by("deadline_at", "id")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._has_role(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="request")
    def short_id(self, obj: DataSubjectRequest) -> str:
        return str(obj.pk)[-12:]

    @admin.display(description="deadline", ordering="deadline_at")
    def deadline(self, obj: DataSubjectRequest) -> Any:
        return obj.effective_due_at

    @admin.display(description="contact")
    def contact_masked(self, obj: DataSubjectRequest) -> str:
        return f"{obj.contact_type} •••• (sealed)"

    @admin.display(description="days left")
    def days_left(self, obj: DataSubjectRequest) -> Any:
        if obj.state in FINAL_STATES:
            return "closed"
        days = selectors.request_days_left(request=obj)
        if days < 0:
            return format_html(
                '<strong class="dsr-overdue" style="color:#ba2121">overdue by {} day(s)</strong>',
                -days,
            )
        if days <= 3:
            return format_html(
                '<strong class="dsr-due-soon" style="color:#b05a00">{}</strong>', days
            )
        return days

    def _stewards(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        user_model = get_user_model()
        ids: set[Any] = set()
        for workspace in {dsr.workspace for dsr in queryset}:
            ids.update(
                cast(Any, user).pk
                for user in get_users_with_perms(
                    workspace,
                    only_with_perms_in=[WorkspaceRole.HANDLE_REQUESTS.value],
                    with_group_users=True,
                )
            )
        return user_model.objects.filter(pk__in=ids, is_active=True).order_by("username")

    def run_action(self, request: HttpRequest, queryset: QuerySet[Any], name: str) -> Any:
        label, needs_reason, shown = REQUEST_ACTIONS[name]
        stewards = self._stewards(queryset) if name == "assign" else None
        if "apply" in request.POST:
            form = RequestActionForm(request.POST, stewards=stewards)
            if form.is_valid():
                data = form.cleaned_data
                if needs_reason and not data["reason"].strip():
                    form.add_error("reason", "A reason is required.")
                elif name == "assign" and data["assignee"] is None:
                    form.add_error("assignee", "Choose a steward.")
                else:
                    self._apply(request, queryset, name, data)
                    return None
        else:
            form = RequestActionForm(stewards=stewards)
        for field in set(form.fields) - set(shown):
            del form.fields[field]
        context = {
            **self.admin_site.each_context(request),
            "title": label,
            "opts": self.model._meta,
            "form": form,
            "queryset": queryset,
            "action_name": f"request_{name}",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/governance/request_action.html", context)

    def _apply(self, request: HttpRequest, queryset: QuerySet[Any], name: str, data: Any) -> None:
        done = 0
        for dsr in queryset:
            try:
                _run(name, dsr, request.user, data)
            except ApplicationError as exc:
                self.message_user(request, f"Request {dsr.pk}: {exc.message}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(
                request, f"{REQUEST_ACTIONS[name][0]}: {done} request(s).", messages.SUCCESS
            )
