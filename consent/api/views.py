"""The consent API for banners, preference centres and servers (`/v1/consent...`), and the
public `/.well-known/` resources (receipt keys, GPC support).

Authentication is the collection API's: a source's write key (HTTP Basic, `writeKey` in the
body, or `?writeKey=` on GETs); the source must be enabled and a browser request must come
from one of its origins. The `/v1/` CORS middleware answers preflights and adds the headers.
Every error is `{"code", "message"}`. Reads are scoped to the key's workspace, and a person's
consent or receipts are shown only to a caller who names one of their identities.

The write key is public and a userId often guessable, so a source may verify identities: then
every request naming a userId carries `userHash`, the HMAC-SHA256 of it under a secret only the
site's server holds, or is refused (401 `identity_verification_required`, 403
`identity_verification_failed`; 400 `invalid_user_id` for a userId with surrounding whitespace,
which the hash would cover but the profile lookup would not) before anything is read or
recorded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.core.api.errors import exception_handler
from cdp.core.api.headers import sec_gpc
from cdp.core.api.write_key import SourceMayWrite, WriteKeyInvalid, WriteKeyMissing
from cdp.core.exceptions import InvalidInput
from consent import selectors, services
from consent.api.authentication import ConsentWriteKeyAuthentication
from consent.api.parsers import ConsentAnyParser, ConsentJSONParser, ConsentTextPlainParser
from consent.api.serializers import (
    ConfigPurposeSerializer,
    DecisionField,
    ErrorSerializer,
    IdentityQuerySerializer,
    JurisdictionField,
    NoticeVersionSerializer,
    ReceiptSerializer,
    UserHashField,
)
from consent.enums import CLIENT_METHODS, Method
from consent.exceptions import ReceiptKeyNotFound, ReceiptNotFound
from profiles import selectors as profile_selectors
from profiles.enums import IdentifierType

CONFIG_MAX_AGE_SECONDS = 60
KEYS_MAX_AGE_SECONDS = 300
GPC_MAX_AGE_SECONDS = 86400
# The day this server started to honour Global Privacy Control (W3C GPC, /.well-known/gpc.json).
GPC_SUPPORT_SINCE = "2026-11-28"
DEFAULT_JURISDICTION = "default"
# A receipt key's id: the workspace slug and a hash of the key (services.signing_key_current).
KID_RE = r"\A[A-Za-z0-9_-]+\Z"
# The config answer depends on the key (workspace), the jurisdiction header and the GPC header.
CONFIG_VARY = ("Origin", "Authorization", "CDP-Jurisdiction", "Sec-GPC")
NO_STORE = "private, no-store"

_ERRORS = {
    400: ErrorSerializer,
    401: ErrorSerializer,
    403: ErrorSerializer,
}
# The routes that take a userId: identity verification adds its refusals.
_ERRORS_NAMING_A_USER = {
    400: OpenApiResponse(
        ErrorSerializer,
        description="Invalid input; or `invalid_user_id`: the source verifies identities and "
        "the `userId` begins or ends with whitespace.",
    ),
    401: OpenApiResponse(
        ErrorSerializer,
        description="`missing_write_key` / `invalid_write_key`; or "
        "`identity_verification_required`: the source verifies identities and a `userId` came "
        "without its `userHash`.",
    ),
    403: OpenApiResponse(
        ErrorSerializer,
        description="`source_disabled` / `origin_not_allowed`; or "
        "`identity_verification_failed`: the `userHash` is not the `userId`'s HMAC under this "
        "source's secret.",
    ),
}
_WRITE_KEY_QUERY = OpenApiParameter(
    "writeKey",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    required=False,
    description="The source's write key, when not sent as HTTP Basic.",
)
_SEC_GPC = OpenApiParameter(
    "Sec-GPC",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="`1` when the browser sends a Global Privacy Control signal.",
)


def consent_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The project's handler, plus the Basic challenge SDKs expect on a bad write key."""
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, WriteKeyMissing | WriteKeyInvalid):
        response["WWW-Authenticate"] = 'Basic realm="consent"'
    return response


def _verify_identity(request: Request, user_id: str | None, user_hash: str | None) -> None:
    """A request that names a userId to a source that verifies identities proves it may, by
    the userHash the site's server computed; checked before anything is read or recorded."""
    profile_selectors.source_user_hash_verify(
        source=_source(request), user_id=user_id, user_hash=user_hash
    )


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """Always answer JSON: a banner sending `Accept: text/plain` must not get a 406."""

    def select_renderer(
        self, request: Any, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return (renderer, renderer.media_type)


def _source(request: Request) -> Any:
    """The profiles Source the write key named (the permission admitted no request without)."""
    return request.auth


def _gpc_header(request: Request) -> bool:
    return sec_gpc(request.headers)


class _ConsentApi(APIView):
    authentication_classes = [ConsentWriteKeyAuthentication]
    permission_classes = [SourceMayWrite]
    parser_classes = [ConsentJSONParser, ConsentTextPlainParser, ConsentAnyParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    throttle_classes: list[Any] = []

    def get_exception_handler(self) -> Any:
        return consent_exception_handler


class ConsentConfigApi(_ConsentApi):
    """What a banner shows: the purposes with their default for the visitor's jurisdiction
    and the days a grant of each holds, whether the browser sent GPC, and the current notice.
    Public and cacheable (60 s, ETag)."""

    class InputSerializer(serializers.Serializer):
        jurisdiction = JurisdictionField(required=False)

    @extend_schema_serializer(component_name="ConsentConfig")
    class OutputSerializer(serializers.Serializer):
        workspace = serializers.CharField()
        jurisdiction = serializers.CharField()
        gpc = serializers.BooleanField()
        purposes = ConfigPurposeSerializer(many=True)
        notice = NoticeVersionSerializer(allow_null=True)

    @extend_schema(
        operation_id="consent_config",
        parameters=[
            InputSerializer,
            _WRITE_KEY_QUERY,
            _SEC_GPC,
            OpenApiParameter(
                "CDP-Jurisdiction",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="The jurisdiction hint when ?jurisdiction= is absent (set it at "
                "the edge from the visitor's location).",
            ),
        ],
        responses={
            200: OutputSerializer,
            304: OpenApiResponse(description="Not modified (If-None-Match)."),
            **_ERRORS,
        },
        tags=["consent"],
    )
    def get(self, request: Request) -> Response:
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        jurisdiction = (
            query.validated_data.get("jurisdiction")
            or _header_jurisdiction(request)
            or DEFAULT_JURISDICTION
        )
        config = services.consent_config_get(
            workspace=_source(request).workspace, jurisdiction=jurisdiction
        )
        purposes = [
            {
                "key": p.key,
                "name": p.name,
                "description": p.description,
                "legal_basis": p.legal_basis,
                "default": config.defaults[p.key],
                "sale_or_share": p.sale_or_share,
                "required": config.required[p.key],
                "consent_validity_days": config.validity_days[p.key],
            }
            for p in config.purposes
        ]
        data = self.OutputSerializer(
            {
                "workspace": config.workspace_name,
                "jurisdiction": config.jurisdiction,
                "gpc": _gpc_header(request),
                "purposes": purposes,
                "notice": config.notice,
            }
        ).data
        body = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        matches = {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}
        response = Response(status=304) if etag in matches or "*" in matches else Response(data)
        response["ETag"] = etag
        response["Cache-Control"] = f"public, max-age={CONFIG_MAX_AGE_SECONDS}"
        response["Vary"] = ", ".join(CONFIG_VARY)
        return response


class ConsentApi(_ConsentApi):
    """`POST /v1/consent` records a consent change and answers the receipt it issued;
    `GET /v1/consent?anonymousId=[&userId=]` answers the current consent of the browser's
    anonymousId (never of a userId alone: the write key is public).

    One route, two operations: each method has its own input and output serializers."""

    @extend_schema_serializer(component_name="ConsentSubmit")
    class InputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="ConsentContext")
        class ContextSerializer(serializers.Serializer):
            """The parts of a Segment-style context kept as evidence (others are ignored)."""

            @extend_schema_serializer(component_name="ConsentContextPage")
            class PageSerializer(serializers.Serializer):
                url = serializers.CharField(required=False, allow_blank=True, max_length=2048)

            page = PageSerializer(required=False, allow_null=True)
            userAgent = serializers.CharField(
                required=False, allow_blank=True, allow_null=True, max_length=1024
            )

        writeKey = serializers.CharField(required=False, max_length=256)
        anonymousId = serializers.CharField(
            required=False, allow_null=True, max_length=256, trim_whitespace=False
        )
        userId = serializers.CharField(
            required=False, allow_null=True, max_length=256, trim_whitespace=False
        )
        userHash = UserHashField()
        decisions = serializers.DictField(child=DecisionField(), required=False)
        noticeVersion = serializers.IntegerField(required=False, allow_null=True, min_value=1)
        jurisdiction = JurisdictionField(required=False, allow_blank=True, allow_null=True)
        tcString = serializers.CharField(
            required=False, allow_blank=True, allow_null=True, max_length=8192
        )
        gpc = serializers.BooleanField(required=False, allow_null=True)
        timestamp = serializers.DateTimeField(required=False, allow_null=True)
        # named like Field.context: DRF's metaclass takes it off the class, mypy can't tell
        context = ContextSerializer(required=False, allow_null=True)  # type: ignore[assignment]
        method = serializers.ChoiceField(
            choices=list(CLIENT_METHODS),
            required=False,
            default=Method.API,
            help_text="How the person made the choice: `banner` (a consent banner or consent "
            "manager on the site or app) or `api` (any other report of the person's own "
            "choice; the default). The other methods of the ledger (`preference_centre`, "
            "`tcf`, `gpc`, `import`, `steward`, `request`, `expiry`) are recorded by the "
            "server only and refused here (400 `invalid`): a TC string or GPC signal is sent "
            "as `tcString` or `gpc`.",
            error_messages={"invalid_choice": services.METHOD_NOT_FOR_CLIENTS},
        )

    @extend_schema_serializer(component_name="ConsentSubmitted")
    class OutputSerializer(serializers.Serializer):
        success = serializers.BooleanField()
        receipt = serializers.UUIDField(
            allow_null=True, help_text="The receipt of this change (GET it under receipts/)."
        )
        receipts = serializers.ListField(
            child=serializers.UUIDField(),
            help_text="Every receipt issued: this change's, then a GPC opt-out's.",
        )
        state = serializers.DictField(child=serializers.CharField())
        needsReconsent = serializers.ListField(child=serializers.CharField())

    @extend_schema_serializer(component_name="ConsentState")
    class StateOutputSerializer(serializers.Serializer):
        state = serializers.DictField(child=serializers.CharField())
        needsReconsent = serializers.ListField(child=serializers.CharField())

    @extend_schema(
        operation_id="consent_state",
        parameters=[IdentityQuerySerializer, _WRITE_KEY_QUERY],
        responses={200: StateOutputSerializer, **_ERRORS_NAMING_A_USER},
        tags=["consent"],
    )
    def get(self, request: Request) -> Response:
        query = IdentityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        _verify_identity(
            request, query.validated_data.get("userId"), query.validated_data.get("userHash")
        )
        # The write key is public and a userId can be guessed (a customer number, an email):
        # read by it, anyone could learn anyone's choices. The answer is the consent of the
        # profile of the anonymousId this browser keeps; a userId linked to that profile gives
        # the same answer, and one that is not is not looked up.
        anonymous = [(k, v) for k, v in query.identities() if k == IdentifierType.ANONYMOUS_ID]
        if not anonymous:
            raise InvalidInput(
                "Send the anonymousId this browser keeps: consent is not read by userId alone "
                "with a public write key.",
                code="anonymous_id_required",
            )
        found = selectors.consent_state_for_identity(
            workspace=_source(request).workspace, identities=anonymous
        )
        data = {"state": found.state, "needsReconsent": found.needs_reconsent}
        response = Response(self.StateOutputSerializer(data).data)
        response["Cache-Control"] = NO_STORE
        return response

    @extend_schema(
        operation_id="consent_submit",
        request=InputSerializer,
        parameters=[_SEC_GPC],
        responses={200: OutputSerializer, **_ERRORS_NAMING_A_USER},
        tags=["consent"],
    )
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        _verify_identity(request, data.get("userId"), data.get("userHash"))
        context = data.get("context") or {}
        page = context.get("page") or {}
        gpc = True if _gpc_header(request) else data.get("gpc")
        submitted = services.consent_submit(
            source=_source(request),
            submission=services.ConsentSubmission(
                decisions=data.get("decisions") or {},
                user_id=data.get("userId"),
                anonymous_id=data.get("anonymousId"),
                method=data["method"],
                notice_version=data.get("noticeVersion"),
                jurisdiction=data.get("jurisdiction") or _header_jurisdiction(request) or "",
                tc_string=data.get("tcString") or None,
                gpc=gpc,
                client_time=data.get("timestamp"),
                ip=request.META.get("REMOTE_ADDR") or None,
                user_agent=context.get("userAgent") or request.headers.get("User-Agent"),
                page_url=page.get("url") or None,
            ),
        )
        out = {
            "success": True,
            "receipt": submitted.receipt.pk if submitted.receipt else None,
            "receipts": [r.pk for r in submitted.receipts],
            "state": submitted.state,
            "needsReconsent": submitted.needs_reconsent,
        }
        response = Response(self.OutputSerializer(out).data, status=200)
        response["Cache-Control"] = NO_STORE
        return response


def _header_jurisdiction(request: Request) -> str:
    """The edge's jurisdiction hint, when it is a valid one. A bad header is the deployment's
    fault, not the visitor's: it is ignored rather than breaking every banner."""
    raw = request.headers.get("CDP-Jurisdiction", "")
    field = JurisdictionField(required=False, allow_blank=True)
    try:
        return str(field.run_validation(raw))
    except serializers.ValidationError:
        return ""


class ConsentReceiptApi(_ConsentApi):
    """One receipt, for a caller who names its subject (`anonymousId` or `userId`). Any miss,
    a receipt of another subject or workspace or none at all, is the same 404."""

    @extend_schema(
        operation_id="consent_receipt",
        parameters=[IdentityQuerySerializer, _WRITE_KEY_QUERY],
        responses={200: ReceiptSerializer, 404: ErrorSerializer, **_ERRORS_NAMING_A_USER},
        tags=["consent"],
    )
    def get(self, request: Request, receipt_id: str) -> Response:
        query = IdentityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        _verify_identity(
            request, query.validated_data.get("userId"), query.validated_data.get("userHash")
        )
        receipt = selectors.receipt_get_for_subject(
            workspace=_source(request).workspace,
            receipt_id=receipt_id,
            identities=query.identities(),
        )
        if receipt is None:
            raise ReceiptNotFound()
        response = Response(ReceiptSerializer(receipt).data)
        response["Cache-Control"] = NO_STORE
        return response


class _PublicResourceApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    throttle_classes: list[Any] = []

    def public(self, data: Any, *, max_age: int) -> Response:
        response = Response(data)
        response["Cache-Control"] = f"public, max-age={max_age}"
        return response

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Public by design; a verifier in a browser may fetch them from any site, and read
        # why a request was refused.
        response["Access-Control-Allow-Origin"] = "*"
        return response


class ReceiptKeysApi(_PublicResourceApi):
    """Receipt-signing public keys (JWK-like), retired ones included, so a receipt or
    certificate stays verifiable offline after a key rotation: one workspace's
    (`?workspace=<slug>`, as the receipt's or certificate's body names it), or the one key a
    receipt names (`?kid=<kid>`, for receipts signed before their body named the workspace).
    A list of every workspace's keys would let anyone enumerate the tenants, so one of the two
    is required, not both. A slug that names no workspace answers like one without keys, an
    empty list; a kid that names no key answers 404: a kid cannot be guessed (a hash of the
    key), so the answer tells nothing about the workspaces it did not name."""

    class InputSerializer(serializers.Serializer):
        workspace = serializers.SlugField(
            max_length=64,
            required=False,
            help_text="The workspace whose keys to list: the `workspace` of the receipt's or "
            "certificate's body. Not with `kid`.",
        )
        kid = serializers.RegexField(
            KID_RE,
            max_length=64,
            required=False,
            help_text="The one key to answer: the receipt's `kid`, for a receipt whose body "
            "names no workspace. Not with `workspace`.",
        )

    @extend_schema_serializer(component_name="ReceiptPublicKey")
    class KeySerializer(serializers.Serializer):
        kid = serializers.CharField()
        kty = serializers.CharField()
        crv = serializers.CharField()
        x = serializers.CharField()
        workspace = serializers.CharField()
        created = serializers.DateTimeField()
        retired = serializers.DateTimeField(allow_null=True)
        sha256 = serializers.CharField()

    @extend_schema(
        operation_id="receipt_keys",
        parameters=[InputSerializer],
        responses={
            200: inline_serializer("ReceiptKeys", {"keys": KeySerializer(many=True)}),
            400: OpenApiResponse(
                ErrorSerializer,
                description="`workspace_required` (neither parameter, or a malformed "
                "workspace), `invalid_kid` (a malformed kid), `workspace_or_kid` (both).",
            ),
            404: OpenApiResponse(
                ErrorSerializer, description="`key_not_found`: no key has that kid."
            ),
        },
        tags=["consent"],
    )
    def get(self, request: Request) -> Response:
        named = {name for name in ("workspace", "kid") if name in request.query_params}
        if named == {"workspace", "kid"}:
            raise InvalidInput(
                "Name the workspace (?workspace=<slug>) or the key (?kid=<kid>), not both.",
                code="workspace_or_kid",
            )
        query = self.InputSerializer(data=request.query_params)
        # a parameter sent empty is valid but missing from validated_data: malformed too
        valid = query.is_valid() and named <= set(query.validated_data)
        if "kid" in named:
            if not valid:
                raise InvalidInput(
                    "A key id is the receipt's kid: up to 64 letters, digits, '-' and '_'.",
                    code="invalid_kid",
                )
            keys = selectors.receipt_public_keys(kid=query.validated_data["kid"])
            if not keys:
                raise ReceiptKeyNotFound()
        else:
            if not valid or not named:
                raise InvalidInput(
                    "Name the workspace whose keys to list, ?workspace=<slug> as the receipt's "
                    "or certificate's body names it, or the key, ?kid=<kid> as the receipt "
                    "names it.",
                    code="workspace_required",
                )
            keys = selectors.receipt_public_keys(workspace_slug=query.validated_data["workspace"])
        return self.public({"keys": keys}, max_age=KEYS_MAX_AGE_SECONDS)


class GpcSupportApi(_PublicResourceApi):
    """The W3C GPC support resource: this server honours Sec-GPC as an opt-out of sale and
    sharing."""

    @extend_schema(
        operation_id="gpc_support",
        responses={
            200: inline_serializer(
                "GpcSupport",
                {"gpc": serializers.BooleanField(), "lastUpdate": serializers.DateField()},
            )
        },
        tags=["consent"],
    )
    def get(self, request: Request) -> Response:
        return self.public(
            {"gpc": True, "lastUpdate": GPC_SUPPORT_SINCE}, max_age=GPC_MAX_AGE_SECONDS
        )
