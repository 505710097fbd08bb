"""Governance in the admin: the audit trail (read-only, for superusers and auditors, with a chain
check), the stewards' queue of data-subject requests, the signed erasure certificates, the
workspace's governance settings and retention policies, and the compliance reports."""

from __future__ import annotations

from typing import Any, cast

from auditlog import get_logentry_model
from auditlog.admin import LogEntryAdmin
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.cache import never_cache
from guardian.shortcuts import get_users_with_perms

from cdp.core.admin import ReadOnlyAdminMixin, WorkspaceScopedAdmin, workspaces_for
from cdp.core.exceptions import ApplicationError
from governance import downloads, reports, retention, selectors, services
from governance.enums import FINAL_STATES, ReportFormat, ReportKind
from governance.models import (
    ComplianceReport,
    DataSubjectRequest,
    ErasureCertificate,
    GovernanceSettings,
    RequestEvent,
    RetentionPolicy,
)
from profiles import selectors as profile_selectors
from profiles.enums import WorkspaceRole
from profiles.exceptions import ProfileNotFound

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
    subject_informed = forms.BooleanField(
        label="I informed the subject (phone contacts; email contacts are emailed)",
        required=False,
        help_text="GDPR Art. 18(3): the subject is informed before the restriction is lifted.",
    )
    assignee: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        label="Steward", queryset=get_user_model().objects.none(), required=False
    )

    def __init__(self, *args: Any, stewards: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if stewards is not None:
            cast("forms.ModelChoiceField[Any]", self.fields["assignee"]).queryset = stewards


class RestrictionLiftForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=2000,
        help_text="Why the restriction ends (e.g. the data was verified accurate, the objection "
        "was weighed). Kept in the audit trail with your name and told to the subject; do not "
        "quote the person's data.",
    )
    subject_informed = forms.BooleanField(
        label="I informed the subjects with a phone contact",
        required=False,
        help_text="Subjects with an email contact are emailed before the restriction is lifted.",
    )


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
    "lift_restriction": (
        "Lift the restriction of processing (GDPR Art. 18), with a reason",
        True,
        ("reason", "subject_informed"),
    ),
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
    elif name == "lift_restriction":
        services.request_restriction_lift(
            request=dsr,
            actor=actor,
            reason=reason,
            subject_informed=bool(data.get("subject_informed")),
            via="admin",
        )


def _pending_message(dsr: DataSubjectRequest) -> str:
    """What a steward is told when "fulfil" left the request open: scheduled for the end of
    its cancellation window, or queued for a worker."""
    pending = selectors.request_pending_fulfilment(dsr)
    if pending is not None and pending[0] == "scheduled":
        return (
            f"Request {dsr.pk}: the cancellation window is open until "
            f"{pending[1]:%Y-%m-%d %H:%M} UTC; the erasure is scheduled for then."
        )
    return (
        f"Request {dsr.pk}: queued; a worker carries it out and the request closes when it is "
        "done (reload this page to see it)."
    )


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
        "fulfilment",
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
        "cancel_until",
        "fulfil_after",
        "legal_hold",
        "paused",
        "assigned_to",
        "denial_reason",
        "verification_attempts",
        "closed_at",
        "certificate_link",
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

    @admin.display(description="erasure certificate")
    def certificate_link(self, obj: DataSubjectRequest) -> str:
        found = ErasureCertificate.objects.filter(request=obj).only("id", "issued_at").first()
        if found is None:
            return "-"
        meta = ErasureCertificate._meta
        return format_html(
            '<a href="{}">issued {} UTC</a>',
            reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[found.pk]),
            f"{found.issued_at:%Y-%m-%d %H:%M}",
        )

    @admin.display(description="fulfilment")
    def fulfilment(self, obj: DataSubjectRequest) -> str:
        """Whether a worker will carry the request out without another "fulfil"."""
        pending = selectors.request_pending_fulfilment(obj)
        if pending is None:
            return ""
        kind, at = pending
        if kind == "scheduled":
            return f"scheduled for {at:%Y-%m-%d %H:%M} UTC"
        return f"queued for a worker since {at:%Y-%m-%d %H:%M} UTC"

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

    def get_urls(self) -> list[Any]:
        return [
            path(
                "restriction/<str:profile_id>/lift/",
                self.admin_site.admin_view(never_cache(self.restriction_lift_view)),
                name="governance_restriction_lift",
            ),
            *super().get_urls(),
        ]

    def _restricted_profile(self, request: HttpRequest, profile_id: str) -> Any:
        """The profile, from a workspace where the user handles requests; 404 otherwise (another
        workspace's ids look like ids that do not exist)."""
        for workspace in workspaces_for(request, WorkspaceRole.HANDLE_REQUESTS.value):
            try:
                return profile_selectors.profile_get(workspace=workspace, profile_id=profile_id)
            except ProfileNotFound:
                continue
        raise Http404("No such profile.")

    def restriction_lift_view(self, request: HttpRequest, profile_id: str) -> HttpResponse:
        """GET: the profile's restriction requests (whom lifting informs, and how) and the
        form. POST with a reason: lift it (governance.services.restriction_lift), back to the
        profile with the outcome."""
        if not self._has_role(request):
            raise PermissionDenied
        profile = self._restricted_profile(request, profile_id)
        profile_url = reverse("admin:profiles_profile_change", args=[profile.pk])
        form = RestrictionLiftForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                lifted = services.restriction_lift(
                    workspace=profile.workspace,
                    profile=profile,
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    subject_informed=form.cleaned_data["subject_informed"],
                    via="admin",
                )
            except ApplicationError as refused:
                form.add_error(None, refused.message)
            else:
                self.message_user(
                    request,
                    f"Restriction of processing lifted for profile {profile.pk}: "
                    f"{lifted.emailed} subject(s) informed by email, "
                    f"{len(lifted.requests) - lifted.emailed} by you.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(profile_url)
        context = {
            **self.admin_site.each_context(request),
            "title": "Lift the restriction of processing",
            "subtitle": str(profile),
            "opts": self.model._meta,
            "profile": profile,
            "profile_url": profile_url,
            "requests": selectors.restriction_requests_for_profile(
                workspace=profile.workspace, profile=profile
            ),
            "form": form,
        }
        return TemplateResponse(request, "admin/governance/restriction_lift.html", context)

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
                if name == "fulfil" and dsr.state in services.FULFILMENT_STATES:
                    self.message_user(request, _pending_message(dsr), messages.WARNING)
                    continue
                done += 1
        if done:
            self.message_user(
                request, f"{REQUEST_ACTIONS[name][0]}: {done} request(s).", messages.SUCCESS
            )


# --- Erasure certificates ----------------------------------------------------------------------

CERTIFICATE_ROLES = (WorkspaceRole.HANDLE_REQUESTS.value, WorkspaceRole.VIEW_AUDIT.value)


def _counts(found: Any) -> str:
    """ "name: count, ..." of a certificate's counts (nothing when they are not an object)."""
    if not isinstance(found, dict):
        return ""
    return ", ".join(f"{name}: {count}" for name, count in sorted(found.items(), key=str))


@admin.register(ErasureCertificate)
class ErasureCertificateAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """What each erasure did, store by store and destination by destination, with the check of
    its signature against the workspace's published key (a row changed after signing shows
    "INVALID") and the signed JSON to hand to an auditor or the person. For the privacy team
    and the workspace's auditors."""

    workspace_path = "request__workspace"
    workspace_roles = CERTIFICATE_ROLES
    list_display = (
        "short_id",
        "request_link",
        "regime",
        "issued_at",
        "outcome",
        "destinations_count",
        "keys_destroyed",
        "signature_check",
        "workspace",
    )
    list_select_related = ("request__workspace",)
    ordering = ("-issued_at",)
    date_hierarchy = "issued_at"
    fields = (
        "id",
        "request_link",
        "workspace",
        "regime",
        "issued_at",
        "outcome",
        "signature_check",
        "kid",
        "download",
        "stores",
        "destinations",
        "keys_destroyed",
        "suppressed",
    )
    readonly_fields = fields

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The page's certificates, with their workspaces' published keys read once for all."""
        changelist = super().get_changelist_instance(request)
        keys = selectors.certificate_keys(
            workspace_ids={c.request.workspace_id for c in changelist.result_list}
        )
        for certificate in changelist.result_list:
            certificate.published_keys = keys.get(certificate.request.workspace.slug, [])
        return changelist

    def _request_column(self, request: HttpRequest) -> str:
        # Auditors read certificates but not the request queue: for them the id, no link.
        queue = self.admin_site._registry.get(DataSubjectRequest)
        can_open = queue is not None and queue.has_view_permission(request)
        return "request_link" if can_open else "request_short_id"

    def get_list_display(self, request: HttpRequest) -> Any:
        column = self._request_column(request)
        return tuple(column if f == "request_link" else f for f in self.list_display)

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        column = self._request_column(request)
        return tuple(column if f == "request_link" else f for f in self.fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return self.get_fields(request, obj)

    def get_urls(self) -> list[Any]:
        meta = self.model._meta
        return [
            path(
                "<path:object_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name=f"{meta.app_label}_{meta.model_name}_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The signed certificate as JSON (`manage.py verify_certificate` checks it)."""
        certificate = self.get_object(request, object_id)
        if certificate is None or not self.has_view_permission(request, certificate):
            raise Http404("No such certificate.")
        return downloads.certificate_response(certificate)

    @admin.display(description="certificate")
    def short_id(self, obj: ErasureCertificate) -> str:
        return str(obj.pk)[-12:]

    @admin.display(description="request")
    def request_link(self, obj: ErasureCertificate) -> str:
        meta = DataSubjectRequest._meta
        return format_html(
            '<a href="{}">{}</a>',
            reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.request_id]),
            str(obj.request_id)[-12:],
        )

    @admin.display(description="request")
    def request_short_id(self, obj: ErasureCertificate) -> str:
        return str(obj.request_id)[-12:]

    @admin.display(description="workspace")
    def workspace(self, obj: ErasureCertificate) -> Any:
        return obj.request.workspace

    @admin.display(description="regime")
    def regime(self, obj: ErasureCertificate) -> str:
        return str(obj.body.get("regime", "")) if isinstance(obj.body, dict) else ""

    @admin.display(description="outcome")
    def outcome(self, obj: ErasureCertificate) -> str:
        stores = selectors.certificate_entries(obj, "stores")
        failed = selectors.certificate_failed_stores(obj)
        if failed:
            return format_html(
                '<strong style="color:#ba2121">partial: {} of {} stores failed ({})</strong>',
                len(failed),
                len(stores),
                ", ".join(failed),
            )
        return f"complete: {len(stores)} stores"

    @admin.display(description="destinations")
    def destinations_count(self, obj: ErasureCertificate) -> int:
        return len(selectors.certificate_entries(obj, "destinations"))

    @admin.display(description="data keys destroyed")
    def keys_destroyed(self, obj: ErasureCertificate) -> int:
        keys = obj.body.get("data_keys_destroyed") if isinstance(obj.body, dict) else None
        return len(keys) if isinstance(keys, list) else 0

    @admin.display(description="signature")
    def signature_check(self, obj: ErasureCertificate) -> str:
        check = selectors.certificate_check(obj, keys=getattr(obj, "published_keys", None))
        if check.valid:
            return format_html('<span class="certificate-valid">valid ({})</span>', check.kid)
        return format_html(
            '<strong class="certificate-invalid" style="color:#ba2121">INVALID: {}</strong>',
            check.reason,
        )

    @admin.display(description="signed JSON")
    def download(self, obj: ErasureCertificate) -> str:
        meta = self.model._meta
        return format_html(
            '<a href="{}">download</a> (verify with <code>manage.py verify_certificate</code>)',
            reverse(f"admin:{meta.app_label}_{meta.model_name}_download", args=[obj.pk]),
        )

    @admin.display(description="stores")
    def stores(self, obj: ErasureCertificate) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    s.get("store", ""),
                    s.get("status", ""),
                    _counts(s.get("counts")),
                    s.get("detail", ""),
                )
                for s in selectors.certificate_entries(obj, "stores")
            ),
        )
        return format_html(
            "<table><tr><th>store</th><th>status</th><th>counts</th><th>detail</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="destinations")
    def destinations(self, obj: ErasureCertificate) -> str:
        found = selectors.certificate_entries(obj, "destinations")
        if not found:
            note = obj.body.get("destinations_note") if isinstance(obj.body, dict) else None
            return str(note or "none")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    d.get("destination", ""),
                    d.get("kind", ""),
                    d.get("status", ""),
                    d.get("reference") or "",
                    d.get("detail") or "",
                )
                for d in found
            ),
        )
        return format_html(
            "<table><tr><th>destination</th><th>kind</th><th>status</th><th>reference</th>"
            "<th>detail</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="identifiers suppressed")
    def suppressed(self, obj: ErasureCertificate) -> str:
        found = obj.body.get("suppressed_identifiers") if isinstance(obj.body, dict) else None
        return _counts(found) or "-"


# --- Governance settings and retention policies ----------------------------------------------

# The privacy team (stewards who handle requests) edits these; auditors read them.
POLICY_ROLES = (WorkspaceRole.HANDLE_REQUESTS.value, WorkspaceRole.VIEW_AUDIT.value)


class _PrivacyTeamAdmin(WorkspaceScopedAdmin):
    """Seen by handle_requests and view_audit holders; changed by handle_requests holders of
    the row's workspace only. Saves write the changed fields, and auditlog records each change
    with its author."""

    workspace_roles = POLICY_ROLES

    def _may_edit(self, request: HttpRequest, workspace: Any | None) -> bool:
        if request.user.is_superuser:
            return True
        if workspace is None:
            return workspaces_for(request, WorkspaceRole.HANDLE_REQUESTS.value).exists()
        return profile_selectors.user_has_role(
            user=request.user, workspace=workspace, role=WorkspaceRole.HANDLE_REQUESTS
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_edit(request, None)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may_edit(request, getattr(obj, "workspace", None))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "workspace" and not request.user.is_superuser:
            kwargs["queryset"] = workspaces_for(request, WorkspaceRole.HANDLE_REQUESTS.value)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return (*self.readonly_fields, "workspace") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            fields = [f for f in form.changed_data if f != "workspace"]
            if fields:
                stamped = ["updated_at"] if hasattr(obj, "updated_at") else []
                obj.save(update_fields=[*fields, *stamped])
        else:
            obj.save()


@admin.register(GovernanceSettings)
class GovernanceSettingsAdmin(_PrivacyTeamAdmin):
    list_display = ("workspace", "erasure_cancellation_hours", "controller_contact", "dpo_contact")
    list_select_related = ("workspace",)
    fields = ("workspace", "erasure_cancellation_hours", "controller_contact", "dpo_contact")

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class RetentionPolicyForm(forms.ModelForm):
    class Meta:
        model = RetentionPolicy
        fields = (
            "workspace",
            "name",
            "kind",
            "period",
            "unit",
            "event_names",
            "trait_keys",
            "purpose_key",
            "description",
            "enabled",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        workspace = data.get("workspace") or getattr(self.instance, "workspace", None)
        if workspace is None or self.errors:
            return data
        try:
            data.update(
                retention.policy_clean(
                    workspace=workspace,
                    kind=data.get("kind", ""),
                    period=data.get("period"),
                    unit=data.get("unit", ""),
                    event_names=data.get("event_names"),
                    trait_keys=data.get("trait_keys"),
                    purpose_key=data.get("purpose_key", ""),
                )
            )
        except ApplicationError as exc:
            raise ValidationError(exc.message, code=exc.code) from None
        return data


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(_PrivacyTeamAdmin):
    """Each workspace's retention policies. The sweep runs daily; the dry-run action shows what
    it would remove now, changing nothing."""

    form = RetentionPolicyForm
    list_display = (
        "name",
        "workspace",
        "kind",
        "period_display",
        "scope",
        "enabled",
        "last_run_at",
        "last_run_counts",
    )
    list_filter = ("kind", "enabled")
    list_select_related = ("workspace",)
    readonly_fields = ("last_run_at", "last_run_counts", "ip_cleared_until")
    actions = ("preview",)

    @admin.display(description="period")
    def period_display(self, obj: RetentionPolicy) -> str:
        return f"{obj.period} {obj.unit}"

    @admin.display(description="applies to")
    def scope(self, obj: RetentionPolicy) -> str:
        return reports._scope(obj) or "—"

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may_edit(request, getattr(obj, "workspace", None))

    @admin.action(
        description="Dry run: count what the sweep would remove now", permissions=["view"]
    )
    def preview(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy]) -> None:
        chosen = {p.pk for p in queryset}
        for workspace in {p.workspace for p in queryset}:
            result = retention.retention_apply(workspace=workspace, dry_run=True)
            for run in result.runs:
                if run.policy_id in chosen:
                    counts = ", ".join(f"{k}: {v}" for k, v in sorted(run.counts.items()))
                    self.message_user(
                        request,
                        f"{workspace.name} / {run.name} (before {run.cutoff:%Y-%m-%d %H:%M} "
                        f"UTC): {counts or 'nothing'}",
                    )


# --- Compliance reports ----------------------------------------------------------------------

REPORT_ROLES = (WorkspaceRole.VIEW_AUDIT.value,)


class ReportPeriodForm(forms.Form):
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise ValidationError("The start must not come after the end.")
        return data


@admin.register(ComplianceReport)
class ComplianceReportAdmin(WorkspaceScopedAdmin):
    """The reports page: for each workspace the user audits (view_audit, or superuser), each
    report as printable HTML or CSV over a chosen period. A workspace the user does not audit
    answers 404, exactly like one that does not exist."""

    workspace_roles = REPORT_ROLES

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        meta = self.model._meta
        return [
            path(
                "<slug:workspace_slug>/<str:kind>.<str:fmt>",
                self.admin_site.admin_view(self.report_view),
                name=f"{meta.app_label}_{meta.model_name}_download",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ReportPeriodForm(request.GET or None)
        query = ""
        if form.is_bound and form.is_valid():
            query = "&".join(
                f"{key}={value.isoformat()}" for key, value in form.cleaned_data.items() if value
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Compliance reports",
            "opts": self.model._meta,
            "form": form,
            "query": query,
            "workspaces": workspaces_for(request, *REPORT_ROLES).order_by("name"),
            "kinds": ReportKind.choices,
            "formats": ReportFormat.choices,
        }
        return TemplateResponse(request, "admin/governance/compliance_reports.html", context)

    def report_view(
        self, request: HttpRequest, workspace_slug: str, kind: str, fmt: str
    ) -> HttpResponse:
        workspace = workspaces_for(request, *REPORT_ROLES).filter(slug=workspace_slug).first()
        if workspace is None or kind not in ReportKind.values or fmt not in ReportFormat.values:
            raise Http404("No such report.")
        form = ReportPeriodForm(request.GET)
        if not form.is_valid():
            return HttpResponse(
                "The period is not valid: " + " ".join(str(e) for e in form.errors.values()),
                status=400,
                content_type="text/plain; charset=utf-8",
            )
        report = reports.report_build(
            workspace=workspace,
            kind=kind,
            since=form.cleaned_data.get("since"),
            until=form.cleaned_data.get("until"),
        )
        content, content_type, filename = reports.report_render(report, fmt=fmt)
        response = HttpResponse(content, content_type=content_type)
        disposition = "attachment" if fmt == ReportFormat.CSV else "inline"
        response["Content-Disposition"] = f'{disposition}; filename="{filename}"'
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response
