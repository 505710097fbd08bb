"""The privacy portal (pages for people, not APIs), mounted at /privacy/."""

from django.urls import path

from governance import views

urlpatterns = [
    path("", views.portal_index, name="privacy-portal-index"),
    path("requests/<str:request_id>/", views.portal_status, name="privacy-portal-status"),
    path("requests/<str:request_id>/verify/", views.portal_verify, name="privacy-portal-verify"),
    path("requests/<str:request_id>/cancel/", views.portal_cancel, name="privacy-portal-cancel"),
    path(
        "requests/<str:request_id>/download/", views.portal_download, name="privacy-portal-download"
    ),
    path(
        "requests/<str:request_id>/certificate/",
        views.portal_certificate,
        name="privacy-portal-certificate",
    ),
    path("<slug:workspace_slug>/", views.portal_submit, name="privacy-portal-submit"),
]
