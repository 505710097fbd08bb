"""Pages for people (not APIs), mounted at /consent/."""

from django.urls import path

from consent import views

urlpatterns = [
    path(
        "preferences/<str:token>/",
        views.preference_centre,
        name="consent-preference-centre",
    ),
]
