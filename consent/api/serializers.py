"""Fields and shapes shared by the consent API's views (each view nests its own Input and
Output serializers)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from cdp.core.exceptions import InvalidInput
from consent.enums import JURISDICTION_RE, Decision, DefaultMode, LegalBasis
from profiles.enums import IdentifierType

MAX_IDENTIFIER_LENGTH = 256
USER_HASH_HELP = (
    "The hex HMAC-SHA256 of `userId` (UTF-8, exactly as sent) under the source's "
    "identity-verification secret, computed by the site's server. Required with a `userId` "
    "where the source verifies identities (else 401 `identity_verification_required`; a hash "
    "that does not match, 403 `identity_verification_failed`; a `userId` beginning or ending "
    "with whitespace, 400 `invalid_user_id`); ignored otherwise."
)


class UserHashField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", USER_HASH_HELP)
        super().__init__(
            required=False,
            allow_null=True,
            allow_blank=True,
            max_length=256,
            trim_whitespace=False,
            **kwargs,
        )


@extend_schema_serializer(component_name="ConsentApiError")
class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": ["granted", "denied", "withdrawn"]},
            {"type": "boolean"},
        ]
    }
)
class DecisionField(serializers.Field):
    """A decision as banners send it: granted / denied / withdrawn, or true / false (granted /
    denied). Other words pass through, for the service to refuse as `unknown_decision`."""

    default_error_messages = {"invalid": "A decision is a string or true/false."}

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool):
            return Decision.GRANTED if data else Decision.DENIED
        if isinstance(data, str) and 0 < len(data) <= 32:
            return data.strip().lower()
        self.fail("invalid")

    def to_representation(self, value: Any) -> str:
        return str(value)


class JurisdictionField(serializers.CharField):
    """A jurisdiction hint: `DE`, `US-CA`, `EU` (upper-cased before it is checked), or
    `default` — what GET /v1/consent/config answers when it was given none — meaning unknown."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=7, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        raw = super().to_internal_value(data)
        if raw.strip().lower() == "default":
            return ""
        value = raw.upper()
        if value and not JURISDICTION_RE.match(value):
            raise serializers.ValidationError(
                "A jurisdiction is a country code, optionally with a region: DE, US-CA."
            )
        return value


class IdentityQuerySerializer(serializers.Serializer):
    """Whose consent: the userId, or the anonymousId a banner keeps in the browser."""

    anonymousId = serializers.CharField(
        required=False, max_length=MAX_IDENTIFIER_LENGTH, trim_whitespace=False
    )
    userId = serializers.CharField(
        required=False, max_length=MAX_IDENTIFIER_LENGTH, trim_whitespace=False
    )
    userHash = UserHashField()

    def identities(self) -> list[tuple[str, str]]:
        """(type, value), strongest first; `missing_identity` when neither was sent."""
        data = self.validated_data
        found: list[tuple[str, str]] = [
            (kind, data[name])
            for kind, name in (
                (IdentifierType.USER_ID, "userId"),
                (IdentifierType.ANONYMOUS_ID, "anonymousId"),
            )
            if data.get(name)
        ]
        if not found:
            raise InvalidInput("Send an anonymousId or a userId.", code="missing_identity")
        return found


@extend_schema_serializer(component_name="ConsentConfigPurpose")
class ConfigPurposeSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    legal_basis = serializers.ChoiceField(choices=LegalBasis.choices)
    default = serializers.ChoiceField(
        choices=DefaultMode.choices, help_text="The default for the jurisdiction asked about."
    )
    sale_or_share = serializers.BooleanField(help_text="A GPC signal opts out of it.")
    # a field named like Field.required: DRF's metaclass takes it off the class, mypy can't tell
    required = serializers.BooleanField(  # type: ignore[assignment]
        help_text="Rests on a basis other than consent or legitimate interests: not asked."
    )
    consent_validity_days = serializers.IntegerField(
        allow_null=True,
        min_value=1,
        help_text="Days a grant of this purpose holds before the server expires it (null: it "
        "does not expire). Ask again by then: a banner keeps a choice no longer than the "
        "shortest of these, and 395 days (13 months) at most.",
    )


@extend_schema_serializer(component_name="ConsentNoticeVersion")
class NoticeVersionSerializer(serializers.Serializer):
    """The exact notice text shown; send its `version` back as `noticeVersion`."""

    key = serializers.CharField(source="notice.key")
    version = serializers.IntegerField()
    language = serializers.CharField()
    text = serializers.CharField()
    text_hash = serializers.CharField()
    policy_url = serializers.CharField()


@extend_schema_serializer(component_name="ConsentReceipt")
class ReceiptSerializer(serializers.Serializer):
    """A signed receipt: verify `signature` (Ed25519, base64url) over the canonical JSON of
    `body` (keys sorted, no spaces, UTF-8) with the key `kid` from
    /.well-known/cdp-receipt-keys.json?workspace=<body.workspace> (or ?kid=<kid>, for a receipt
    whose body names no workspace: one signed before receipts named it). Each purpose in
    `body.services[].purposes` names the `collectionMethod` of its record (`banner`, `api`,
    `tcf`, `gpc`, ...); `body.collectionMethods` lists them all, and `body.collectionMethod` is
    the first record's (kept for earlier readers)."""

    id = serializers.UUIDField()
    body = serializers.JSONField()
    signature = serializers.CharField()
    kid = serializers.CharField()
    alg = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_alg(self, receipt: Any) -> str:
        return "EdDSA"
