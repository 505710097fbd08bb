"""Mounted at /api/v1/requests/ (see governance.api.views for who may call what)."""

from django.urls import path

from governance.api import views

urlpatterns = [
    path("", views.RequestCollectionApi.as_view(), name="request-collection"),
    # str, not uuid: a malformed id answers the API's JSON 404, not Django's HTML one.
    path("<str:request_id>", views.RequestStatusApi.as_view(), name="request-status"),
    path("<str:request_id>/verify", views.RequestVerifyApi.as_view(), name="request-verify"),
    path("<str:request_id>/cancel", views.RequestCancelApi.as_view(), name="request-cancel"),
    path("<str:request_id>/approve", views.RequestApproveApi.as_view(), name="request-approve"),
    path("<str:request_id>/deny", views.RequestDenyApi.as_view(), name="request-deny"),
    path("<str:request_id>/extend", views.RequestExtendApi.as_view(), name="request-extend"),
    path("<str:request_id>/fulfil", views.RequestFulfilApi.as_view(), name="request-fulfil"),
    path(
        "<str:request_id>/lift-restriction",
        views.RequestRestrictionLiftApi.as_view(),
        name="request-restriction-lift",
    ),
    path(
        "<str:request_id>/certificate",
        views.RequestCertificateApi.as_view(),
        name="request-certificate",
    ),
]
