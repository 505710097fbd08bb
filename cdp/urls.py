"""The project's routes. Each app contributes its own API urls; nothing here holds logic."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from health_check.views import HealthCheckView

from cdp.core.api import fallback

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path(
        "health/",
        HealthCheckView.as_view(
            checks=[
                "health_check.checks.Database",
                "health_check.checks.Cache",
                "cdp.core.health.Broker",
            ]
        ),
        name="health",
    ),
    # The export download and its schema: before the other /api/v1/requests/ routes.
    path("api/v1/", include("governance.download_urls")),
    path("api/v1/requests/", include("governance.api.urls")),
    path("api/v1/", include("profiles.api.urls")),
    path("api/v1/", include("activation.api.urls")),
    path("privacy/", include("governance.urls")),
    path("consent/", include("consent.urls")),
    # /v1/consent... and /.well-known/: before collection's /v1/ catch-all.
    path("", include("consent.api.urls")),
    path("v1/", include("collect.api.urls")),
    # Last: any other path under api/ answers the API's JSON 404 (see cdp.core.api.fallback).
    re_path(r"^api/", fallback.api_not_found, name=fallback.URL_NAME),
]
