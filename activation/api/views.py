"""Management API for audiences, destinations, syncs and the delivery ledger (`/api/v1/...`).

Every call needs a workspace API token holding `manage_audiences`; everything is scoped to the
token's workspace, and an audience, destination, sync, run or delivery of another workspace
answers exactly like one that does not exist (404). Invalid rules answer 400 `invalid_rules`
with the JSON pointer of the bad part in `path`; an invalid key, name, description or status
answers 400 `invalid_audience` (or `invalid`, from the input's own checks) naming the `field`.

Personal data: a preview's sample shows profile ids, plain attributes and identifier types,
never identifier values. The member list shows each member's userId and anonymousId masked;
`?reveal=true&reason=...` (with `reveal_pii` on the token) decrypts them, writing an ACCESS
audit entry per member first. A destination's secret is write-only."""

from __future__ import annotations

from typing import Any, cast

from auditlog.context import set_actor
from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from activation import selectors, services
from activation.api.serializers import (
    AudienceSerializer,
    DeliverySerializer,
    DestinationSerializer,
    ErrorSerializer,
    ExplainSerializer,
    MemberSerializer,
    PreviewSerializer,
    SyncRunSerializer,
    SyncSerializer,
)
from activation.enums import AudienceStatus, DestinationKind, SyncMode
from activation.exceptions import AudienceNotFound
from activation.models import DESCRIPTION_MAX_LENGTH, Audience, Delivery, Destination, Sync, SyncRun
from cdp.core.api.contracts import WorkspaceCredential
from cdp.core.api.pagination import CursorPagination
from cdp.core.api.permissions import WorkspacePermission
from cdp.core.api.query import reject_unknown_parameters
from cdp.core.exceptions import InvalidInput, NotFound, PermissionDenied
from profiles.enums import WorkspaceRole

CanManageAudiences = WorkspacePermission.of(WorkspaceRole.MANAGE_AUDIENCES.value)
MAX_SAMPLE = 50
_ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
_WRITE_ERRORS = {**_ERRORS, 409: ErrorSerializer}
_KEY = OpenApiParameter("key", OpenApiTypes.STR, OpenApiParameter.PATH, description="Audience key.")
_DESTINATION_ID = OpenApiParameter("destination_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
_SYNC_ID = OpenApiParameter("sync_id", OpenApiTypes.INT, OpenApiParameter.PATH)
_RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
_DELIVERY_ID = OpenApiParameter("delivery_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


# DRF takes a tuple here (its stubs say str): the id breaks ties between rows of one instant.
class NewestFirstPagination(CursorPagination):
    ordering = ("-created_at", "-id")  # type: ignore[assignment]


class MemberPagination(CursorPagination):
    ordering = ("-entered_at", "-id")  # type: ignore[assignment]


class DeliveryPagination(CursorPagination):
    ordering = ("-delivered_at", "-id")  # type: ignore[assignment]


def _workspace(request: Request) -> Any:
    # The permission classes admitted only workspace credentials (cdp.core.api.contracts).
    return cast(WorkspaceCredential, request.auth).workspace


def _actor(request: Request) -> Any:
    user = request.user
    return user if isinstance(user, get_user_model()) and user.is_authenticated else None


def _audience(request: Request, key: str) -> Audience:
    found = selectors.audience_get(workspace=_workspace(request), key=key)
    if found is None:
        raise AudienceNotFound()
    return found


def _destination(request: Request, destination_id: str) -> Destination:
    found = selectors.destination_get(workspace=_workspace(request), destination_id=destination_id)
    if found is None:
        raise NotFound("No such destination.", code="destination_not_found")
    return found


def _sync(request: Request, sync_id: str) -> Sync:
    found = selectors.sync_get(workspace=_workspace(request), sync_id=sync_id)
    if found is None:
        raise NotFound("No such sync.", code="sync_not_found")
    return found


def _paginate(view: APIView, request: Request, queryset: Any, out: Any) -> Response:
    paginator = view.pagination_class()  # type: ignore[attr-defined]
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(out(page))


# --- audiences -------------------------------------------------------------------------------


class AudienceCollectionApi(APIView):
    """GET: the workspace's audiences, newest first. POST: a new audience (rules checked; its
    membership fills at the next refresh, or at once with `POST .../refresh`)."""

    permission_classes = [CanManageAudiences]
    pagination_class = NewestFirstPagination

    @extend_schema_serializer(component_name="AudienceCreateInput")
    class InputSerializer(serializers.Serializer):
        key = serializers.CharField(max_length=64, help_text="Letters, digits, '-' or '_'.")
        name = serializers.CharField(max_length=200, required=False, default="")
        description = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=DESCRIPTION_MAX_LENGTH
        )
        rules = serializers.JSONField(help_text="The rules (activation/rules/schema.json).")
        realtime = serializers.BooleanField(required=False, default=False)

    @extend_schema(
        operation_id="audience_list",
        tags=["audiences"],
        responses={200: AudienceSerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        reject_unknown_parameters(request)
        return _paginate(
            self,
            request,
            selectors.audience_list(workspace=_workspace(request)),
            lambda page: AudienceSerializer(page, many=True).data,
        )

    @extend_schema(
        operation_id="audience_create",
        tags=["audiences"],
        request=InputSerializer,
        responses={201: AudienceSerializer, **_WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        audience = services.audience_create(
            workspace=_workspace(request), actor=_actor(request), **body.validated_data
        )
        return Response(AudienceSerializer(audience).data, status=201)


class AudienceDetailApi(APIView):
    """GET: one audience. PATCH: change its name, description, rules, realtime flag or status
    (the key stays: rules of other audiences refer to it)."""

    permission_classes = [CanManageAudiences]

    @extend_schema_serializer(component_name="AudienceUpdateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(
            required=False, allow_blank=True, max_length=DESCRIPTION_MAX_LENGTH
        )
        rules = serializers.JSONField(required=False)
        realtime = serializers.BooleanField(required=False)
        status = serializers.ChoiceField(choices=AudienceStatus.choices, required=False)

    @extend_schema(
        operation_id="audience_detail",
        tags=["audiences"],
        parameters=[_KEY],
        responses={200: AudienceSerializer, **_ERRORS},
    )
    def get(self, request: Request, key: str) -> Response:
        return Response(AudienceSerializer(_audience(request, key)).data)

    @extend_schema(
        operation_id="audience_update",
        tags=["audiences"],
        parameters=[_KEY],
        request=InputSerializer,
        responses={200: AudienceSerializer, **_ERRORS},
    )
    def patch(self, request: Request, key: str) -> Response:
        audience = _audience(request, key)
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not body.validated_data:
            raise InvalidInput("Send at least one field to change.", code="nothing_to_change")
        services.audience_update(audience=audience, actor=_actor(request), **body.validated_data)
        return Response(AudienceSerializer(audience).data)


class _PreviewQuery(serializers.Serializer):
    sample = serializers.IntegerField(required=False, default=10, min_value=0, max_value=MAX_SAMPLE)


class AudiencePreviewApi(APIView):
    """How many profiles rules match now, and a sample of them (profile ids, plain attributes,
    identifier types; no identifier value), without saving anything."""

    permission_classes = [CanManageAudiences]

    @extend_schema_serializer(component_name="AudiencePreviewInput")
    class InputSerializer(_PreviewQuery):
        rules = serializers.JSONField(help_text="The rules (activation/rules/schema.json).")

    @extend_schema(
        operation_id="audience_preview",
        tags=["audiences"],
        request=InputSerializer,
        responses={200: PreviewSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = selectors.audience_preview_sample(
            workspace=_workspace(request),
            rules=body.validated_data["rules"],
            sample=body.validated_data["sample"],
        )
        return Response(PreviewSerializer(data).data)


class AudienceRulesPreviewApi(APIView):
    """An audience's rules evaluated now: how many match, and a sample (as the preview)."""

    permission_classes = [CanManageAudiences]

    @extend_schema(
        operation_id="audience_preview_saved",
        tags=["audiences"],
        parameters=[_KEY, _PreviewQuery],
        responses={200: PreviewSerializer, **_ERRORS},
    )
    def get(self, request: Request, key: str) -> Response:
        audience = _audience(request, key)
        query = _PreviewQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = selectors.audience_preview_sample(
            workspace=audience.workspace,
            rules=audience.rules,
            sample=query.validated_data["sample"],
        )
        return Response(PreviewSerializer(data).data)


class AudienceRefreshApi(APIView):
    """Refresh the audience's membership now (a full evaluation of its rules): who entered,
    who left, and the audience with its new size."""

    permission_classes = [CanManageAudiences]

    @extend_schema_serializer(component_name="AudienceRefreshed")
    class OutputSerializer(serializers.Serializer):
        entered = serializers.IntegerField()
        exited = serializers.IntegerField()
        audience = AudienceSerializer()

    @extend_schema(
        operation_id="audience_refresh",
        tags=["audiences"],
        parameters=[_KEY],
        request=None,
        responses={200: OutputSerializer, **_ERRORS},
    )
    def post(self, request: Request, key: str) -> Response:
        audience = _audience(request, key)
        delta = services.audience_refresh(audience=audience)
        audience.refresh_from_db()
        data = {"entered": delta.entered, "exited": delta.exited, "audience": audience}
        return Response(self.OutputSerializer(data).data)


class AudienceMembersApi(APIView):
    """The audience's current members (those that may be processed now), latest entries
    first, with their userId and anonymousId masked; `?reveal=true&reason=...` decrypts them
    (the token needs `reveal_pii`; an ACCESS audit entry per member is written first)."""

    permission_classes = [CanManageAudiences]
    pagination_class = MemberPagination

    @extend_schema_serializer(component_name="AudienceMembersQuery")
    class InputSerializer(serializers.Serializer):
        reveal = serializers.BooleanField(required=False, default=False)
        reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=500)

    @extend_schema(
        operation_id="audience_members",
        tags=["audiences"],
        parameters=[_KEY, InputSerializer],
        responses={200: MemberSerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request, key: str) -> Response:
        reject_unknown_parameters(request, self.InputSerializer().fields)
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        reason = None
        if query.validated_data["reveal"]:
            if not cast(WorkspaceCredential, request.auth).has_permission(
                WorkspaceRole.REVEAL_PII.value
            ):
                raise PermissionDenied("This token lacks the 'reveal_pii' permission.")
            reason = query.validated_data["reason"].strip()
            if not reason:
                raise InvalidInput(
                    "A reason is required to reveal personal data.", code="reason_required"
                )
        audience = _audience(request, key)
        workspace = audience.workspace
        paginator = self.pagination_class()
        page = (
            paginator.paginate_queryset(
                selectors.audience_members(audience=audience).select_related("profile"),
                request,
                view=self,
            )
            or []
        )
        if reason is None:
            values = selectors.members_identifiers_masked(
                workspace=workspace, profile_ids=[m.profile_id for m in page]
            )
        else:
            values = services.members_identifiers_reveal(
                workspace=workspace,
                profiles=[m.profile for m in page],
                actor=_actor(request),
                reason=reason,
                via=f"api:{getattr(request.auth, 'name', 'token')}",
            )
        rows = [
            {
                "profile_id": m.profile_id,
                "entered_at": m.entered_at,
                "user_id": values.get(m.profile_id, {}).get("user_id"),
                "anonymous_id": values.get(m.profile_id, {}).get("anonymous_id"),
            }
            for m in page
        ]
        return paginator.get_paginated_response(MemberSerializer(rows, many=True).data)


# --- destinations ------------------------------------------------------------------------------


def _destination_data(destination: Destination) -> dict[str, Any]:
    return {
        "id": destination.pk,
        "name": destination.name,
        "kind": destination.kind,
        "purposes": sorted(p.key for p in destination.purposes.all()),
        "data": destination.data,
        "config": destination.config,
        # Whether one is set, from the key column: the sealed value is never opened here.
        "has_secret": destination.data_key_id is not None,
        "min_audience_size": destination.min_audience_size,
        "enabled": destination.enabled,
        "created_at": destination.created_at,
        "updated_at": destination.updated_at,
    }


class DestinationCollectionApi(APIView):
    """GET: the workspace's destinations. POST: a new one; what its kind may declare is
    checked, and `secret` (a webhook's signing key) is sealed and never answered."""

    permission_classes = [CanManageAudiences]
    pagination_class = NewestFirstPagination

    @extend_schema_serializer(component_name="DestinationCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        kind = serializers.ChoiceField(choices=DestinationKind.choices)
        purposes = serializers.ListField(
            child=serializers.CharField(max_length=64),
            help_text="Keys of the consent purposes it serves; a profile is sent only when "
            "every one allows it at send time.",
        )
        data = serializers.JSONField(  # type: ignore[assignment]
            required=False,
            default=dict,
            help_text='What it receives: {"identifiers": ["email"], "traits": ["country"]}.',
        )
        config = serializers.JSONField(required=False, default=dict)
        secret = serializers.CharField(
            required=False, write_only=True, help_text="Write-only: never answered."
        )
        min_audience_size = serializers.IntegerField(required=False, default=100, min_value=1)

    @extend_schema(
        operation_id="destination_list",
        tags=["destinations"],
        responses={200: DestinationSerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        reject_unknown_parameters(request)
        return _paginate(
            self,
            request,
            selectors.destination_list(workspace=_workspace(request)),
            lambda page: (
                DestinationSerializer([_destination_data(d) for d in page], many=True).data
            ),
        )

    @extend_schema(
        operation_id="destination_create",
        tags=["destinations"],
        request=InputSerializer,
        responses={201: DestinationSerializer, **_WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        destination = services.destination_create(
            workspace=_workspace(request), actor=_actor(request), **body.validated_data
        )
        return Response(DestinationSerializer(_destination_data(destination)).data, status=201)


class DestinationDetailApi(APIView):
    """GET: one destination (never its secret). PATCH: change it; the same checks as when it
    was created, and a new `secret` replaces the old one."""

    permission_classes = [CanManageAudiences]

    @extend_schema_serializer(component_name="DestinationUpdateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False)
        purposes = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
        data = serializers.JSONField(required=False)  # type: ignore[assignment]
        config = serializers.JSONField(required=False)
        secret = serializers.CharField(
            required=False, write_only=True, help_text="Write-only: replaces the secret."
        )
        min_audience_size = serializers.IntegerField(required=False, min_value=1)
        enabled = serializers.BooleanField(required=False)

    @extend_schema(
        operation_id="destination_detail",
        tags=["destinations"],
        parameters=[_DESTINATION_ID],
        responses={200: DestinationSerializer, **_ERRORS},
    )
    def get(self, request: Request, destination_id: str) -> Response:
        destination = _destination(request, destination_id)
        return Response(DestinationSerializer(_destination_data(destination)).data)

    @extend_schema(
        operation_id="destination_update",
        tags=["destinations"],
        parameters=[_DESTINATION_ID],
        request=InputSerializer,
        responses={200: DestinationSerializer, **_WRITE_ERRORS},
    )
    def patch(self, request: Request, destination_id: str) -> Response:
        destination = _destination(request, destination_id)
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not body.validated_data:
            raise InvalidInput("Send at least one field to change.", code="nothing_to_change")
        destination = services.destination_update(
            destination=destination, actor=_actor(request), **body.validated_data
        )
        return Response(DestinationSerializer(_destination_data(destination)).data)


# --- syncs and their runs ------------------------------------------------------------------------


def _run_data(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "sync_id": run.sync_id,
        "mode": run.mode,
        "status": run.status,
        "total": run.total,
        "processed": run.processed,
        "progress": round(min(1.0, run.processed / run.total), 4) if run.total else 0.0,
        "sent": run.sent,
        "removed": run.removed,
        "excluded": dict(run.excluded or {}),
        "error": run.error,
        "artifact": run.artifact,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


class SyncCollectionApi(APIView):
    """GET: the workspace's syncs. POST: connect an audience to a destination."""

    permission_classes = [CanManageAudiences]
    pagination_class = NewestFirstPagination

    @extend_schema_serializer(component_name="SyncCreateInput")
    class InputSerializer(serializers.Serializer):
        audience = serializers.CharField(max_length=64, help_text="The audience key.")
        destination = serializers.UUIDField()
        mode = serializers.ChoiceField(
            choices=SyncMode.choices, required=False, default=SyncMode.INCREMENTAL
        )
        interval_minutes = serializers.IntegerField(
            required=False, default=60, min_value=0, help_text="0 for manual runs only."
        )

    @extend_schema(
        operation_id="sync_list",
        tags=["syncs"],
        responses={200: SyncSerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        reject_unknown_parameters(request)
        return _paginate(
            self,
            request,
            selectors.sync_list(workspace=_workspace(request)),
            lambda page: SyncSerializer(page, many=True).data,
        )

    @extend_schema(
        operation_id="sync_create",
        tags=["syncs"],
        request=InputSerializer,
        responses={201: SyncSerializer, **_WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        sync = services.sync_create(
            audience=_audience(request, data["audience"]),
            destination=_destination(request, str(data["destination"])),
            mode=data["mode"],
            interval_minutes=data["interval_minutes"],
            actor=_actor(request),
        )
        return Response(SyncSerializer(sync).data, status=201)


class SyncDetailApi(APIView):
    permission_classes = [CanManageAudiences]

    @extend_schema(
        operation_id="sync_detail",
        tags=["syncs"],
        parameters=[_SYNC_ID],
        responses={200: SyncSerializer, **_ERRORS},
    )
    def get(self, request: Request, sync_id: str) -> Response:
        return Response(SyncSerializer(_sync(request, sync_id)).data)


class SyncStartApi(APIView):
    """Queue a run of the sync (its own mode unless `mode`); 409 while another is queued or
    running, or when the sync or its destination is disabled. Follow it under sync-runs/."""

    permission_classes = [CanManageAudiences]

    @extend_schema_serializer(component_name="SyncStartInput")
    class InputSerializer(serializers.Serializer):
        mode = serializers.ChoiceField(choices=SyncMode.choices, required=False)

    @extend_schema(
        operation_id="sync_start",
        tags=["syncs"],
        parameters=[_SYNC_ID],
        request=InputSerializer,
        responses={202: SyncRunSerializer, **_WRITE_ERRORS},
    )
    def post(self, request: Request, sync_id: str) -> Response:
        sync = _sync(request, sync_id)
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        actor = _actor(request)
        with set_actor(actor):
            run = services.sync_run_start(
                sync=sync, actor=actor, mode=body.validated_data.get("mode")
            )
        # In eager mode (no broker) the run finished at commit: answer what it is now.
        run.refresh_from_db()
        return Response(SyncRunSerializer(_run_data(run)).data, status=202)


class SyncRunListApi(APIView):
    """A sync's runs, newest first."""

    permission_classes = [CanManageAudiences]
    pagination_class = NewestFirstPagination

    @extend_schema(
        operation_id="sync_runs",
        tags=["syncs"],
        parameters=[_SYNC_ID],
        responses={200: SyncRunSerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request, sync_id: str) -> Response:
        reject_unknown_parameters(request)
        sync = _sync(request, sync_id)
        return _paginate(
            self,
            request,
            selectors.sync_runs(sync=sync),
            lambda page: SyncRunSerializer([_run_data(r) for r in page], many=True).data,
        )


class SyncRunDetailApi(APIView):
    """A run's status and progress: sent, removed and excluded by reason."""

    permission_classes = [CanManageAudiences]

    @extend_schema(
        operation_id="sync_run_detail",
        tags=["syncs"],
        parameters=[_RUN_ID],
        responses={200: SyncRunSerializer, **_ERRORS},
    )
    def get(self, request: Request, run_id: str) -> Response:
        run = selectors.sync_run_get(workspace=_workspace(request), run_id=run_id)
        if run is None:
            raise NotFound("No such sync run.", code="sync_run_not_found")
        return Response(SyncRunSerializer(_run_data(run)).data)


# --- the delivery ledger -----------------------------------------------------------------------


def _delivery(request: Request, delivery_id: str) -> Delivery:
    found = selectors.delivery_get(workspace=_workspace(request), delivery_id=delivery_id)
    if found is None:
        raise NotFound("No such delivery.", code="delivery_not_found")
    return found


class DeliverySearchApi(APIView):
    """The delivery ledger, newest first: every record sent to or removed from a destination,
    with what allowed it. Narrow it to a profile, a destination or an audience."""

    permission_classes = [CanManageAudiences]
    pagination_class = DeliveryPagination

    @extend_schema_serializer(component_name="DeliverySearchQuery")
    class InputSerializer(serializers.Serializer):
        profile = serializers.UUIDField(required=False)
        destination = serializers.UUIDField(required=False)
        audience = serializers.CharField(required=False, max_length=64, help_text="Audience key.")

    @extend_schema(
        operation_id="delivery_search",
        tags=["ledger"],
        parameters=[InputSerializer],
        responses={200: DeliverySerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        reject_unknown_parameters(request, self.InputSerializer().fields)
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        workspace = _workspace(request)
        rows = selectors.delivery_search(
            workspace=workspace,
            profile_id=data.get("profile"),
            destination=(
                _destination(request, str(data["destination"])) if "destination" in data else None
            ),
            audience=_audience(request, data["audience"]) if "audience" in data else None,
        )
        return _paginate(self, request, rows, lambda page: DeliverySerializer(page, many=True).data)


class DeliveryExplainApi(APIView):
    """Why this person was sent to (or removed from) this destination: the audience and its
    rules, their membership history, each purpose with the consent record (time, method,
    notice, evidence) or legal basis that allowed it at send time, and the payload's hash."""

    permission_classes = [CanManageAudiences]

    @extend_schema(
        operation_id="delivery_explain",
        tags=["ledger"],
        parameters=[_DELIVERY_ID],
        responses={200: ExplainSerializer, **_ERRORS},
    )
    def get(self, request: Request, delivery_id: str) -> Response:
        delivery = _delivery(request, delivery_id)
        explained = selectors.delivery_explain(workspace=_workspace(request), delivery=delivery)
        return Response(ExplainSerializer(explained).data)
