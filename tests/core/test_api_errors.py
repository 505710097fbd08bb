"""The API base: one error shape `{"code", "message"}` for application and DRF errors, token
authentication scoped to one workspace, and the schema and docs served without a CDN."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from cdp.core.exceptions import (
    ApplicationError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from profiles import services
from profiles.enums import WorkspaceRole
from profiles.exceptions import WorkspaceNotFound
from profiles.models import ApiToken, Workspace

factory = APIRequestFactory()
WORKSPACE_URL = "/api/v1/workspace/"


class _Raising(APIView):
    """Raises whatever the test put in `error`."""

    permission_classes: ClassVar[list[Any]] = [AllowAny]  # type: ignore[misc]
    error: ClassVar[Exception | None] = None

    def get(self, request: Request) -> Response:
        assert self.error is not None
        raise self.error

    def post(self, request: Request) -> Response:
        return Response({"received": request.data})


class _GetOnly(APIView):
    permission_classes: ClassVar[list[Any]] = [AllowAny]  # type: ignore[misc]

    def get(self, request: Request) -> Response:
        return Response({})


class _Quota(Conflict):
    code = "quota_exceeded"
    status = 429
    default_message = "Too many exports today."


def _raise(error: Exception) -> Any:
    view = type("View", (_Raising,), {"error": error}).as_view()  # type: ignore[attr-defined]
    response = view(factory.get("/"))
    response.render()
    return response


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (InvalidInput(), 400, {"code": "invalid", "message": "The input is not valid."}),
        (NotFound(), 404, {"code": "not_found", "message": "Not found."}),
        (
            PermissionDenied(),
            403,
            {"code": "forbidden", "message": "You do not have permission to do this."},
        ),
        (
            Conflict("The audience is being rebuilt."),
            409,
            {"code": "conflict", "message": "The audience is being rebuilt."},
        ),
        (
            ApplicationError(),
            400,
            {"code": "error", "message": "The request could not be processed."},
        ),
        (
            InvalidInput("Unknown purpose.", code="unknown_purpose", extra={"field": "purpose"}),
            400,
            {"code": "unknown_purpose", "message": "Unknown purpose.", "field": "purpose"},
        ),
        (
            WorkspaceNotFound(),
            404,
            {"code": "workspace_not_found", "message": "No such workspace."},
        ),
        (_Quota(), 429, {"code": "quota_exceeded", "message": "Too many exports today."}),
    ],
)
def test_application_errors_map_to_code_message_and_status(
    error: Exception, status: int, body: dict[str, Any]
) -> None:
    # when
    response = _raise(error)

    # then
    assert response.status_code == status
    assert response.data == body
    assert json.loads(response.content) == body


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            drf.ValidationError({"purpose": ["This field is required."]}),
            400,
            {
                "code": "invalid",
                "message": "purpose: This field is required.",
                "errors": {"purpose": ["This field is required."]},
            },
        ),
        (
            drf.ValidationError({"non_field_errors": ["Pick a purpose or a notice."]}),
            400,
            {
                "code": "invalid",
                "message": "Pick a purpose or a notice.",
                "errors": {"non_field_errors": ["Pick a purpose or a notice."]},
            },
        ),
        (
            drf.ValidationError(["Too many identifiers."]),
            400,
            {
                "code": "invalid",
                "message": "Too many identifiers.",
                "errors": ["Too many identifiers."],
            },
        ),
        (drf.ParseError(), 400, {"code": "malformed_body", "message": "Malformed request."}),
        (
            drf.PermissionDenied(),
            403,
            {
                "code": "forbidden",
                "message": "You do not have permission to perform this action.",
            },
        ),
        (drf.NotFound(), 404, {"code": "not_found", "message": "Not found."}),
        (
            Http404("No Profile matches the given query."),
            404,
            {"code": "not_found", "message": "Not found."},
        ),
        (
            DjangoPermissionDenied("nope"),
            403,
            {
                "code": "forbidden",
                "message": "You do not have permission to perform this action.",
            },
        ),
        (
            drf.NotAcceptable(),
            406,
            {"code": "not_acceptable", "message": "Could not satisfy the request Accept header."},
        ),
        (
            drf.UnsupportedMediaType("text/csv"),
            415,
            {
                "code": "unsupported_media_type",
                "message": 'Unsupported media type "text/csv" in request.',
            },
        ),
        (
            drf.APIException(),
            500,
            {"code": "error", "message": "A server error occurred."},
        ),
    ],
)
def test_drf_errors_map_to_code_message_and_status(
    error: Exception, status: int, body: dict[str, Any]
) -> None:
    # when
    response = _raise(error)

    # then
    assert response.status_code == status
    assert json.loads(response.content) == body


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            # Django's message quotes the input: the answer does not repeat it
            DjangoValidationError("“garbage” value has an invalid format."),
            400,
            {"code": "invalid", "message": "The input is not valid."},
        ),
        (
            RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE."),
            413,
            {
                "code": "request_too_large",
                "message": "The request body is larger than 2621440 bytes.",
            },
        ),
        (
            TooManyFieldsSent("The number of GET/POST parameters exceeded 1000."),
            400,
            {"code": "too_many_parameters", "message": "The request has too many parameters."},
        ),
    ],
)
def test_django_errors_map_to_code_message_and_status(
    error: Exception, status: int, body: dict[str, Any]
) -> None:
    # when: Django's own exceptions, which DRF leaves to Django (a 500, or an HTML 400)
    response = _raise(error)

    # then
    assert response.status_code == status
    assert json.loads(response.content) == body


def test_authentication_errors_answer_401_with_a_challenge() -> None:
    # when
    not_provided = _raise(drf.NotAuthenticated())
    failed = _raise(drf.AuthenticationFailed("Invalid or revoked token."))

    # then
    assert (not_provided.status_code, failed.status_code) == (401, 401)
    assert json.loads(not_provided.content) == {
        "code": "unauthenticated",
        "message": "Authentication credentials were not provided.",
    }
    assert json.loads(failed.content) == {
        "code": "unauthenticated",
        "message": "Invalid or revoked token.",
    }
    assert not_provided["WWW-Authenticate"] == 'Bearer realm="api"'
    assert failed["WWW-Authenticate"] == 'Bearer realm="api"'


def test_throttled_answers_429_with_retry_after() -> None:
    # when
    response = _raise(drf.Throttled(wait=29.5))

    # then
    assert response.status_code == 429
    assert json.loads(response.content) == {
        "code": "rate_limited",
        "message": "Request was throttled. Expected available in 30 seconds.",
    }
    assert response["Retry-After"] == "30"


def test_a_malformed_json_body_answers_malformed_body() -> None:
    # given
    request = factory.post("/", data=b'{"purpose": ', content_type="application/json")

    # when
    response = _Raising.as_view()(request)
    response.render()

    # then
    assert response.status_code == 400
    body = json.loads(response.content)
    assert sorted(body) == ["code", "message"]
    assert body["code"] == "malformed_body"
    assert body["message"].startswith("JSON parse error - ")


def test_an_unsupported_media_type_answers_415() -> None:
    # given
    request = factory.post("/", data="purpose=ads", content_type="text/plain")

    # when
    response = _Raising.as_view()(request)
    response.render()

    # then
    assert response.status_code == 415
    assert json.loads(response.content) == {
        "code": "unsupported_media_type",
        "message": 'Unsupported media type "text/plain" in request.',
    }


def test_a_method_not_allowed_answers_405() -> None:
    # given
    request = factory.delete("/")

    # when
    response = _GetOnly.as_view()(request)
    response.render()

    # then
    assert response.status_code == 405
    assert json.loads(response.content) == {
        "code": "method_not_allowed",
        "message": 'Method "DELETE" not allowed.',
    }


def test_an_unexpected_exception_is_not_turned_into_a_body() -> None:
    # given
    view = type("View", (_Raising,), {"error": RuntimeError("boom")}).as_view()  # type: ignore[attr-defined]

    # when / then: Django's 500 handling takes over, nothing of the message is rendered
    with pytest.raises(RuntimeError, match="boom"):
        view(factory.get("/"))


# --- the workspace endpoint: token authentication -----------------------------------------


def _snapshot() -> list[Any]:
    return [
        list(Workspace.objects.order_by("pk").values_list("pk", "slug", "name")),
        list(
            ApiToken.objects.order_by("pk").values_list(
                "pk", "workspace_id", "name", "token_hash", "permissions", "revoked_at"
            )
        ),
    ]


def _client(secret: str, keyword: str = "Bearer") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {secret}")
    return client


def test_workspace_without_token_is_401(workspace: Workspace) -> None:
    # when
    response = APIClient().get(WORKSPACE_URL)

    # then
    assert response.status_code == 401
    assert response.json() == {
        "code": "unauthenticated",
        "message": "Authentication credentials were not provided.",
    }
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer cdp_not-a-real-token", "Invalid or revoked token."),
        ("Token cdp_not-a-real-token", "Invalid or revoked token."),
        ("Bearer", "Malformed authorization header."),
        ("Bearer cdp_a cdp_b", "Malformed authorization header."),
    ],
)
def test_workspace_with_a_bad_token_is_401(workspace: Workspace, header: str, message: str) -> None:
    # given
    services.api_token_create(workspace=workspace, name="ci", permissions=["view_profiles"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    # when
    response = client.get(WORKSPACE_URL)

    # then
    assert response.status_code == 401
    assert response.json() == {"code": "unauthenticated", "message": message}


def test_workspace_with_a_revoked_token_is_401(workspace: Workspace) -> None:
    # given
    issued = services.api_token_create(
        workspace=workspace, name="ci", permissions=["view_profiles"]
    )
    services.api_token_revoke(token=issued.token)

    # when
    response = _client(issued.secret).get(WORKSPACE_URL)

    # then
    assert response.status_code == 401
    assert response.json() == {"code": "unauthenticated", "message": "Invalid or revoked token."}


def test_workspace_returns_the_tokens_workspace_and_sorted_permissions(
    workspace: Workspace,
) -> None:
    # given
    issued = services.api_token_create(
        workspace=workspace,
        name="crm sync",
        permissions=[WorkspaceRole.VIEW_PROFILES, WorkspaceRole.HANDLE_REQUESTS],
    )
    assert issued.token.last_used_at is None

    # when
    bearer = _client(issued.secret).get(WORKSPACE_URL)
    token = _client(issued.secret, keyword="Token").get(WORKSPACE_URL)

    # then
    expected = {
        "slug": "acme",
        "name": "Acme Store",
        "token_name": "crm sync",
        "permissions": ["handle_requests", "view_profiles"],
    }
    assert (bearer.status_code, bearer.json()) == (200, expected)
    assert (token.status_code, token.json()) == (200, expected)
    issued.token.refresh_from_db()
    assert issued.token.last_used_at is not None


def test_workspace_for_every_role(api_client: APIClient) -> None:
    # when
    response = api_client.get(WORKSPACE_URL)

    # then
    assert response.status_code == 200
    assert response.json()["permissions"] == sorted(WorkspaceRole.values)


def test_outsider_token_only_ever_sees_its_own_workspace(
    workspace: Workspace, api_client: APIClient, outsider_api_client: APIClient
) -> None:
    # given
    before = _snapshot()

    # when
    read = outsider_api_client.get(WORKSPACE_URL, {"slug": "acme", "workspace": "acme"})
    write = outsider_api_client.post(
        WORKSPACE_URL, {"slug": "acme", "name": "Taken over"}, format="json"
    )

    # then
    assert read.status_code == 200
    assert read.json()["slug"] == "globex"
    assert read.json()["name"] == "Globex"
    assert "acme" not in read.content.decode().lower()
    assert write.status_code == 405
    assert write.json() == {"code": "method_not_allowed", "message": 'Method "POST" not allowed.'}
    assert _snapshot() == before


# --- schema and docs ------------------------------------------------------------------------


def test_schema_answers_and_documents_the_token(db: Any) -> None:
    # when
    response = APIClient().get("/api/schema/", {"format": "json"})

    # then
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["info"]["title"] == "CDP API"
    operation = schema["paths"][WORKSPACE_URL]["get"]
    assert operation["operationId"] == "workspace_detail"
    assert operation["security"] == [{"apiToken": []}]
    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"


def test_docs_answer_without_any_cdn(db: Any) -> None:
    # when
    response = APIClient().get("/api/docs/")

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert "cdn.jsdelivr" not in html
    assert "unpkg" not in html
    assert "cdnjs" not in html
    assert (
        '<script src="/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js">'
        in html
    )
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert 'url: "/api/schema/"' in html
