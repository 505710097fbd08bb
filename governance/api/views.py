"""Data-subject request API.

Two kinds of caller share `/api/v1/requests/`, told apart by route and method, never by
guessing at a token:

- **Subjects** (public, no write key, limited per client IP): `POST /api/v1/requests/` opens a
  request and returns a status token once; `POST /api/v1/requests/{id}/verify`,
  `POST /api/v1/requests/{id}/cancel` and `GET /api/v1/requests/{id}` take that token as
  `Authorization: Bearer <token>`. These views use only `StatusTokenAuthentication`; an
  unknown id and a wrong token both answer 404.
- **Ticketing systems** (a workspace API token holding `handle_requests`):
  `GET /api/v1/requests/?state=...`, `POST /api/v1/requests/{id}/approve|deny|extend|fulfil`,
  `POST /api/v1/requests/{id}/lift-restriction` (GDPR Art. 18(3)) and
  `GET /api/v1/requests/{id}/certificate` (the signed erasure certificate).
  These use the management token authentication; a request of another workspace is 404.

`/api/v1/requests/` serves both: POST is the subject's submission, GET the steward's queue, so
that one view picks its authentication and permission by method.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, cast

from auditlog.context import set_actor
from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from cdp.core.api.contracts import WorkspaceCredential
from cdp.core.api.pagination import CursorPagination
from cdp.core.api.permissions import WorkspacePermission
from cdp.core.api.query import reject_unknown_parameters
from governance import selectors, services
from governance.api import serializers as s
from governance.api.authentication import StatusTokenAuthentication
from governance.limits import client_limit_consume
from governance.models import DataSubjectRequest
from profiles import selectors as profile_selectors
from profiles.enums import WorkspaceRole

CanHandleRequests = WorkspacePermission.of(WorkspaceRole.HANDLE_REQUESTS.value)
_REQUEST_ID = OpenApiParameter("request_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
_SUBJECT_ERRORS = {400: s.ErrorSerializer, 404: s.ErrorSerializer, 429: s.ErrorSerializer}
_MANAGE_ERRORS = {
    400: s.ErrorSerializer,
    401: s.ErrorSerializer,
    403: s.ErrorSerializer,
    404: s.ErrorSerializer,
    409: s.ErrorSerializer,
}


class QueuePagination(CursorPagination):
    ordering = ("due_at", "id")  # type: ignore[assignment]


def _subject_request(request: Request, request_id: str) -> DataSubjectRequest:
    token = request.auth if isinstance(request.auth, str) else None
    found = selectors.request_get_for_subject(request_id=request_id, token=token)
    if found is None:
        raise selectors.RequestNotFound()
    return found


def download_url(request_id: Any) -> str:
    # The download route wants `?token=`: the download token was emailed to the subject with
    # the full link and is never stored, so it cannot be repeated here.
    return f"/api/v1/requests/{request_id}/download"


def status_data(dsr: DataSubjectRequest) -> dict[str, Any]:
    certificate = selectors.certificate_of(dsr)
    export = selectors.request_export_ready(request=dsr)
    if dsr.state not in services.DOWNLOADABLE_STATES:
        export = None
    return {
        "id": dsr.pk,
        "type": dsr.type,
        "regime": dsr.regime,
        "state": dsr.state,
        "received_at": dsr.received_at,
        "acknowledge_by": dsr.acknowledge_by,
        "effective_due_at": dsr.effective_due_at,
        "due_at": dsr.due_at,
        "extension_reason": dsr.extension_reason,
        "denial_reason": dsr.denial_reason,
        "cancel_until": dsr.cancel_until,
        "cancellable": services.request_cancellable(request=dsr),
        "export": {
            "ready": export is not None,
            "expires_at": export.expires_at if export else None,
            "download_url": download_url(dsr.pk) if export else None,
        },
        "certificate": selectors.certificate_document(certificate) if certificate else None,
    }


class RequestCollectionApi(APIView):
    """POST: a subject opens a request (public). GET: the workspace's queue (API token)."""

    pagination_class = QueuePagination

    def get_authenticators(self) -> list[Any]:
        if self.request is not None and self.request.method == "POST":
            return []
        # The management API's own (settings) authentication: the workspace API token.
        return [cast(Any, auth)() for auth in api_settings.DEFAULT_AUTHENTICATION_CLASSES]

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [AllowAny()]
        return [CanHandleRequests()]

    @extend_schema(
        operation_id="request_submit",
        summary="Open a data-subject request",
        description=(
            "Public, limited per client IP. Sends a 6-digit verification code to the email "
            "address (phone contacts are verified by a steward). The status token is returned "
            "once."
        ),
        request=s.SubmitInputSerializer,
        responses={201: s.SubmitOutputSerializer, **_SUBJECT_ERRORS},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        client_limit_consume(http_request=request._request, scope="submit")
        data = s.SubmitInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        contact_type = "email" if values.get("email") else "phone"
        submitted = services.request_submit(
            workspace=profile_selectors.workspace_get(slug=values["workspace"]),
            request_type=values["type"],
            regime=values["regime"],
            contact_type=contact_type,
            contact=values[contact_type],
            details=values.get("details"),
        )
        dsr = submitted.request
        body = {
            "id": dsr.pk,
            "state": dsr.state,
            "due_at": dsr.due_at,
            "token": submitted.status_token,
        }
        return Response(s.SubmitOutputSerializer(body).data, status=201)

    @extend_schema(
        operation_id="request_list",
        summary="The workspace's requests, soonest deadline first",
        parameters=[s.ListQuerySerializer],
        responses={200: s.ManagedRequestSerializer(many=True), **_MANAGE_ERRORS},
    )
    def get(self, request: Request) -> Response:
        reject_unknown_parameters(request, s.ListQuerySerializer().fields)
        query = s.ListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        qs = selectors.request_list(
            workspace=_workspace(request), state=query.validated_data.get("state")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.ManagedRequestSerializer(page, many=True).data)


class RequestStatusApi(APIView):
    authentication_classes = [StatusTokenAuthentication]
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="request_status",
        summary="A subject follows their request",
        parameters=[_REQUEST_ID],
        responses={200: s.StatusOutputSerializer, **_SUBJECT_ERRORS},
    )
    def get(self, request: Request, request_id: str) -> Response:
        client_limit_consume(http_request=request._request, scope="status")
        dsr = _subject_request(request, request_id)
        return Response(s.StatusOutputSerializer(status_data(dsr)).data)


class RequestVerifyApi(APIView):
    authentication_classes = [StatusTokenAuthentication]
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="request_verify",
        summary="A subject confirms the request with the code sent to them",
        parameters=[_REQUEST_ID],
        request=s.VerifyInputSerializer,
        responses={200: s.VerifyOutputSerializer, 409: s.ErrorSerializer, **_SUBJECT_ERRORS},
    )
    def post(self, request: Request, request_id: str) -> Response:
        client_limit_consume(http_request=request._request, scope="verify")
        dsr = _subject_request(request, request_id)
        data = s.VerifyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.request_verify(request=dsr, code=data.validated_data["code"].strip())
        return Response(s.VerifyOutputSerializer({"state": dsr.state}).data)


class RequestCancelApi(APIView):
    authentication_classes = [StatusTokenAuthentication]
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="request_cancel",
        summary="A subject cancels their request",
        description=(
            "Possible before work on the request starts, and for an erasure until its "
            "cancellation window closes (409 `cannot_cancel` after). The request ends revoked."
        ),
        parameters=[_REQUEST_ID],
        request=None,
        responses={200: s.CancelOutputSerializer, 409: s.ErrorSerializer, **_SUBJECT_ERRORS},
    )
    def post(self, request: Request, request_id: str) -> Response:
        client_limit_consume(http_request=request._request, scope="verify")
        dsr = _subject_request(request, request_id)
        services.request_cancel(request=dsr)
        return Response(s.CancelOutputSerializer({"state": dsr.state}).data)


def _workspace(request: Request) -> Any:
    # The permission classes admitted only workspace credentials (cdp.core.api.contracts).
    return cast(WorkspaceCredential, request.auth).workspace


def _actor(request: Request) -> Any:
    user = request.user
    return user if isinstance(user, get_user_model()) and user.is_authenticated else None


class _ManageApi(APIView, abc.ABC):
    permission_classes = [CanHandleRequests]
    input_serializer: type[Any] = s.NoteInputSerializer

    @abc.abstractmethod
    def act(self, dsr: DataSubjectRequest, actor: Any, data: dict[str, Any]) -> Any:
        """Call the one service this endpoint stands for."""

    def post(self, request: Request, request_id: str) -> Response:
        dsr = selectors.request_get(workspace=_workspace(request), request_id=request_id)
        data = self.input_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        actor = _actor(request)
        with set_actor(actor):
            outcome = self.act(dsr, actor, data.validated_data)
        return self.respond(dsr, outcome)

    def respond(self, dsr: DataSubjectRequest, outcome: Any) -> Response:
        """The answer: the request as it is now, unless the endpoint says more."""
        return Response(s.ManagedRequestSerializer(dsr).data)


def _manage_schema(operation: str, summary: str, body: type[Any]) -> Callable[[Any], Any]:
    return extend_schema(
        operation_id=f"request_{operation}",
        summary=summary,
        parameters=[_REQUEST_ID],
        request=body,
        responses={200: s.ManagedRequestSerializer, **_MANAGE_ERRORS},
    )


class RequestApproveApi(_ManageApi):
    @_manage_schema("approve", "Accept a verified request for work", s.NoteInputSerializer)
    def post(self, request: Request, request_id: str) -> Response:
        return super().post(request, request_id)

    def act(self, dsr: DataSubjectRequest, actor: Any, data: dict[str, Any]) -> Any:
        return services.request_approve(request=dsr, actor=actor, note=data["note"])


class RequestDenyApi(_ManageApi):
    input_serializer = s.ReasonInputSerializer

    @_manage_schema("deny", "Refuse a request, with a reason", s.ReasonInputSerializer)
    def post(self, request: Request, request_id: str) -> Response:
        return super().post(request, request_id)

    def act(self, dsr: DataSubjectRequest, actor: Any, data: dict[str, Any]) -> Any:
        return services.request_deny(request=dsr, actor=actor, reason=data["reason"])


class RequestExtendApi(_ManageApi):
    input_serializer = s.ExtendInputSerializer

    @_manage_schema(
        "extend", "Extend the deadline, where the regime allows", s.ExtendInputSerializer
    )
    def post(self, request: Request, request_id: str) -> Response:
        return super().post(request, request_id)

    def act(self, dsr: DataSubjectRequest, actor: Any, data: dict[str, Any]) -> Any:
        return services.request_extend(
            request=dsr, actor=actor, reason=data["reason"], until=data.get("until")
        )


class RequestFulfilApi(_ManageApi):
    @_manage_schema(
        "fulfil",
        "Carry out an approved request and close it (with workers, an export or erasure is "
        "queued: see fulfil_after)",
        s.NoteInputSerializer,
    )
    def post(self, request: Request, request_id: str) -> Response:
        return super().post(request, request_id)

    def act(self, dsr: DataSubjectRequest, actor: Any, data: dict[str, Any]) -> Any:
        return services.request_fulfil(request=dsr, actor=actor, note=data["note"])


class RequestRestrictionLiftApi(_ManageApi):
    input_serializer = s.RestrictionLiftInputSerializer

    @extend_schema(
        operation_id="request_restriction_lift",
        summary="Lift the restriction of processing a restriction request put on its profile",
        description=(
            "GDPR Art. 18: with a reason (400 `reason_required`), kept in the audit trail and "
            "told to the subject, who is informed before the restriction is lifted (Art. "
            "18(3)): by email, or, for a phone contact, by the steward, who confirms it with "
            "`subject_informed` (400 `subject_not_informed` otherwise). 400 "
            "`not_a_restriction` for another type of request, 409 `request_not_fulfilled` "
            "when the request is not fulfilled (denied, cancelled or still open), 409 "
            "`restriction_already_lifted` when the restriction it put in place was lifted "
            "already, 409 `no_profile` when no profile matched it, 409 `not_restricted` when "
            "the profile is not restricted, 409 `profile_merged` when it was merged into "
            "another meanwhile, 409 `restriction_pending` while another restriction request "
            "of the person is open (`requests` names them). The person becomes a member of "
            "their audiences again, and the next sync sends them."
        ),
        parameters=[_REQUEST_ID],
        request=s.RestrictionLiftInputSerializer,
        responses={200: s.RestrictionLiftOutputSerializer, **_MANAGE_ERRORS},
    )
    def post(self, request: Request, request_id: str) -> Response:
        return super().post(request, request_id)

    def act(self, dsr: DataSubjectRequest, actor: Any, data: dict[str, Any]) -> Any:
        return services.request_restriction_lift(
            request=dsr,
            actor=actor,
            reason=data["reason"],
            subject_informed=data["subject_informed"],
            via="api",
        )

    def respond(self, dsr: DataSubjectRequest, outcome: Any) -> Response:
        body = {
            "profile_id": outcome.profile.pk,
            "restricted": outcome.profile.restricted,
            "requests": [r.pk for r in outcome.requests],
            "informed_by_email": outcome.emailed,
            "informed_by_steward": len(outcome.requests) - outcome.emailed,
        }
        return Response(s.RestrictionLiftOutputSerializer(body).data)


class RequestCertificateApi(APIView):
    permission_classes = [CanHandleRequests]

    @extend_schema(
        operation_id="request_certificate",
        summary="The signed erasure certificate of a carried-out erasure",
        description=(
            "What the erasure did, store by store and destination by destination, signed with "
            "the workspace's receipt key. 404 `certificate_not_found` while the request has "
            "none (not an erasure, or not carried out yet)."
        ),
        parameters=[_REQUEST_ID],
        responses={200: s.CertificateSerializer, **_MANAGE_ERRORS},
    )
    def get(self, request: Request, request_id: str) -> Response:
        dsr = selectors.request_get(workspace=_workspace(request), request_id=request_id)
        certificate = selectors.certificate_get(request=dsr)
        document = selectors.certificate_document(certificate)
        document["signature_valid"] = selectors.certificate_check(certificate).valid
        return Response(s.CertificateSerializer(document).data)
