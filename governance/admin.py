"""The audit trail in the admin: read-only, for superusers and auditors, with a chain check."""

from __future__ import annotations

from typing import Any

from auditlog import get_logentry_model
from auditlog.admin import LogEntryAdmin
from django.contrib import admin, messages
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse

from cdp.core.admin import ReadOnlyAdminMixin
from governance import services

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
