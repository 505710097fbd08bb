"""The subject's download of an export, and the published JSON Schema of its data.json. Plain
Django views: the download is authorized by its token alone (no session, no API token). Also
the response that hands out a signed erasure certificate (the portal's and the admin's)."""

from __future__ import annotations

import functools
import hmac
import io
import json
import uuid
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from cdp.core.audit import record_access
from governance import export, selectors
from governance.enums import RequestState
from governance.models import ErasureCertificate, ExportArchive

DOWNLOADABLE_STATES = frozenset({RequestState.FULFILLED, RequestState.PARTIALLY_FULFILLED})


def _error(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"code": code, "message": message}, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _not_found() -> JsonResponse:
    return _error(404, "not_found", "No such export, or the link is not valid.")


def _get_only(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """GET only, any other method answered 405 in the API's shape (Django's require_GET answers
    an empty HTML page). CSRF-exempt: nothing here acts on a POST, and the 405 must reach the
    caller rather than Django's HTML CSRF failure."""

    @functools.wraps(view)
    def get_only(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "GET":
            response = _error(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
            response["Allow"] = "GET"
            return response
        return view(request, *args, **kwargs)

    return csrf_exempt(get_only)


@_get_only
def export_download(request: HttpRequest, request_id: str) -> HttpResponseBase:
    """GET /api/v1/requests/{id}/download?token=...: the decrypted zip, once per call audited."""
    token = request.GET.get("token", "")
    try:
        # Matched as text (as every API route): a malformed id answers the JSON 404 too.
        pk = uuid.UUID(request_id)
    except ValueError:
        return _not_found()
    if not token:
        return _not_found()
    given = export.hash_download_token(token)
    # Every export of the request is compared in constant time; a wrong id and a wrong token
    # answer alike.
    candidates = list(ExportArchive.objects.select_related("request").filter(request_id=pk))
    archive = None
    for candidate in candidates:
        if hmac.compare_digest(candidate.download_token_hash, given):
            archive = candidate
    if archive is None or archive.request.state not in DOWNLOADABLE_STATES:
        return _not_found()
    if archive.expires_at <= timezone.now():
        return _error(410, "export_expired", "This download link has expired.")
    with transaction.atomic():
        ExportArchive.objects.filter(pk=archive.pk).update(downloads=F("downloads") + 1)
        record_access(
            archive, actor=None, reason="subject download", fields=["archive"], via="download"
        )
        payload = export.export_open(archive=archive)
    response = FileResponse(
        io.BytesIO(payload),
        as_attachment=True,
        filename=f"personal-data-{archive.request_id}.zip",
        content_type="application/zip",
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@_get_only
def export_schema(request: HttpRequest) -> JsonResponse:
    """GET /api/v1/requests/export-schema.json: the JSON Schema of an export's data.json."""
    response = JsonResponse(
        {**export.EXPORT_SCHEMA, "$id": request.build_absolute_uri()},
        content_type="application/schema+json",
        json_dumps_params={"indent": 2},
    )
    response["Cache-Control"] = "public, max-age=3600"
    response["Access-Control-Allow-Origin"] = "*"
    return response


def certificate_response(certificate: ErasureCertificate) -> HttpResponse:
    """The signed certificate as a JSON attachment (`manage.py verify_certificate` checks it),
    never cached."""
    response = HttpResponse(
        json.dumps(selectors.certificate_document(certificate), indent=2, sort_keys=True),
        content_type="application/json",
    )
    response["Content-Disposition"] = (
        f'attachment; filename="erasure-certificate-{certificate.pk}.json"'
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
