from rest_framework.pagination import CursorPagination as _CursorPagination


class CursorPagination(_CursorPagination):
    """Stable pages over growing tables (ordering by creation time)."""

    ordering = "-created_at"
    page_size_query_param = "page_size"
    max_page_size = 500
