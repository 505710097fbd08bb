"""Output shapes shared by the activation management API's views (each view nests its own
Input serializer)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from activation.enums import (
    AudienceStatus,
    DeliveryAction,
    DeliveryStatus,
    DestinationKind,
    SyncMode,
    SyncRunStatus,
)


@extend_schema_serializer(component_name="ActivationApiError")
class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    path = serializers.CharField(
        required=False, help_text="invalid_rules: the JSON pointer of the bad part of the rules."
    )
    field = serializers.CharField(required=False, help_text="The setting that is not valid.")
    # Field names that shadow Serializer attributes are fine at runtime (DRF's metaclass moves
    # declared fields aside); only the stubs object.
    errors = serializers.JSONField(  # type: ignore[assignment]
        required=False, help_text="Field details of a 400 invalid."
    )


@extend_schema_serializer(component_name="Audience")
class AudienceSerializer(serializers.Serializer):
    key = serializers.SlugField()
    name = serializers.CharField()
    description = serializers.CharField()
    rules = serializers.JSONField(help_text="The rules (activation/rules/schema.json).")
    realtime = serializers.BooleanField()
    status = serializers.ChoiceField(choices=AudienceStatus.choices)
    size = serializers.IntegerField(help_text="Members at the last refresh.")
    last_computed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="AudienceSampleIdentity")
class MaskedIdentitySerializer(serializers.Serializer):
    type = serializers.CharField()
    value = serializers.CharField(help_text="Always masked.")


@extend_schema_serializer(component_name="AudienceSampleProfile")
class SampleProfileSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    first_seen_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    attributes = serializers.DictField(
        child=serializers.JSONField(), help_text="Plain attribute traits (never personal data)."
    )
    identities = MaskedIdentitySerializer(many=True)


@extend_schema_serializer(component_name="AudiencePreview")
class PreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Profiles the rules match now.")
    sample = SampleProfileSerializer(many=True, help_text="A few of them, newest first.")


@extend_schema_serializer(component_name="AudienceMember")
class MemberSerializer(serializers.Serializer):
    profile_id = serializers.UUIDField()
    entered_at = serializers.DateTimeField()
    user_id = serializers.CharField(
        allow_null=True, help_text="Masked unless revealed; null when the member has none."
    )
    anonymous_id = serializers.CharField(
        allow_null=True, help_text="Masked unless revealed; null when the member has none."
    )


@extend_schema_serializer(component_name="Destination")
class DestinationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=DestinationKind.choices)
    purposes = serializers.ListField(
        child=serializers.CharField(), help_text="Keys of the consent purposes it serves."
    )
    data = serializers.JSONField(  # type: ignore[assignment]
        help_text='What it receives: {"identifiers": [...], "traits": [...]}'
    )
    config = serializers.JSONField(help_text="Non-secret settings (webhook URL, file prefix, ...).")
    has_secret = serializers.BooleanField(help_text="The secret itself is never answered.")
    min_audience_size = serializers.IntegerField()
    enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="SyncRun")
class SyncRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    sync = serializers.IntegerField(source="sync_id")
    mode = serializers.ChoiceField(choices=SyncMode.choices)
    status = serializers.ChoiceField(choices=SyncRunStatus.choices)
    total = serializers.IntegerField()
    processed = serializers.IntegerField()
    progress = serializers.FloatField(help_text="processed / total, from 0 to 1.")
    sent = serializers.IntegerField()
    removed = serializers.IntegerField()
    excluded = serializers.DictField(
        child=serializers.IntegerField(), help_text="Profiles left out, by reason."
    )
    error = serializers.CharField()
    artifact = serializers.CharField(help_text="The file written, for file destinations.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


@extend_schema_serializer(component_name="Sync")
class SyncSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    audience = serializers.SlugField(source="audience.key")
    destination = serializers.UUIDField(source="destination_id")
    mode = serializers.ChoiceField(choices=SyncMode.choices)
    interval_minutes = serializers.IntegerField()
    enabled = serializers.BooleanField()
    last_run_at = serializers.DateTimeField(allow_null=True)
    deferred_until = serializers.DateTimeField(
        allow_null=True,
        help_text="The destination asked not to be sent to before this time: scheduled runs "
        "wait until then.",
    )
    deferrals = serializers.IntegerField(
        help_text="Runs in a row whose additions the destination asked to wait for."
    )
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="Delivery")
class DeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    profile_id = serializers.UUIDField()
    destination = serializers.UUIDField(source="destination_id")
    destination_name = serializers.CharField(source="destination.name")
    audience = serializers.SlugField(source="audience.key", allow_null=True, default=None)
    sync_run = serializers.UUIDField(source="sync_run_id", allow_null=True)
    action = serializers.ChoiceField(choices=DeliveryAction.choices)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    basis = serializers.DictField(
        child=serializers.CharField(),
        help_text="Purpose key -> the consent record id that allowed it, or the legal basis.",
    )
    payload_sha256 = serializers.CharField()
    delivered_at = serializers.DateTimeField()


# --- "why was this person sent there?" (activation.ledger.delivery_explain) -------------------


@extend_schema_serializer(component_name="DeliveryExplainDestination")
class _ExplainDestinationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]


@extend_schema_serializer(component_name="DeliveryExplainAudience")
class _ExplainAudienceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    name = serializers.CharField()
    rules = serializers.JSONField()


@extend_schema_serializer(component_name="DeliveryExplainMembership")
class _ExplainMembershipSerializer(serializers.Serializer):
    member_now = serializers.BooleanField()
    entered_at = serializers.CharField(allow_null=True)


@extend_schema_serializer(component_name="DeliveryExplainChange")
class _ExplainChangeSerializer(serializers.Serializer):
    change = serializers.CharField()
    at = serializers.CharField(allow_null=True)


@extend_schema_serializer(component_name="DeliveryExplainConsentRecord")
class _ExplainRecordSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    purpose = serializers.CharField()
    decision = serializers.CharField()
    method = serializers.CharField()
    jurisdiction = serializers.CharField()
    notice = serializers.JSONField(allow_null=True)
    # `source` shadows a Field attribute; DRF's metaclass keeps them apart.
    source = serializers.CharField(allow_null=True)  # type: ignore[assignment]
    server_time = serializers.CharField()
    client_time = serializers.CharField(allow_null=True)
    proof = serializers.ListField(
        child=serializers.CharField(), help_text="Which keyed-hash proofs the record holds."
    )
    signals = serializers.JSONField()
    record_hash = serializers.CharField()


@extend_schema_serializer(component_name="DeliveryExplainPurpose")
class _ExplainPurposeSerializer(serializers.Serializer):
    purpose = serializers.CharField()
    name = serializers.CharField()
    legal_basis = serializers.CharField()
    basis = serializers.CharField(allow_null=True)
    consent_record = _ExplainRecordSerializer(allow_null=True)


@extend_schema_serializer(component_name="DeliveryExplanation")
class ExplainSerializer(serializers.Serializer):
    delivery = serializers.UUIDField()
    profile = serializers.UUIDField()
    action = serializers.CharField()
    status = serializers.CharField()
    delivered_at = serializers.CharField(allow_null=True)
    payload_sha256 = serializers.CharField()
    sync_run = serializers.UUIDField(allow_null=True)
    destination = _ExplainDestinationSerializer()
    audience = _ExplainAudienceSerializer(allow_null=True)
    membership = _ExplainMembershipSerializer(allow_null=True)
    membership_history = _ExplainChangeSerializer(many=True)
    purposes = _ExplainPurposeSerializer(many=True)
    basis = serializers.DictField(child=serializers.CharField())
