"""Bulk imports in the admin: stewards holding `manage_data` on a workspace (the role under
which they configure its identity rules and trait classes) upload a file with its mapping; a
worker runs it while the job's page shows its progress; the error file (personal data masked,
sealed at rest) is downloaded from there, each download audited."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from cdp.core.admin import ReadOnlyAdminMixin, WorkspaceScopedAdmin, workspaces_for
from cdp.core.exceptions import ApplicationError
from collect import intake
from collect.enums import ImportFormat, ImportKind, ImportStatus
from collect.imports import services as import_services
from collect.imports.mapping import ImportMapping, mapping_parse
from collect.imports.readers import detect_format
from collect.imports.upload import SealedUpload, SealingUploadHandler, upload_refused
from collect.models import ImportJob, IntakeBatch
from profiles import selectors as profile_selectors
from profiles.enums import WorkspaceRole

ROLE = WorkspaceRole.MANAGE_DATA


class ImportUploadForm(forms.Form):
    workspace: forms.ModelChoiceField[Any] = forms.ModelChoiceField(queryset=None)
    source: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        queryset=None,
        help_text="Where the rows are recorded as coming from (an enabled source of the "
        "workspace).",
    )
    kind = forms.ChoiceField(choices=ImportKind.choices)
    file = forms.FileField(help_text="CSV with a header row, or JSON Lines; .gz accepted.")
    file_format = forms.ChoiceField(
        label="Format",
        required=False,
        choices=[("", "From the file name"), *ImportFormat.choices],
    )
    mapping = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        required=False,
        help_text="One COLUMN=TARGET a line: trait:NAME[:TYPE], identifier:TYPE (events: "
        "property:NAME[:TYPE]). TYPE: string, integer, number, boolean, date, datetime. "
        "E.g. email=identifier:email, tier=trait:loyalty_tier.",
    )
    id_column = forms.CharField(required=False, help_text="The column holding each row's id.")
    id_type = forms.CharField(required=False, help_text="Its identifier type, e.g. crm_id.")
    event_column = forms.CharField(required=False, help_text="Events: the event-name column.")
    event_name = forms.CharField(required=False, help_text="Events: or one name for every row.")
    timestamp_column = forms.CharField(
        required=False, help_text="ISO 8601 time of each row (required for events)."
    )
    message_id_column = forms.CharField(
        required=False, help_text="Optional: a unique id per row (e.g. an order number)."
    )
    phone_region = forms.CharField(
        required=False, max_length=2, help_text="For phone numbers without +country, e.g. GB."
    )
    # Not stripped: a tab or a space typed here is the delimiter ("\\t" and "tab" work too).
    delimiter = forms.CharField(required=False, max_length=3, initial=",", strip=False)

    def __init__(self, *args: Any, workspaces: QuerySet[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["workspace"].queryset = workspaces  # type: ignore[attr-defined]
        self.fields["source"].queryset = profile_selectors.source_list_for_workspaces(  # type: ignore[attr-defined]
            workspaces=workspaces
        )
        self.parsed: ImportMapping | None = None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        workspace, source = data.get("workspace"), data.get("source")
        if workspace is not None and source is not None and source.workspace_id != workspace.pk:
            self.add_error("source", "Choose a source of the chosen workspace.")
        upload = data.get("file")
        if upload is not None:
            try:
                detect_format(upload.name, data.get("file_format") or None)
            except ApplicationError as exc:
                self.add_error("file_format", exc.message)
        if data.get("kind"):
            delimiter = data.get("delimiter") or ","
            try:
                self.parsed = mapping_parse(
                    kind=data["kind"],
                    maps=(data.get("mapping") or "").splitlines(),
                    id_column=data.get("id_column"),
                    id_type=data.get("id_type"),
                    event_column=data.get("event_column"),
                    event_name=data.get("event_name"),
                    timestamp_column=data.get("timestamp_column"),
                    message_id_column=data.get("message_id_column"),
                    phone_region=data.get("phone_region"),
                    delimiter="\t" if delimiter in ("\\t", "tab") else delimiter,
                )
            except ApplicationError as exc:
                self.add_error("mapping", exc.message)
        return data


@admin.register(ImportJob)
class ImportJobAdmin(WorkspaceScopedAdmin):
    workspace_roles = (ROLE,)
    change_form_template = "admin/collect/importjob/change_form.html"
    upload_template = "admin/collect/importjob/upload.html"
    list_display = (
        "short_id",
        "workspace",
        "kind",
        "source",
        "file_name",
        "status",
        "progress_percent",
        "rows_ok",
        "rows_failed",
        "created_by",
        "created_at",
    )
    list_filter = (("workspace", admin.RelatedOnlyFieldListFilter), "kind", "status")
    list_select_related = ("workspace", "source", "created_by")
    ordering = ("-created_at",)
    fields = (
        "id",
        "workspace",
        "source",
        "kind",
        "file_name",
        "file_format",
        "compressed",
        "status",
        "progress_percent",
        "mapping_summary",
        "rows_total",
        "rows_ok",
        "rows_failed",
        "rows_stored",
        "rows_unchanged",
        "rows_dropped",
        "profiles_created",
        "merges",
        "conflicts",
        "error_counts",
        "failure_code",
        "failure_message",
        "errors_expire_at",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("error_file")

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is None or request.user.is_superuser:
            return super().has_view_permission(request, obj)
        return profile_selectors.user_has_role(
            user=request.user,
            workspace=obj.workspace,  # type: ignore[attr-defined]
            role=ROLE,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._has_role(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="import")
    def short_id(self, obj: ImportJob) -> str:
        return str(obj.pk)[-12:]

    @admin.display(description="progress")
    def progress_percent(self, obj: ImportJob) -> str:
        return f"{obj.progress * 100:.0f}%"

    @admin.display(description="mapping")
    def mapping_summary(self, obj: ImportJob) -> str:
        try:
            lines = ImportMapping.from_dict(obj.mapping).summary()
        except (TypeError, ValueError):
            return "—"
        return format_html("<code>{}</code>", "\n".join(lines)) if lines else "—"

    # -- views ----------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        meta = self.model._meta
        name = f"{meta.app_label}_{meta.model_name}"
        protected = self.admin_site.admin_view(self.upload_view)

        # The upload handler must be in place before anything reads the body, the CSRF check
        # included; the admin view checks the token itself (csrf_protect) right after.
        @csrf_exempt
        def upload_entry(request: HttpRequest) -> HttpResponse:
            request.upload_handlers = [SealingUploadHandler(request)]
            return protected(request)

        return [
            path("add/", upload_entry, name=f"{name}_add"),
            path(
                "<path:object_id>/progress/",
                self.admin_site.admin_view(never_cache(self.progress_view)),
                name=f"{name}_progress",
            ),
            path(
                "<path:object_id>/errors.csv",
                self.admin_site.admin_view(never_cache(self.errors_view)),
                name=f"{name}_errors",
            ),
            *super().get_urls(),
        ]

    def _get_job(self, request: HttpRequest, object_id: str) -> ImportJob:
        """The job if it is in the user's workspaces; 404 otherwise, so that another
        workspace's ids are indistinguishable from ids that do not exist."""
        job = self.get_object(request, unquote(object_id))
        if job is None or not self.has_view_permission(request, job):
            raise Http404("No such import.")
        return job

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        workspaces = workspaces_for(request, ROLE)
        if request.method == "POST":
            form = ImportUploadForm(request.POST, request.FILES, workspaces=workspaces)
            refused_over = upload_refused(request)
            if refused_over is not None:
                form.is_valid()
                form.errors.pop("file", None)
                form.add_error(
                    "file",
                    f"The file is larger than {filesizeformat(refused_over)}, the most an upload "
                    "takes here; import it with manage.py import_profiles or import_events.",
                )
            elif form.is_valid():
                job = self._create(request, form)
                if job is not None:
                    meta = self.model._meta
                    return HttpResponseRedirect(
                        reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[job.pk])
                    )
        else:
            form = ImportUploadForm(workspaces=workspaces)
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a file",
            "opts": self.model._meta,
            "form": form,
            "has_view_permission": True,
        }
        return TemplateResponse(request, self.upload_template, context)

    def _create(self, request: HttpRequest, form: ImportUploadForm) -> ImportJob | None:
        data = form.cleaned_data
        upload = data["file"]
        assert form.parsed is not None
        parts = upload.plain_chunks() if isinstance(upload, SealedUpload) else upload.chunks()
        try:
            job = import_services.import_job_create(
                workspace=data["workspace"],
                source=data["source"],
                mapping=form.parsed,
                file_name=upload.name,
                file_format=data.get("file_format") or None,
                created_by=request.user,
                upload=parts,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
            return None
        finally:
            upload.close()
        messages.success(request, "The file is queued for import; this page shows its progress.")
        return job

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        job = self._get_job(request, object_id)
        meta = self.model._meta
        name = f"admin:{meta.app_label}_{meta.model_name}"
        extra = {
            **(extra_context or {}),
            "job": job,
            "running": job.status in (ImportStatus.QUEUED, ImportStatus.RUNNING),
            "progress_url": reverse(f"{name}_progress", args=[job.pk]),
            "errors_url": reverse(f"{name}_errors", args=[job.pk]),
            "has_errors": job.error_key_id is not None
            and ImportJob.objects.filter(pk=job.pk, error_file__isnull=False).exists(),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra)

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        job = self._get_job(request, object_id)
        return JsonResponse(
            {
                "status": job.status,
                "progress": round(job.progress, 4),
                "rows_total": job.rows_total,
                "rows_ok": job.rows_ok,
                "rows_failed": job.rows_failed,
                "rows_stored": job.rows_stored,
                "rows_unchanged": job.rows_unchanged,
                "failure_code": job.failure_code,
            }
        )

    def errors_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self._get_job(request, object_id)
        try:
            data = import_services.import_errors_read(job=job, actor=request.user)
        except ApplicationError:
            raise Http404("This import has no error file (or it has expired).") from None
        response = HttpResponse(data, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response


@admin.register(IntakeBatch)
class IntakeBatchAdmin(ReadOnlyAdminMixin, WorkspaceScopedAdmin):
    """The asynchronous intake buffer: batches waiting for a drain (seconds), and those set
    aside after failing MAX_ATTEMPTS times (dead), out of which an erasure takes the erased
    person's messages. The messages stay sealed: the page shows counts, attempts and the
    error's code only. "Retry" puts batches set aside back in the queue once their cause is
    fixed; "Discard" deletes batches set aside that no retry can store, with a reason (an
    audit entry per batch)."""

    workspace_roles = (ROLE,)
    discard_template = "admin/collect/intakebatch/discard.html"
    list_display = (
        "received_at",
        "workspace",
        "source",
        "message_count",
        "attempts",
        "last_error",
        "dead",
        "contended",
        "shard",
    )
    list_filter = ("dead", ("workspace", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("workspace", "source")
    ordering = ("-received_at",)
    fields = list_display
    actions = ("retry", "discard")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The sealed payload (some 70 KB a batch) is never shown: not read either.
        return super().get_queryset(request).defer("payload")

    def _managed_workspace_ids(self, request: HttpRequest) -> list[int]:
        return list(workspaces_for(request, ROLE).values_list("pk", flat=True))

    @admin.action(description="Retry the selected batches set aside")
    def retry(self, request: HttpRequest, queryset: QuerySet[IntakeBatch]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        retried = intake.intake_retry(
            batch_ids=selected, workspace_ids=self._managed_workspace_ids(request)
        )
        skipped = len(selected) - retried
        text = f"{retried} batches put back in the queue."
        if skipped > 0:
            text += f" {skipped} were not set aside (they are waiting for a drain already)."
        messages.info(request, text)

    @admin.action(description="Discard the selected batches set aside (their messages are lost)")
    def discard(self, request: HttpRequest, queryset: QuerySet[IntakeBatch]) -> Any:
        """First a confirmation page asking for the reason; then the discard."""
        dead = list(queryset.filter(dead=True).select_related("workspace", "source"))
        skipped = queryset.count() - len(dead)
        if not dead:
            messages.info(request, "None of the selected batches is set aside: nothing to discard.")
            return None
        form = DiscardForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            discarded = intake.intake_discard(
                batch_ids=[b.pk for b in dead],
                workspace_ids=self._managed_workspace_ids(request),
                actor=request.user,
                reason=form.cleaned_data["reason"],
            )
            text = f"{discarded} batches set aside discarded; their messages were not stored."
            if skipped > 0:
                text += f" {skipped} were not set aside and were left alone."
            messages.warning(request, text)
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Discard batches set aside",
            "batches": dead,
            "messages_total": sum(b.message_count for b in dead),
            "max_attempts": intake.MAX_ATTEMPTS,
            "skipped": skipped,
            "form": form,
            "action_name": "discard",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, self.discard_template, context)


class DiscardForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why these messages are given up. Kept in the audit trail for good: do not "
        "quote personal data here.",
    )
