from django.urls import path

from profiles.api import views

urlpatterns = [
    path("workspace/", views.WorkspaceDetailApi.as_view(), name="workspace-detail"),
    path("profiles/", views.ProfileListApi.as_view(), name="profile-list"),
    # str, not uuid: a malformed id must answer the API's JSON 404, not Django's HTML one.
    path("profiles/<str:profile_id>/", views.ProfileDetailApi.as_view(), name="profile-detail"),
    path(
        "profiles/<str:profile_id>/events/",
        views.ProfileEventsApi.as_view(),
        name="profile-events",
    ),
    path(
        "profiles/<str:profile_id>/identities/",
        views.ProfileIdentitiesApi.as_view(),
        name="profile-identities",
    ),
    path(
        "profiles/<str:profile_id>/merges/",
        views.ProfileMergesApi.as_view(),
        name="profile-merges",
    ),
    path(
        "profiles/<str:profile_id>/merges/<str:merge_id>/unmerge/",
        views.ProfileUnmergeApi.as_view(),
        name="profile-unmerge",
    ),
    path(
        "profiles/<str:profile_id>/merges/<str:merge_id>/unmerge",
        views.ProfileUnmergeNoSlashApi.as_view(),
        name="profile-unmerge-no-slash",
    ),
]
