"""Collection routes, mounted at /v1/. Long names (Segment's HTTP API, RudderStack, the Python
SDKs) and analytics-next's one-letter paths reach the same views."""

from django.urls import path, re_path

from collect.api import personalize, views

_SINGLE = {
    "identify": "i",
    "track": "t",
    "page": "p",
    "screen": "s",
    "group": "g",
    "alias": "a",
}

urlpatterns = [
    *(
        path(route, views.CollectMessageApi.as_view(message_type=kind), name=f"collect-{route}")
        for kind, short in _SINGLE.items()
        for route in (kind, short)
    ),
    *(
        path(route, views.CollectBatchApi.as_view(), name=f"collect-{route}")
        for route in ("batch", "b", "import")
    ),
    path("m", views.CollectMetricsApi.as_view(), name="collect-m"),
    path("personalize", personalize.PersonalizeApi.as_view(), name="personalize"),
    re_path(r"^.*$", views.CollectUnknownApi.as_view(), name="collect-unknown"),
]
