"""Stewards' admin for probabilistic matching: the review queue (candidates, most probable
first), a side-by-side comparison with personal data masked (an audited reveal shows it),
accept (merge) and reject, one by one or in bulk; the workspace's match settings; the runs."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from cdp.core.admin import ReadOnlyAdminMixin, WorkspaceScopedAdmin, workspaces_for
from cdp.core.exceptions import ApplicationError
from matching import selectors, services, tasks
from matching.enums import CandidateStatus
from matching.models import MatchCandidate, MatchRun, MatchSettings
from profiles import selectors as profile_selectors
from profiles.enums import WorkspaceRole

WORKSPACE_FILTER = ("workspace", admin.RelatedOnlyFieldListFilter)


class StatusFilter(admin.SimpleListFilter):
    """The queue: proposed candidates unless the steward asks for the others."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*((s.value, s.label) for s in CandidateStatus), ("all", "All")]

    def choices(self, changelist: Any) -> Any:
        value = self.value() or CandidateStatus.PROPOSED
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value() or CandidateStatus.PROPOSED
        if value == "all":
            return queryset
        return queryset.filter(status=value)


class RevealForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=500,
        help_text="Why you need to see these two people's data. It is kept in the audit trail "
        "with your name, once for each profile.",
    )


def _agreement(candidate: MatchCandidate) -> str:
    parts = [
        f"{name}: {entry.get('label')}"
        for name, entry in (candidate.comparison or {}).items()
        if entry.get("label") != "missing"
    ]
    return "; ".join(parts)


@admin.register(MatchCandidate)
class MatchCandidateAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """The review queue. The list and the comparison page show levels and weights only; the
    values stay masked unless a steward holding reveal_pii gives a reason."""

    workspace_roles = (WorkspaceRole.VIEW_PROFILES,)
    compare_template = "admin/matching/matchcandidate/compare.html"
    list_display = (
        "id",
        "workspace",
        "probability_display",
        "weight_display",
        "agreement",
        "status",
        "created_at",
    )
    list_filter = (StatusFilter, WORKSPACE_FILTER)
    list_select_related = ("workspace",)
    ordering = ("-probability", "pk")
    actions = ("accept_selected", "reject_selected")
    list_per_page = 50

    @admin.display(description="probability", ordering="probability")
    def probability_display(self, obj: MatchCandidate) -> str:
        return f"{obj.probability:.1%}" if obj.probability < 0.999 else f"{obj.probability:.4%}"

    @admin.display(description="match weight", ordering="match_weight")
    def weight_display(self, obj: MatchCandidate) -> str:
        return f"{obj.match_weight:.1f}"

    @admin.display(description="agreement")
    def agreement(self, obj: MatchCandidate) -> str:
        return _agreement(obj)

    # -- permissions ----------------------------------------------------------------------

    def has_review_permission(self, request: HttpRequest) -> bool:
        """Accepting merges two profiles and rejecting keeps them apart for good: the
        decisions of a steward holding merge_profiles (view_profiles shows the queue)."""
        return request.user.is_active and (
            request.user.is_superuser
            or workspaces_for(request, WorkspaceRole.MERGE_PROFILES).exists()
        )

    def _may(self, request: HttpRequest, candidate: MatchCandidate, role: str) -> bool:
        return request.user.is_superuser or profile_selectors.user_has_role(
            user=request.user, workspace=candidate.workspace, role=role
        )

    def _get_candidate(self, request: HttpRequest, object_id: str) -> MatchCandidate:
        """The candidate if it is in the steward's workspaces; 404 otherwise, so that another
        workspace's ids look like ids that do not exist."""
        candidate = self.get_object(request, unquote(object_id))
        if candidate is None or not self._may(request, candidate, WorkspaceRole.VIEW_PROFILES):
            raise Http404("No such match candidate.")
        return candidate

    # -- views ----------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        meta = self.model._meta
        prefix = f"{meta.app_label}_{meta.model_name}"
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/accept/", view(require_POST(self.accept_view)),
                 name=f"{prefix}_accept"),
            path("<path:object_id>/reject/", view(require_POST(self.reject_view)),
                 name=f"{prefix}_reject"),
            path("<path:object_id>/reveal/", view(never_cache(self.reveal_view)),
                 name=f"{prefix}_reveal"),
            *super().get_urls(),
        ]  # fmt: skip

    def _render(
        self,
        request: HttpRequest,
        candidate: MatchCandidate,
        *,
        revealed: list[Any] | None = None,
        form: RevealForm | None = None,
        title: str = "Compare two profiles",
    ) -> HttpResponse:
        meta = self.model._meta
        rows = selectors.candidate_comparison(candidate=candidate, revealed=revealed)
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": str(candidate),
            "opts": meta,
            "original": candidate,
            "rows": rows,
            "revealed": revealed,
            "form": form,
            "total_weight": candidate.match_weight,
            "can_review": candidate.status == CandidateStatus.PROPOSED
            and self._may(request, candidate, WorkspaceRole.MERGE_PROFILES),
            "can_reveal": self._may(request, candidate, WorkspaceRole.REVEAL_PII),
            "profile_urls": [
                reverse("admin:profiles_profile_change", args=[pk])
                for pk in (candidate.profile_a_id, candidate.profile_b_id)
            ],
            "change_url": reverse(f"admin:{meta.app_label}_{meta.model_name}_change",
                                  args=[candidate.pk]),
            "changelist_url": reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"),
        }  # fmt: skip
        return TemplateResponse(request, self.compare_template, context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        candidate = self._get_candidate(request, object_id)
        return self._render(request, candidate)

    def reveal_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the reason form. POST with a reason: audit both profiles, then show the values
        side by side."""
        candidate = self._get_candidate(request, object_id)
        if not self._may(request, candidate, WorkspaceRole.REVEAL_PII):
            raise PermissionDenied
        form = RevealForm(request.POST if request.method == "POST" else None)
        revealed = None
        if form.is_valid():
            revealed = services.candidate_reveal(
                candidate=candidate, actor=request.user, reason=form.cleaned_data["reason"]
            )
        return self._render(
            request, candidate, revealed=revealed, form=form, title="Reveal personal data"
        )

    def _decide(self, request: HttpRequest, object_id: str, accept: bool) -> HttpResponse:
        candidate = self._get_candidate(request, object_id)
        if not self._may(request, candidate, WorkspaceRole.MERGE_PROFILES):
            raise PermissionDenied
        try:
            if accept:
                services.candidate_accept(candidate=candidate, actor=request.user)
                self.message_user(request, "Accepted: the two profiles were merged.")
            else:
                services.candidate_reject(candidate=candidate, actor=request.user)
                self.message_user(request, "Rejected: this pair will not be proposed again.")
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(
                reverse("admin:matching_matchcandidate_change", args=[candidate.pk])
            )
        return HttpResponseRedirect(reverse("admin:matching_matchcandidate_changelist"))

    def accept_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decide(request, object_id, accept=True)

    def reject_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decide(request, object_id, accept=False)

    # -- bulk actions ---------------------------------------------------------------------

    def _bulk(self, request: HttpRequest, queryset: QuerySet[MatchCandidate], accept: bool) -> None:
        chosen = [c for c in queryset.select_related("workspace")
                  if self._may(request, c, WorkspaceRole.MERGE_PROFILES)]  # fmt: skip
        outcome = services.candidates_review(candidates=chosen, accept=accept, actor=request.user)
        verb = "accepted (merged)" if accept else "rejected"
        self.message_user(request, f"{outcome.done} candidate(s) {verb}.")
        if outcome.skipped:
            detail = ", ".join(f"{count} {code}" for code, count in sorted(outcome.skipped.items()))
            self.message_user(request, f"Skipped: {detail}.", messages.WARNING)

    @admin.action(description="Accept the selected candidates (merge)", permissions=["review"])
    def accept_selected(self, request: HttpRequest, queryset: QuerySet[MatchCandidate]) -> None:
        self._bulk(request, queryset, accept=True)

    @admin.action(description="Reject the selected candidates", permissions=["review"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[MatchCandidate]) -> None:
        self._bulk(request, queryset, accept=False)


# --- settings and runs -----------------------------------------------------------------------


class MatchSettingsForm(forms.ModelForm):
    class Meta:
        model = MatchSettings
        fields = (
            "workspace",
            "review_threshold",
            "auto_merge_threshold",
            "fields",
            "blocking",
            "name_swap",
            "max_block_size",
            "u_sample_pairs",
            "parameters_mode",
            "parameters",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            services.match_settings_validate(
                fields=data.get("fields"),
                blocking=data.get("blocking"),
                name_swap=data.get("name_swap") or [],
                max_block_size=data.get("max_block_size") or 0,
                u_sample_pairs=data.get("u_sample_pairs") or 0,
                review_threshold=data.get("review_threshold") or 0,
                auto_merge_threshold=data.get("auto_merge_threshold"),
                parameters_mode=data.get("parameters_mode") or "",
                parameters=data.get("parameters") or {},
            )
        except ApplicationError as exc:
            raise ValidationError(exc.message) from None
        return data


@admin.register(MatchSettings)
class MatchSettingsAdmin(WorkspaceScopedAdmin):
    """One per workspace. Stewards holding view_profiles on the workspace see it, those holding
    manage_data edit it; every save is validated as a whole and audited."""

    form = MatchSettingsForm
    workspace_roles = (WorkspaceRole.VIEW_PROFILES, WorkspaceRole.MANAGE_DATA)
    # New settings go only into a workspace the steward manages (view_profiles, which also
    # opens this admin, does not let anyone set its auto-merge threshold).
    add_roles = (WorkspaceRole.MANAGE_DATA,)
    list_display = (
        "workspace",
        "review_threshold",
        "auto_merge_threshold",
        "parameters_mode",
        "parameters_estimated_at",
        "updated_at",
    )
    list_select_related = ("workspace",)
    readonly_fields = ("parameters_estimated_at", "updated_at")
    actions = ("run_full",)

    def _may_edit(self, request: HttpRequest, obj: Any | None) -> bool:
        if request.user.is_superuser:
            return True
        if obj is None:
            return workspaces_for(request, WorkspaceRole.MANAGE_DATA).exists()
        return profile_selectors.user_has_role(
            user=request.user, workspace=obj.workspace, role=WorkspaceRole.MANAGE_DATA
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_edit(request, None)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may_edit(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_run_permission(self, request: HttpRequest) -> bool:
        # A run may merge (auto-merge above its threshold): a data-management decision.
        return self._may_edit(request, None)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        fixed = ("parameters_estimated_at", "updated_at")
        return fixed if obj is None else ("workspace", *fixed)

    def save_model(self, request: HttpRequest, obj: MatchSettings, form: Any, change: bool) -> None:
        data = {name: form.cleaned_data[name] for name in services.SETTINGS_FIELDS
                if name in form.cleaned_data}  # fmt: skip
        if change:
            changed = {k: v for k, v in data.items() if k in form.changed_data}
            fresh = MatchSettings.objects.get(pk=obj.pk)
            saved = services.match_settings_update(settings=fresh, **changed)
        else:
            settings = services.match_settings_ensure(workspace=form.cleaned_data["workspace"])
            saved = services.match_settings_update(settings=settings, **data)
        obj.pk = saved.pk

    @admin.action(description="Run matching now (full run, in the background)",
                  permissions=["run"])  # fmt: skip
    def run_full(self, request: HttpRequest, queryset: QuerySet[MatchSettings]) -> None:
        allowed = set(
            workspaces_for(request, WorkspaceRole.MANAGE_DATA).values_list("pk", flat=True)
        )
        started = 0
        for settings in queryset:
            if request.user.is_superuser or settings.workspace_id in allowed:
                workspace_id = settings.workspace_id
                transaction.on_commit(
                    lambda w=workspace_id: tasks.match_run.delay(w, full=True)  # type: ignore[misc]
                )
                started += 1
        self.message_user(request, f"Matching started for {started} workspace(s).")


@admin.register(MatchRun)
class MatchRunAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    workspace_roles = (WorkspaceRole.VIEW_PROFILES,)
    list_display = (
        "id",
        "workspace",
        "kind",
        "status",
        "started_at",
        "finished_at",
        "profiles_considered",
        "profiles_changed",
        "profiles_decrypted",
        "candidate_pairs",
        "proposed",
        "auto_merged",
    )
    list_filter = (WORKSPACE_FILTER, "kind", "status")
    list_select_related = ("workspace",)
    ordering = ("-started_at",)
    date_hierarchy = "started_at"
