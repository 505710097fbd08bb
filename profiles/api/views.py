"""Management API: the token's own workspace, and its profiles (lookup and list, detail,
timeline, identities, merges).

Every read is scoped to the token's workspace: a profile of another workspace answers exactly
like an unknown one (404 profile_not_found). Personal data is masked unless the request asks
`?reveal=true` with a `reason` and the token holds `reveal_pii`; the reveal itself goes through
`services.profile_reveal`, which writes the ACCESS audit entry before decrypting."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.core.api.pagination import CursorPagination
from cdp.core.api.permissions import WorkspacePermission
from cdp.core.api.query import common_parameters, reject_unknown_parameters
from cdp.core.exceptions import InvalidInput, PermissionDenied
from profiles import selectors, services
from profiles.api.serializers import (
    ErrorSerializer,
    IdentitySerializer,
    MergeConflictSerializer,
    MergeSerializer,
    ProfileSummarySerializer,
    RevealInputSerializer,
    TraitSerializer,
)
from profiles.enums import IdentifierType, ProfileStatus, WorkspaceRole
from profiles.exceptions import UnknownIdentifierType
from profiles.models import ApiToken, Profile, Workspace
from profiles.views_model import IdentityView, TraitView

CanViewProfiles = WorkspacePermission.of(WorkspaceRole.VIEW_PROFILES.value)

_PROFILE_ID = OpenApiParameter(
    "profile_id",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="A profile id; an id absorbed by a merge answers with the surviving profile.",
)
_ERRORS = {
    401: ErrorSerializer,
    403: ErrorSerializer,
    404: ErrorSerializer,
}


# DRF takes a tuple here (its stubs say str): the id breaks ties between rows of one instant.
class ProfilePagination(CursorPagination):
    ordering = ("-created_at", "-id")  # type: ignore[assignment]


class EventPagination(CursorPagination):
    ordering = ("-timestamp", "-id")  # type: ignore[assignment]


def _token(request: Request) -> ApiToken:
    # The permission classes admit only workspace tokens, and this app's tokens are ApiTokens.
    return cast(ApiToken, request.auth)


def _actor(request: Request) -> Any:
    user = request.user
    return user if user is not None and user.is_authenticated else None


def _reveal_reason(request: Request, data: dict[str, Any]) -> str | None:
    """The audited reason when the request may and does ask for a reveal; None for masked."""
    if not data["reveal"]:
        return None
    if not _token(request).has_permission(WorkspaceRole.REVEAL_PII.value):
        raise PermissionDenied("This token lacks the 'reveal_pii' permission.")
    reason = data["reason"].strip()
    if not reason:
        raise InvalidInput("A reason is required to reveal personal data.", code="reason_required")
    return reason


def _identities_and_traits(
    request: Request, *, workspace: Workspace, profile: Profile, reason: str | None
) -> tuple[list[IdentityView], list[TraitView]]:
    if reason is None:
        return (
            selectors.profile_identities(workspace=workspace, profile=profile),
            selectors.profile_traits(workspace=workspace, profile=profile),
        )
    revealed = services.profile_reveal(
        workspace=workspace,
        profile=profile,
        actor=_actor(request),
        reason=reason,
        via=f"api:{_token(request).name}",
    )
    return revealed.identities, revealed.traits


def _absorbed_ids(*, workspace: Workspace, profile: Profile) -> list[UUID]:
    # Merges re-point earlier absorbed profiles at the newest survivor, so one hop finds all.
    return list(
        Profile.objects.filter(
            workspace=workspace, merged_into=profile, status=ProfileStatus.MERGED
        )
        .order_by("created_at", "id")
        .values_list("pk", flat=True)
    )


def _identifier_from_query(query: QueryDict, ignore: set[str]) -> tuple[str, str] | None:
    """The one `type=value` identifier of a lookup, or None to list profiles."""
    given = [(key, value) for key in query for value in query.getlist(key) if key not in ignore]
    if len(given) > 1:
        raise InvalidInput("Give at most one identifier parameter.")
    return given[0] if given else None


class WorkspaceDetailApi(APIView):
    """The workspace the token belongs to and the token's permissions."""

    class OutputSerializer(serializers.Serializer):
        slug = serializers.SlugField()
        name = serializers.CharField()
        token_name = serializers.CharField()
        permissions = serializers.ListField(child=serializers.CharField())

    @extend_schema(responses=OutputSerializer, operation_id="workspace_detail")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        token = _token(request)
        data = {
            "slug": token.workspace.slug,
            "name": token.workspace.name,
            "token_name": token.name,
            "permissions": sorted(token.permissions),
        }
        return Response(self.OutputSerializer(data).data)


class ProfileListApi(APIView):
    """Active profiles, newest first; or, given one identifier (`?email=...`), the profile it
    belongs to, found through the blind index. No match is an empty page, not a 404; a
    parameter that names no identifier type of the workspace (`?emial=`) is 400
    `unknown_identifier_type`."""

    permission_classes = [CanViewProfiles]
    pagination_class = ProfilePagination

    class OutputSerializer(ProfileSummarySerializer):
        pass

    @extend_schema(
        operation_id="profile_list",
        tags=["profiles"],
        parameters=[
            OpenApiParameter(
                kind.value,
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description=(
                    f"Look the profile up by {kind.label.lower()}. At most one identifier "
                    "parameter; a workspace's own identifier types work the same way, any "
                    "other parameter is 400 `unknown_identifier_type`."
                ),
            )
            for kind in IdentifierType
        ],
        responses={200: OutputSerializer(many=True), 400: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        paginator = self.pagination_class()
        identifier = _identifier_from_query(
            request.query_params,
            ignore=common_parameters(),
        )
        workspace = _token(request).workspace
        if identifier is None:
            page = paginator.paginate_queryset(
                selectors.profile_list(workspace=workspace), request, view=self
            )
            return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)
        identifier_type, value = identifier
        profile = selectors.profile_find_by_identifier(
            workspace=workspace, identifier_type=identifier_type, value=value
        )
        if profile is None and not selectors.identifier_type_known(
            workspace=workspace, identifier_type=identifier_type
        ):
            # A misspelt parameter (`?emial=`) is not an identifier nobody has.
            raise UnknownIdentifierType(f"Unknown identifier type: {identifier_type}.")
        found = [profile] if profile is not None else []
        return Response(
            {
                "next": None,
                "previous": None,
                "results": self.OutputSerializer(found, many=True).data,
            }
        )


class ProfileDetailApi(APIView):
    """A profile with its attributes, identities and traits; personal data masked unless
    revealed (audited)."""

    permission_classes = [CanViewProfiles]

    class InputSerializer(RevealInputSerializer):
        pass

    @extend_schema_serializer(component_name="ProfileDetail")
    class OutputSerializer(ProfileSummarySerializer):
        merged_from = serializers.ListField(
            child=serializers.UUIDField(), help_text="Ids of the profiles merged into this one."
        )
        revealed = serializers.BooleanField()
        identities = IdentitySerializer(many=True)
        traits = TraitSerializer(many=True)

    @extend_schema(
        operation_id="profile_detail",
        tags=["profiles"],
        parameters=[_PROFILE_ID, InputSerializer],
        responses={200: OutputSerializer, 400: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request, profile_id: str, *args: Any, **kwargs: Any) -> Response:
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        reason = _reveal_reason(request, query.validated_data)
        workspace = _token(request).workspace
        profile = selectors.profile_get(workspace=workspace, profile_id=profile_id)
        identities, traits = _identities_and_traits(
            request, workspace=workspace, profile=profile, reason=reason
        )
        data = {
            "id": profile.pk,
            "created_at": profile.created_at,
            "first_seen_at": profile.first_seen_at,
            "last_seen_at": profile.last_seen_at,
            "attributes": profile.attributes,
            "merge_count": profile.merge_count,
            "merged_from": _absorbed_ids(workspace=workspace, profile=profile),
            "revealed": reason is not None,
            "identities": identities,
            "traits": traits,
        }
        return Response(self.OutputSerializer(data).data)


class ProfileEventsApi(APIView):
    """A profile's event timeline, newest first. Only the plain part of each event: sealed
    personal properties and the full IP address are never part of this answer."""

    permission_classes = [CanViewProfiles]
    pagination_class = EventPagination

    @extend_schema_serializer(component_name="ProfileEvent")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        message_id = serializers.CharField()
        type = serializers.CharField()
        name = serializers.CharField()
        timestamp = serializers.DateTimeField()
        received_at = serializers.DateTimeField()
        # `source` and `context` are also Field attributes; DRF's metaclass keeps them apart.
        source = serializers.CharField(source="source.name")  # type: ignore[assignment]
        properties = serializers.DictField(child=serializers.JSONField())
        context = serializers.DictField(child=serializers.JSONField())  # type: ignore[assignment]

    @extend_schema(
        operation_id="profile_events",
        tags=["profiles"],
        parameters=[_PROFILE_ID],
        responses={200: OutputSerializer(many=True), 400: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request, profile_id: str, *args: Any, **kwargs: Any) -> Response:
        workspace = _token(request).workspace
        profile = selectors.profile_get(workspace=workspace, profile_id=profile_id)
        reject_unknown_parameters(request)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.profile_events(workspace=workspace, profile=profile), request, view=self
        )
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class ProfileIdentitiesApi(APIView):
    """A profile's identities; values masked unless revealed (audited)."""

    permission_classes = [CanViewProfiles]

    class InputSerializer(RevealInputSerializer):
        pass

    @extend_schema_serializer(component_name="ProfileIdentities")
    class OutputSerializer(serializers.Serializer):
        profile_id = serializers.UUIDField()
        revealed = serializers.BooleanField()
        results = IdentitySerializer(many=True)

    @extend_schema(
        operation_id="profile_identities",
        tags=["profiles"],
        parameters=[_PROFILE_ID, InputSerializer],
        responses={200: OutputSerializer, 400: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request, profile_id: str, *args: Any, **kwargs: Any) -> Response:
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        reason = _reveal_reason(request, query.validated_data)
        workspace = _token(request).workspace
        profile = selectors.profile_get(workspace=workspace, profile_id=profile_id)
        identities, _ = _identities_and_traits(
            request, workspace=workspace, profile=profile, reason=reason
        )
        data = {"profile_id": profile.pk, "revealed": reason is not None, "results": identities}
        return Response(self.OutputSerializer(data).data)


class ProfileMergesApi(APIView):
    """The merges this profile survived (the ledger) and the merges the rules refused that
    still await review."""

    permission_classes = [CanViewProfiles]

    @extend_schema_serializer(component_name="ProfileMerges")
    class OutputSerializer(serializers.Serializer):
        profile_id = serializers.UUIDField()
        merges = MergeSerializer(many=True)
        conflicts = MergeConflictSerializer(many=True)

    @extend_schema(
        operation_id="profile_merges",
        tags=["profiles"],
        parameters=[_PROFILE_ID],
        responses={200: OutputSerializer, **_ERRORS},
    )
    def get(self, request: Request, profile_id: str, *args: Any, **kwargs: Any) -> Response:
        workspace = _token(request).workspace
        profile = selectors.profile_get(workspace=workspace, profile_id=profile_id)
        data = {
            "profile_id": profile.pk,
            "merges": selectors.profile_merges(workspace=workspace, profile=profile),
            "conflicts": selectors.profile_conflicts(workspace=workspace, profile=profile).filter(
                resolved_at__isnull=True
            ),
        }
        return Response(self.OutputSerializer(data).data)


CanMergeProfiles = WorkspacePermission.of(WorkspaceRole.MERGE_PROFILES.value)


class ProfileUnmergeApi(APIView):
    """Undo one merge of this profile (ADR 0007): the absorbed profile, and what it had absorbed
    before, come back with their identities, traits, events, data keys and consent; derived
    data is recomputed. Merges are undone most recent first: an older one answers 409
    `later_merge_depends`, one undone already 409 `already_unmerged`. Needs `merge_profiles`."""

    permission_classes = [CanMergeProfiles]

    @extend_schema_serializer(component_name="ProfileUnmergeInput")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=500,
            help_text="Why the merge is undone; kept in the audit trail.",
        )  # fmt: skip

    @extend_schema_serializer(component_name="ProfileUnmerged")
    class OutputSerializer(serializers.Serializer):
        merge_id = serializers.IntegerField()
        survivor_id = serializers.UUIDField()
        restored_id = serializers.UUIDField(help_text="The profile given back, active again.")
        profile_ids = serializers.ListField(
            child=serializers.UUIDField(),
            help_text="The restored profile and the profiles it had absorbed before.",
        )
        identities = serializers.IntegerField(help_text="Identities moved back.")
        traits = serializers.IntegerField()
        events = serializers.IntegerField()
        data_keys = serializers.IntegerField()
        unmerged_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="profile_unmerge",
        tags=["profiles"],
        parameters=[
            _PROFILE_ID,
            OpenApiParameter(
                "merge_id",
                OpenApiTypes.INT,
                OpenApiParameter.PATH,
                description="A merge of this profile, as listed by its merges endpoint.",
            ),
        ],
        request=InputSerializer,
        responses={200: OutputSerializer, 400: ErrorSerializer, 409: ErrorSerializer, **_ERRORS},
    )
    def post(
        self, request: Request, profile_id: str, merge_id: str, *args: Any, **kwargs: Any
    ) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token = _token(request)
        workspace = token.workspace
        profile = selectors.profile_get(workspace=workspace, profile_id=profile_id)
        merge = selectors.profile_merge_get(workspace=workspace, profile=profile, merge_id=merge_id)
        result = services.profile_unmerge(
            workspace=workspace,
            merge=merge,
            actor=_actor(request),
            reason=body.validated_data["reason"],
            via=f"api:{token.name}",
        )
        data = {
            "merge_id": result.merge.pk,
            "survivor_id": result.survivor_id,
            "restored_id": result.restored_id,
            "profile_ids": result.profile_ids,
            "identities": result.identities,
            "traits": result.traits,
            "events": result.events,
            "data_keys": result.data_keys,
            "unmerged_at": result.merge.unmerged_at,
        }
        return Response(self.OutputSerializer(data).data)


@extend_schema(exclude=True)
class ProfileUnmergeNoSlashApi(ProfileUnmergeApi):
    """The same endpoint without the trailing slash (a POST cannot be redirected to it)."""
