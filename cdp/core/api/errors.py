"""One exception handler for every API: application errors and DRF's own errors both answer
`{"code": ..., "message": ...}` (plus `errors` with field details for validation)."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from cdp.core.exceptions import ApplicationError

_DRF_CODES: list[tuple[type[drf.APIException], str]] = [
    (drf.ValidationError, "invalid"),
    (drf.ParseError, "malformed_body"),
    (drf.AuthenticationFailed, "unauthenticated"),
    (drf.NotAuthenticated, "unauthenticated"),
    (drf.PermissionDenied, "forbidden"),
    (drf.NotFound, "not_found"),
    (drf.MethodNotAllowed, "method_not_allowed"),
    (drf.NotAcceptable, "not_acceptable"),
    (drf.UnsupportedMediaType, "unsupported_media_type"),
    (drf.Throttled, "rate_limited"),
]


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key == "non_field_errors" else f"{key}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def _django_error(exc: Exception) -> Response | None:
    """Django's own exceptions that reach a view: answered in the API's shape, not as Django's
    HTML error pages (SuspiciousOperation) or a 500 (ValidationError)."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body("request_too_large", f"The request body is larger than {limit} bytes."),
            status=413,
        )
    if isinstance(exc, TooManyFieldsSent):
        return Response(
            error_body("too_many_parameters", "The request has too many parameters."), status=400
        )
    if isinstance(exc, DjangoValidationError):
        # A safety net: input should be checked before it reaches a model or a query, with a
        # precise answer. Django's message may quote the input, so it is not repeated.
        return Response(error_body("invalid", "The input is not valid."), status=400)
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(exc.code, exc.message, **exc.extra),
            status=exc.status,
            headers=getattr(exc, "headers", None),
        )
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if not isinstance(exc, drf.APIException):
        return _django_error(exc)
    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "error")
    headers: dict[str, str] = {}
    if isinstance(exc, drf.ValidationError):
        body = error_body(code, _first_message(exc.detail), errors=exc.detail)
    else:
        body = error_body(code, _first_message(exc.detail))
    wait = getattr(exc, "wait", None)
    if isinstance(exc, drf.Throttled) and wait is not None:
        # DRF rounds `wait` up already; the header agrees with the message's seconds.
        headers["Retry-After"] = str(math.ceil(wait))
    if isinstance(exc, drf.AuthenticationFailed | drf.NotAuthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return Response(body, status=exc.status_code, headers=headers)
