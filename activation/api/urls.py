"""Mounted at /api/v1/ (see activation.api.views). Ids are matched as text, so that a malformed
one answers the API's JSON 404 rather than Django's HTML one. Actions (preview, refresh, start,
explain) have no trailing slash, like the request API's."""

from django.urls import path

from activation.api import views

urlpatterns = [
    path("audiences/", views.AudienceCollectionApi.as_view(), name="audience-collection"),
    path("audiences/preview", views.AudiencePreviewApi.as_view(), name="audience-preview"),
    path("audiences/<str:key>/", views.AudienceDetailApi.as_view(), name="audience-detail"),
    path(
        "audiences/<str:key>/preview",
        views.AudienceRulesPreviewApi.as_view(),
        name="audience-rules-preview",
    ),
    path(
        "audiences/<str:key>/refresh", views.AudienceRefreshApi.as_view(), name="audience-refresh"
    ),
    path(
        "audiences/<str:key>/members/", views.AudienceMembersApi.as_view(), name="audience-members"
    ),
    path("destinations/", views.DestinationCollectionApi.as_view(), name="destination-collection"),
    path(
        "destinations/<str:destination_id>/",
        views.DestinationDetailApi.as_view(),
        name="destination-detail",
    ),
    path("syncs/", views.SyncCollectionApi.as_view(), name="sync-collection"),
    path("syncs/<str:sync_id>/", views.SyncDetailApi.as_view(), name="sync-detail"),
    path("syncs/<str:sync_id>/start", views.SyncStartApi.as_view(), name="sync-start"),
    path("syncs/<str:sync_id>/runs/", views.SyncRunListApi.as_view(), name="sync-runs"),
    path("sync-runs/<str:run_id>/", views.SyncRunDetailApi.as_view(), name="sync-run-detail"),
    path("deliveries/", views.DeliverySearchApi.as_view(), name="delivery-search"),
    path(
        "deliveries/<str:delivery_id>/explain",
        views.DeliveryExplainApi.as_view(),
        name="delivery-explain",
    ),
]
