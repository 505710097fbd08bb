"""Serializers of the data-subject request API: what subjects send and see, and what the
management API shows ticketing systems. Contact details never appear in any output."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from governance import selectors
from governance.enums import Regime, RequestState, RequestType


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class CertificateDocumentSerializer(serializers.Serializer):
    """A signed erasure certificate: verify `signature` (Ed25519, base64url) over the canonical
    JSON of `body` with the key `kid` from
    /.well-known/cdp-receipt-keys.json?workspace=<body.workspace>, or run
    `manage.py verify_certificate`."""

    id = serializers.UUIDField()
    alg = serializers.CharField()
    kid = serializers.CharField()
    signature = serializers.CharField()
    body = serializers.DictField()


class CertificateSerializer(CertificateDocumentSerializer):
    signature_valid = serializers.BooleanField(
        help_text="Whether the stored certificate still verifies against the workspace's "
        "published keys (false: its row was changed after signing)."
    )


class SubmitInputSerializer(serializers.Serializer):
    workspace = serializers.SlugField(max_length=64, help_text="The organisation's workspace slug.")
    type = serializers.ChoiceField(choices=RequestType.choices)
    regime = serializers.ChoiceField(choices=Regime.choices)
    email = serializers.CharField(max_length=254, required=False)
    phone = serializers.CharField(max_length=32, required=False)
    details = serializers.DictField(
        required=False,
        help_text='Request details, e.g. {"purposes": ["advertising"]} for an objection.',
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("email")) == bool(attrs.get("phone")):
            raise serializers.ValidationError("Give either an email address or a phone number.")
        return attrs


class SubmitOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    state = serializers.ChoiceField(choices=RequestState.choices)
    due_at = serializers.DateTimeField()
    token = serializers.CharField(
        help_text="The status token, shown once: send it as `Authorization: Bearer <token>`."
    )


class VerifyInputSerializer(serializers.Serializer):
    code = serializers.RegexField(r"^\s*\d{6}\s*$", help_text="The 6-digit code sent to you.")


class VerifyOutputSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=RequestState.choices)


class CancelOutputSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=RequestState.choices)


class ExportSerializer(serializers.Serializer):
    ready = serializers.BooleanField()
    expires_at = serializers.DateTimeField(allow_null=True)
    download_url = serializers.CharField(
        allow_null=True,
        help_text="Add `?token=` with the download token from the email that announced the export.",
    )


class StatusOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=RequestType.choices)
    regime = serializers.ChoiceField(choices=Regime.choices)
    state = serializers.ChoiceField(choices=RequestState.choices)
    received_at = serializers.DateTimeField()
    acknowledge_by = serializers.DateTimeField(allow_null=True)
    due_at = serializers.DateTimeField(source="effective_due_at")
    original_due_at = serializers.DateTimeField(source="due_at")
    extension_reason = serializers.CharField()
    denial_reason = serializers.CharField()
    cancel_until = serializers.DateTimeField(
        allow_null=True,
        help_text="Erasure: until when the subject may cancel; nothing is erased before.",
    )
    cancellable = serializers.BooleanField(help_text="Whether POST .../cancel would succeed.")
    export = ExportSerializer()
    certificate = CertificateDocumentSerializer(
        allow_null=True,
        help_text="Erasure: the signed certificate of what was erased, once it is done.",
    )


class ManagedRequestSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=RequestType.choices)
    regime = serializers.ChoiceField(choices=Regime.choices)
    state = serializers.ChoiceField(choices=RequestState.choices)
    contact_type = serializers.CharField()
    profile_id = serializers.UUIDField(allow_null=True)
    received_at = serializers.DateTimeField()
    verified_at = serializers.DateTimeField(allow_null=True)
    due_at = serializers.DateTimeField()
    effective_due_at = serializers.DateTimeField()
    days_left = serializers.SerializerMethodField()
    legal_hold = serializers.BooleanField()
    paused = serializers.BooleanField()
    assigned_to_id = serializers.IntegerField(allow_null=True)
    extension_reason = serializers.CharField()
    denial_reason = serializers.CharField()
    cancel_until = serializers.DateTimeField(allow_null=True)
    fulfil_after = serializers.DateTimeField(
        allow_null=True,
        help_text=(
            "Set when a steward asked to fulfil and a worker carries the request out: at once "
            "when queued, or when the cancellation window closes for an erasure fulfilled "
            "during it. The request stays in progress until then."
        ),
    )
    closed_at = serializers.DateTimeField(allow_null=True)

    def get_days_left(self, obj: Any) -> int:
        return selectors.request_days_left(request=obj)


class ListQuerySerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=RequestState.choices, required=False)


class NoteInputSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ReasonInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class ExtendInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)
    until = serializers.DateField(
        required=False, help_text="GDPR only: the new deadline (default: the latest allowed)."
    )


class RestrictionLiftInputSerializer(serializers.Serializer):
    # Not required here: the service refuses a missing or blank reason (`reason_required`).
    reason = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Why the restriction ends (e.g. the data was verified accurate). Kept in the "
        "audit trail and told to the subject; do not quote the person's data.",
    )
    subject_informed = serializers.BooleanField(
        required=False,
        default=False,
        help_text="The steward informed the subject already: required when a restriction "
        "request of the profile has a phone contact (no SMS is sent).",
    )


class RestrictionLiftOutputSerializer(serializers.Serializer):
    profile_id = serializers.UUIDField()
    restricted = serializers.BooleanField()
    requests = serializers.ListField(
        child=serializers.UUIDField(),
        help_text="The restriction requests of the profile, each noted as lifted.",
    )
    informed_by_email = serializers.IntegerField()
    informed_by_steward = serializers.IntegerField()
