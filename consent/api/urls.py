"""Consent routes: `/v1/consent...` (mounted ahead of collection's `/v1/` catch-all) and the
public `/.well-known/` resources."""

from django.urls import path

from consent.api import views

urlpatterns = [
    path("v1/consent", views.ConsentApi.as_view(), name="consent"),
    path("v1/consent/config", views.ConsentConfigApi.as_view(), name="consent-config"),
    path(
        "v1/consent/receipts/<str:receipt_id>",
        views.ConsentReceiptApi.as_view(),
        name="consent-receipt",
    ),
    path(
        ".well-known/cdp-receipt-keys.json",
        views.ReceiptKeysApi.as_view(),
        name="well-known-receipt-keys",
    ),
    path(".well-known/gpc.json", views.GpcSupportApi.as_view(), name="well-known-gpc"),
]
