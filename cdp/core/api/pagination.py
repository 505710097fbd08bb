from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections
from django.utils import timezone
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor
from rest_framework.pagination import CursorPagination as _CursorPagination
from rest_framework.request import Request


class CursorPagination(_CursorPagination):
    """Stable pages over growing tables (ordering by creation time)."""

    ordering = "-created_at"
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None
    ) -> list[Any] | None:
        self._queryset = queryset
        return super().paginate_queryset(queryset, request, view=view)

    def decode_cursor(self, request: Request) -> Cursor | None:
        """DRF's cursor, whose position must also be a value of the ordering field: a cursor is
        base64 the client can forge, and DRF filters on its position as given (a position
        that is no date then fails in the database). Answers like an undecodable cursor."""
        cursor = super().decode_cursor(request)
        if (
            cursor is not None
            and cursor.position is not None
            and not self._position_valid(cursor.position)
        ):
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def _position_valid(self, position: Any) -> bool:
        field = self._queryset.model._meta.get_field(self.ordering[0].lstrip("-"))
        try:
            value = field.to_python(position)
            if isinstance(value, datetime):
                # The positions this class writes are aware (USE_TZ) instants in UTC's range
                # (SQLite converts to UTC, PostgreSQL would take year 0); others are forged.
                if timezone.is_naive(value):
                    return False
                value.astimezone(UTC)
            field.get_db_prep_value(value, connection=connections[self._queryset.db])
        except (ValidationError, ValueError, TypeError, OverflowError):
            return False
        return True
