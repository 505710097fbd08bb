"""The privacy portal: a person submits a request, enters the code sent to them, follows the
request and downloads their export when it is ready.

Plain Django views with CSRF-protected forms. The status token issued at submission is kept in
the person's session only (never in a URL), so the verify and status pages answer 404 to anyone
without it, exactly like an unknown request."""

from __future__ import annotations

import io
import re
from typing import Any, cast

from django import forms
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from cdp.core.exceptions import ApplicationError, NotFound
from consent import selectors as consent_selectors
from governance import downloads, selectors, services
from governance.enums import Regime, RequestState, RequestType
from governance.limits import RequestRateLimited, client_limit_consume
from governance.models import DataSubjectRequest
from profiles import selectors as profile_selectors

SESSION_KEY = "privacy_request_tokens"
SLUG = re.compile(r"[-a-z0-9_]{1,64}")


class SubmitForm(forms.Form):
    type = forms.ChoiceField(label="What would you like to do?", choices=RequestType.choices)
    regime = forms.ChoiceField(
        label="Which law applies to you?",
        choices=Regime.choices,
        help_text="If you are not sure, choose the one for where you live.",
    )
    contact_type = forms.ChoiceField(
        label="How can we reach you?",
        choices=[("email", "Email"), ("phone", "Phone")],
        widget=forms.RadioSelect,
        initial="email",
    )
    email = forms.EmailField(label="Email address", required=False, max_length=254)
    phone = forms.CharField(label="Phone number", required=False, max_length=32)
    purposes = forms.MultipleChoiceField(
        label="Which uses of your data do you object to?",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only for an objection.",
    )
    details = forms.CharField(
        label="Anything else we should know?",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="For a correction, say what is wrong and what it should be.",
    )

    def __init__(self, *args: Any, purposes: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.MultipleChoiceField, self.fields["purposes"])
        field.choices = [(p.key, p.name) for p in purposes]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("contact_type")
        if kind and not data.get(kind):
            self.add_error(kind, "Please fill this in.")
        if data.get("type") == RequestType.OBJECTION and not data.get("purposes"):
            self.add_error("purposes", "Choose at least one use you object to.")
        return data

    def details_value(self) -> dict[str, Any] | None:
        details: dict[str, Any] = {}
        if self.cleaned_data.get("purposes"):
            details["purposes"] = list(self.cleaned_data["purposes"])
        if self.cleaned_data.get("details"):
            details["text"] = self.cleaned_data["details"]
        return details or None


class VerifyForm(forms.Form):
    code = forms.RegexField(
        label="Verification code",
        regex=r"^\s*\d{6}\s*$",
        max_length=12,
        error_messages={"invalid": "The code is the 6 digits in the message we sent you."},
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "one-time-code"}),
    )


def _tokens(request: HttpRequest) -> dict[str, str]:
    return dict(request.session.get(SESSION_KEY, {}))


def _remember(request: HttpRequest, dsr: DataSubjectRequest, token: str) -> None:
    tokens = _tokens(request)
    tokens[str(dsr.pk)] = token
    request.session[SESSION_KEY] = tokens


def _own_request(request: HttpRequest, request_id: str) -> DataSubjectRequest:
    token = _tokens(request).get(request_id)
    dsr = selectors.request_get_for_subject(request_id=request_id, token=token)
    if dsr is None:
        raise Http404("No such request.")
    return dsr


def _limited(request: HttpRequest, scope: str) -> str | None:
    try:
        client_limit_consume(http_request=request, scope=scope)
    except RequestRateLimited as exc:
        return exc.message
    return None


@require_GET
def portal_index(request: HttpRequest) -> HttpResponse:
    """Asks which organisation the request is for (the list of workspaces is not public)."""
    slug = request.GET.get("workspace", "").strip().lower()
    if slug and SLUG.fullmatch(slug):
        return HttpResponseRedirect(reverse("privacy-portal-submit", args=[slug]))
    context = {"error": "Organisation names use letters, digits and dashes." if slug else ""}
    return render(request, "governance/portal/index.html", context, status=400 if slug else 200)


@never_cache
@require_http_methods(["GET", "POST"])
def portal_submit(request: HttpRequest, workspace_slug: str) -> HttpResponse:
    try:
        workspace = profile_selectors.workspace_get(slug=workspace_slug)
    except NotFound:
        raise Http404("No such page.") from None
    purposes = list(consent_selectors.purpose_list(workspace=workspace))
    form = SubmitForm(request.POST or None, purposes=purposes)
    status = 200
    if request.method == "POST" and form.is_valid():
        refused = _limited(request, "submit")
        if refused:
            form.add_error(None, refused)
            status = 429
        else:
            kind = form.cleaned_data["contact_type"]
            try:
                submitted = services.request_submit(
                    workspace=workspace,
                    request_type=form.cleaned_data["type"],
                    regime=form.cleaned_data["regime"],
                    contact_type=kind,
                    contact=form.cleaned_data[kind],
                    details=form.details_value(),
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
                status = 400
            else:
                dsr = submitted.request
                _remember(request, dsr, submitted.status_token)
                target = (
                    "privacy-portal-verify"
                    if dsr.state == RequestState.AWAITING_VERIFICATION
                    and dsr.contact_type == "email"
                    else "privacy-portal-status"
                )
                return HttpResponseRedirect(reverse(target, args=[dsr.pk]))
    elif request.method == "POST":
        status = 400
    context = {"form": form, "workspace_name": workspace.name}
    return render(request, "governance/portal/submit.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def portal_verify(request: HttpRequest, request_id: str) -> HttpResponse:
    dsr = _own_request(request, request_id)
    if dsr.state != RequestState.AWAITING_VERIFICATION:
        return HttpResponseRedirect(reverse("privacy-portal-status", args=[dsr.pk]))
    form = VerifyForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        refused = _limited(request, "verify")
        if refused:
            form.add_error(None, refused)
            status = 429
        else:
            try:
                services.request_verify(request=dsr, code=form.cleaned_data["code"].strip())
            except ApplicationError as exc:
                form.add_error("code", exc.message)
                status = exc.status
            else:
                return HttpResponseRedirect(reverse("privacy-portal-status", args=[dsr.pk]))
    elif request.method == "POST":
        status = 400
    context = {"form": form, "dsr": dsr, "workspace_name": dsr.workspace.name}
    return render(request, "governance/portal/verify.html", context, status=status)


@never_cache
@require_GET
def portal_status(request: HttpRequest, request_id: str) -> HttpResponse:
    dsr = _own_request(request, request_id)
    certificate = selectors.certificate_of(dsr)
    export = selectors.request_export_ready(request=dsr)
    if dsr.state not in services.DOWNLOADABLE_STATES:
        export = None
    context = {
        "dsr": dsr,
        "workspace_name": dsr.workspace.name,
        "export": export,
        "download_url": reverse("privacy-portal-download", args=[dsr.pk]) if export else None,
        "awaiting_code": dsr.state == RequestState.AWAITING_VERIFICATION
        and bool(dsr.verification_code_hash),
        "cancellable": services.request_cancellable(request=dsr),
        "certificate": certificate,
        "certificate_partial": certificate is not None
        and bool(selectors.certificate_failed_stores(certificate)),
    }
    return render(request, "governance/portal/status.html", context)


@never_cache
@require_GET
def portal_certificate(request: HttpRequest, request_id: str) -> HttpResponse:
    """The signed erasure certificate as JSON, for the browser that submitted the request: the
    person can check it against the published keys
    (/.well-known/cdp-receipt-keys.json?workspace=<slug>)."""
    dsr = _own_request(request, request_id)
    certificate = selectors.certificate_of(dsr)
    if certificate is None:
        raise Http404("No erasure certificate yet.")
    return downloads.certificate_response(certificate)


@never_cache
@require_http_methods(["POST"])
def portal_cancel(request: HttpRequest, request_id: str) -> HttpResponse:
    """The subject cancels their request (CSRF-protected form on the status page): before work
    starts, or for an erasure while its cancellation window is open."""
    dsr = _own_request(request, request_id)
    refused = _limited(request, "verify")
    if refused:
        return HttpResponse(refused, status=429, content_type="text/plain")
    try:
        services.request_cancel(request=dsr)
    except ApplicationError as exc:
        return render(
            request,
            "governance/portal/status.html",
            {
                "dsr": dsr,
                "workspace_name": dsr.workspace.name,
                "export": None,
                "cancel_error": exc.message,
            },
            status=exc.status,
        )
    return HttpResponseRedirect(reverse("privacy-portal-status", args=[dsr.pk]))


@never_cache
@require_GET
def portal_download(request: HttpRequest, request_id: str) -> FileResponse:
    """The export as a zip, for the browser that submitted the request (audited per download)."""
    dsr = _own_request(request, request_id)
    try:
        archive, payload = services.request_export_download(request=dsr, via="portal")
    except NotFound:
        raise Http404("No export is ready.") from None
    response = FileResponse(
        io.BytesIO(payload),
        as_attachment=True,
        filename=f"personal-data-{archive.request_id}.zip",
        content_type="application/zip",
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
