"""The Segment-compatible collection API (`/v1/...`).

What every client needs, found by running the real SDKs (see the shared ecosystem reference):
success is exactly `200 {"success": true}` (rudder-sdk-python and the legacy analytics-python
retry anything else, resending the batch), and every error is `{"code", "message"}` (those
clients read both keys and retry on any other body). Never 201/202, never a redirect. That
holds for a message that fails identity verification too: it is stored claiming no identity
(`collect.validation`), not refused, when it names a browser or device (an anonymousId, an
alias's previousId, a device id); one that names none is refused with
`identity_verification_required`, as a message with no id is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.core.api.errors import error_body, exception_handler
from cdp.core.api.headers import sec_gpc
from collect import services, validation
from collect.api.authentication import SourceMayCollect, WriteKeyAuthentication
from collect.api.parsers import AnyJSONParser, SegmentJSONParser, TextPlainJSONParser
from collect.exceptions import (
    CollectError,
    InvalidPayload,
    InvalidWriteKey,
    MissingWriteKey,
    UnknownEndpoint,
)

_SUCCESS = {"success": True}

_ERROR_SCHEMA = inline_serializer(
    "CollectError",
    fields={"code": serializers.CharField(), "message": serializers.CharField()},
)
_SUCCESS_SCHEMA = inline_serializer(
    "CollectSuccess",
    fields={
        "success": serializers.BooleanField(),
        "rejected": inline_serializer(
            "CollectRejected",
            fields={
                "index": serializers.IntegerField(),
                "code": serializers.CharField(),
                "message": serializers.CharField(),
            },
            many=True,
            required=False,
        ),
    },
)
_ERRORS = {400: _ERROR_SCHEMA, 401: _ERROR_SCHEMA, 403: _ERROR_SCHEMA, 429: _ERROR_SCHEMA}


def collect_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The project's handler, plus the headers collection errors carry (Retry-After)."""
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, CollectError):
        for name, value in exc.headers.items():
            response[name] = value
        if isinstance(exc, MissingWriteKey | InvalidWriteKey):
            response["WWW-Authenticate"] = 'Basic realm="collect"'
    return response


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """Always answer JSON: an SDK sending `Accept: text/plain` must not get a 406."""

    def select_renderer(
        self, request: Any, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return (renderer, renderer.media_type)


class _CollectApi(APIView):
    # Write keys, not the management API's tokens; no session, so no CSRF.
    authentication_classes = [WriteKeyAuthentication]
    permission_classes = [SourceMayCollect]
    parser_classes = [SegmentJSONParser, TextPlainJSONParser, AnyJSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    throttle_classes: list[Any] = []  # the per-source limit is counted in messages (services)

    def get_exception_handler(self) -> Any:
        return collect_exception_handler

    def _body(self, request: Request) -> dict[str, Any]:
        data = request.data  # the parsers only return objects; an empty body reads as {}
        if not isinstance(data, dict):
            raise InvalidPayload("The request body must be a JSON object.")
        return dict(data)

    def _meta(self, request: Request, **extra: Any) -> services.RequestMeta:
        return services.RequestMeta(
            received_at=timezone.now(),
            ip=request.META.get("REMOTE_ADDR") or None,
            gpc=sec_gpc(request.headers),
            **extra,
        )


class CollectMessageApi(_CollectApi):
    """One message: `/v1/{identify,track,page,screen,group,alias}` and `/v1/{i,t,p,s,g,a}`.
    The path gives the type. An invalid message answers 400 `{"code", "message"}`."""

    message_type: str = ""

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: _SUCCESS_SCHEMA, **_ERRORS},
        tags=["collect"],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = self._body(request)
        meta = self._meta(
            request, sent_at=request.headers.get("SentAt"), message_type=self.message_type
        )
        result = services.collect_messages(source=request.auth, payloads=[body], request_meta=meta)
        if result.rejected:
            error = result.rejected[0]
            return Response(error_body(error.code, error.message), status=400)
        return Response(_SUCCESS, status=200)


class CollectBatchApi(_CollectApi):
    """A batch: `/v1/batch`, `/v1/b` (analytics-next) and `/v1/import` (Segment's alias).

    Body `{"batch": [...], "sentAt"?, "context"?, "integrations"?}`; batch-level context and
    integrations are merged under each message's own.

    Partial success answers **200** `{"success": true, "rejected": [{"index", "code",
    "message"}]}`: the valid messages are stored, and any other status would make
    rudder-sdk-python and analytics-python resend the whole batch (the valid messages again,
    the invalid ones to no avail) until their retries run out. The rejected list tells a client
    or an operator which items were dropped and why. Only a body that is not a batch at all, or a
    request that is refused as a whole (key, origin, size, rate), answers an error status.
    """

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: _SUCCESS_SCHEMA, **_ERRORS},
        tags=["collect"],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = self._body(request)
        batch = body.get("batch")
        if not isinstance(batch, list):
            raise InvalidPayload("batch must be a list of messages.")
        context = body.get("context")
        integrations = body.get("integrations")
        if context is not None and not isinstance(context, dict):
            raise InvalidPayload("context must be an object.")
        if integrations is not None and not isinstance(integrations, dict):
            raise InvalidPayload("integrations must be an object.")
        # Merged into every message: what could not be stored would fail them all.
        for name, shared in (("context", context), ("integrations", integrations)):
            problem = shared and validation.unstorable(shared, f"The batch's {name}")
            if problem:
                raise InvalidPayload(problem)
        meta = self._meta(
            request,
            sent_at=body.get("sentAt") or request.headers.get("SentAt"),
            context=context or {},
            integrations=integrations or {},
        )
        result = services.collect_messages(source=request.auth, payloads=batch, request_meta=meta)
        if result.rejected:
            rejected = [error.as_dict() for error in result.rejected]
            return Response({**_SUCCESS, "rejected": rejected}, status=200)
        return Response(_SUCCESS, status=200)


class CollectMetricsApi(APIView):
    """`/v1/m`: analytics-next's telemetry about the SDK itself (counters of its own
    deliveries and errors), nothing about a person. Answered 200 and discarded unread."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    throttle_classes: list[Any] = []

    @extend_schema(request=None, responses={200: _SUCCESS_SCHEMA}, tags=["collect"])
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(_SUCCESS, status=200)


class CollectUnknownApi(APIView):
    """Any other `/v1/` path: 404 as `{"code", "message"}` (an HTML page would make the legacy
    Python clients retry a misconfigured host forever)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    throttle_classes: list[Any] = []
    schema = None  # not an endpoint

    def get_exception_handler(self) -> Any:
        return collect_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        raise UnknownEndpoint()
