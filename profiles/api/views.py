"""Management API: the token's own workspace."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class WorkspaceDetailApi(APIView):
    """The workspace the token belongs to and the token's permissions."""

    class OutputSerializer(serializers.Serializer):
        slug = serializers.SlugField()
        name = serializers.CharField()
        token_name = serializers.CharField()
        permissions = serializers.ListField(child=serializers.CharField())

    @extend_schema(responses=OutputSerializer, operation_id="workspace_detail")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        token = request.auth
        data = {
            "slug": token.workspace.slug,
            "name": token.workspace.name,
            "token_name": token.name,
            "permissions": sorted(token.permissions),
        }
        return Response(self.OutputSerializer(data).data)
