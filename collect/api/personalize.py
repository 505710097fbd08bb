"""`GET /v1/personalize?anonymousId=...` (or `userId=`, where the workspace accepts it, with
`userHash=` where the source verifies identities): what a website may show its visitor, read
in the browser with the source's write key.

It answers the keys of the audiences the visitor is in and the traits the workspace chose to
expose (plain attributes and computed traits, never personal data), only when the workspace's
personalization purpose allows processing the visitor now; otherwise the same shape, empty,
with the reason (`unknown`, `restricted`, `no_consent`, `disabled`). A visitor of another
workspace is `unknown`: identities are looked up in the key's workspace only.

Authentication and CORS are collection's: the write key as HTTP Basic or `?writeKey=` (a plain
GET then needs no preflight), an enabled source, a browser request only from one of the
source's origins (the `/v1/` CORS middleware answers preflights and adds the headers), and the
source's rate limit, one unit per call. Answers are never cached: they follow consent."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from activation import selectors as activation_selectors
from cdp.core.api.errors import exception_handler
from cdp.core.api.headers import sec_gpc
from cdp.core.api.write_key import (
    SourceMayWrite,
    WriteKeyAuthentication,
    WriteKeyInvalid,
    WriteKeyMissing,
)
from cdp.core.exceptions import InvalidInput
from cdp.core.ratelimit import rate_limit_consume
from collect.api.views import JSONOnlyNegotiation
from consent.enums import JURISDICTION_RE
from profiles import selectors as profile_selectors
from profiles.enums import IdentifierType

MAX_IDENTIFIER_LENGTH = 256
NO_STORE = "private, no-store"
VARY = "Origin, Authorization, CDP-Jurisdiction, Sec-GPC"
REASONS = ("unknown", "restricted", "no_consent", "disabled")


@extend_schema_serializer(component_name="PersonalizeError")
class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class PersonalizeWriteKeyAuthentication(WriteKeyAuthentication):
    source_lookup = staticmethod(profile_selectors.source_get_by_write_key)
    query_param = "writeKey"

    def authenticate_header(self, request: object) -> str:
        return 'Basic realm="collect"'


class PersonalizeWriteKeyScheme(OpenApiAuthenticationExtension):
    target_class = "collect.api.personalize.PersonalizeWriteKeyAuthentication"
    name = "personalizeWriteKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "basic",
            "description": "The source's write key as the username, the password empty (or "
            "`?writeKey=`): the same key as collection.",
        }


def personalize_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The project's handler, plus the Basic challenge SDKs expect on a bad write key."""
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, WriteKeyMissing | WriteKeyInvalid):
        response["WWW-Authenticate"] = 'Basic realm="collect"'
    return response


def _jurisdiction(raw: str) -> str | None:
    """The upper-cased hint, "" for none or `default`, None when it is not a jurisdiction."""
    value = raw.strip()
    if not value or value.lower() == "default":
        return ""
    value = value.upper()
    return value if JURISDICTION_RE.match(value) else None


class PersonalizeApi(APIView):
    """The visitor's audiences and exposed traits, or an empty answer with the reason."""

    authentication_classes = [PersonalizeWriteKeyAuthentication]
    permission_classes = [SourceMayWrite]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    throttle_classes: list[Any] = []  # the source's limit, counted below

    class InputSerializer(serializers.Serializer):
        anonymousId = serializers.CharField(
            required=False, max_length=MAX_IDENTIFIER_LENGTH, trim_whitespace=False
        )
        userId = serializers.CharField(
            required=False,
            max_length=MAX_IDENTIFIER_LENGTH,
            trim_whitespace=False,
            help_text="Only where the workspace accepts userId lookups (400 otherwise).",
        )
        userHash = serializers.CharField(
            required=False,
            max_length=256,
            trim_whitespace=False,
            help_text="The hex HMAC-SHA256 of `userId` (UTF-8, exactly as sent) under the "
            "source's identity-verification secret, computed by the site's server. Required "
            "with a `userId` where the source verifies identities (else 401 "
            "`identity_verification_required`; a hash that does not match, 403 "
            "`identity_verification_failed`; a `userId` beginning or ending with whitespace, "
            "400 `invalid_user_id`); ignored otherwise.",
        )
        jurisdiction = serializers.CharField(
            required=False,
            max_length=7,
            help_text="The visitor's jurisdiction (DE, US-CA, EU); else the CDP-Jurisdiction "
            "header; it picks the purpose's default for a visitor who has not decided.",
        )

        def validate_jurisdiction(self, value: str) -> str:
            found = _jurisdiction(value)
            if found is None:
                raise serializers.ValidationError(
                    "A jurisdiction is a country code, optionally with a region: DE, US-CA."
                )
            return found

    @extend_schema_serializer(component_name="Personalization")
    class OutputSerializer(serializers.Serializer):
        audiences = serializers.ListField(
            child=serializers.CharField(), help_text="Keys of the active audiences."
        )
        traits = serializers.DictField(
            child=serializers.JSONField(),
            help_text="The attribute and computed traits the workspace exposes.",
        )
        reason = serializers.ChoiceField(
            choices=REASONS,
            allow_null=True,
            help_text="Why the answer is empty; null when it is not.",
        )

    def get_exception_handler(self) -> Any:
        return personalize_exception_handler

    @extend_schema(
        operation_id="personalize",
        parameters=[
            InputSerializer,
            OpenApiParameter(
                "writeKey",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=False,
                description="The source's write key, when not sent as HTTP Basic.",
            ),
            OpenApiParameter(
                "Sec-GPC",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="`1`: a purpose that is a sale or sharing answers no_consent.",
            ),
            OpenApiParameter(
                "CDP-Jurisdiction",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="The jurisdiction hint set at the edge, when ?jurisdiction= is absent.",
            ),
        ],
        responses={
            200: OutputSerializer,
            400: ErrorSerializer,
            401: ErrorSerializer,
            403: ErrorSerializer,
            429: ErrorSerializer,
        },
        tags=["collect"],
    )
    def get(self, request: Request) -> Response:
        source: Any = request.auth  # the profiles Source the write key named
        rate_limit_consume(source_id=source.pk, limit=source.rate_limit_per_minute, count=1)
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        identities = [
            (kind, data[name])
            for kind, name in (
                (IdentifierType.USER_ID, "userId"),
                (IdentifierType.ANONYMOUS_ID, "anonymousId"),
            )
            if data.get(name)
        ]
        if not identities:
            raise InvalidInput("Send an anonymousId or a userId.", code="missing_identity")
        # A userId is often guessable (an email, a sequential id) and the write key public:
        # where the source verifies identities, only the site's server can vouch for it.
        profile_selectors.source_user_hash_verify(
            source=source, user_id=data.get("userId"), user_hash=data.get("userHash")
        )
        jurisdiction = data.get("jurisdiction")
        if jurisdiction is None:
            # A bad edge header is the deployment's fault, not the visitor's: ignored.
            jurisdiction = _jurisdiction(request.headers.get("CDP-Jurisdiction", "")) or ""
        answer = activation_selectors.personalization_for_visitor(
            workspace=source.workspace,
            identities=identities,
            jurisdiction=jurisdiction,
            gpc=sec_gpc(request.headers),
        )
        body = {"audiences": answer.audiences, "traits": answer.traits, "reason": answer.reason}
        response = Response(self.OutputSerializer(body).data)
        response["Cache-Control"] = NO_STORE
        response["Vary"] = VARY
        return response
