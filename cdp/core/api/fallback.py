"""What answers under /api/ when no route matches: the API's JSON 404, not Django's HTML page.

Django's APPEND_SLASH redirects a path missing its trailing slash with a 301, which clients
follow as a GET: `POST /api/v1/audiences` created nothing and answered the audience list.
A GET or HEAD is still redirected, as before; any other method answers 404 naming the path
the route has, so that a write is never silently turned into a read."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, get_script_prefix, resolve
from django.views.decorators.csrf import csrf_exempt

URL_NAME = "api-not-found"


def _other_slash_form(request: HttpRequest) -> str | None:
    """The request's path with its trailing slash added or removed, if a route has that one."""
    path = request.path_info
    candidate = path[:-1] if path.endswith("/") else f"{path}/"
    try:
        match = resolve(candidate, getattr(request, "urlconf", None))
    except Resolver404:
        return None
    return None if match.url_name == URL_NAME else candidate


# Exempt: it acts on nothing, and a write without a CSRF token must still get this answer
# (the DRF views are exempt too; their authentication is the token).
@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """404 `{"code": "not_found", "message": ...}` for any method; the 301 of APPEND_SLASH
    for a GET or HEAD whose path lacks the trailing slash its route has."""
    other = _other_slash_form(request)
    if (
        other is not None
        and other.endswith("/")
        and settings.APPEND_SLASH
        and request.method in ("GET", "HEAD")
    ):
        return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    message = "No such API endpoint."
    if other is not None:
        message = f"No such API endpoint; did you mean {get_script_prefix()}{other.lstrip('/')}?"
    return JsonResponse({"code": "not_found", "message": message}, status=404)
