from django.urls import path

from profiles.api import views

urlpatterns = [
    path("workspace/", views.WorkspaceDetailApi.as_view(), name="workspace-detail"),
]
