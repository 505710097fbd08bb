"""Output shapes shared by several profile APIs: identities and traits (masked or revealed),
the profile summary, and the error body every API answers with."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers


@extend_schema_serializer(component_name="ProfilesApiError")
class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    # Field names that shadow Serializer/Field attributes are fine at runtime (DRF's metaclass
    # moves declared fields aside); only the stubs object.
    errors = serializers.JSONField(  # type: ignore[assignment]
        required=False, help_text="Field details of a 400 invalid."
    )


@extend_schema_serializer(component_name="ProfileSummary")
class ProfileSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    first_seen_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    attributes = serializers.DictField(child=serializers.JSONField())
    merge_count = serializers.IntegerField()


@extend_schema_serializer(component_name="ProfileIdentity")
class IdentitySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    value = serializers.CharField(help_text="Masked unless revealed.")
    source = serializers.CharField(allow_null=True)  # type: ignore[assignment]
    first_seen_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ProfileTrait")
class TraitSerializer(serializers.Serializer):
    key = serializers.CharField()
    is_pii = serializers.BooleanField()
    value = serializers.JSONField(help_text="Masked when personal data, unless revealed.")
    source = serializers.CharField()  # type: ignore[assignment]
    observed_at = serializers.DateTimeField()
    candidates = serializers.IntegerField(help_text="How many sources or profiles offered one.")


class RevealInputSerializer(serializers.Serializer):
    """`?reveal=true&reason=...`: decrypt personal data (needs the reveal_pii permission);
    the reason goes to the ACCESS audit entry."""

    reveal = serializers.BooleanField(required=False, default=False)
    reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=500)


@extend_schema_serializer(component_name="ProfileMerge")
class MergeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    absorbed_id = serializers.UUIDField()
    identifier_type = serializers.CharField()
    rule = serializers.CharField()
    message_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    unmerged_at = serializers.DateTimeField(allow_null=True)


@extend_schema_serializer(component_name="ProfileMergeConflict")
class MergeConflictSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    other_profile_id = serializers.UUIDField()
    identifier_type = serializers.CharField()
    reason = serializers.CharField()
    message_id = serializers.CharField()
    created_at = serializers.DateTimeField()
