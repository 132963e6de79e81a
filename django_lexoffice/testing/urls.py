"""URLs of the fake Lexware, for a site or the example project (never in production).

Mount both halves under one prefix and point both base URLs at it::

    path("fake-lexware/", include("django_lexoffice.testing.urls"))

    LEXOFFICE_AUTH_BASE_URL = "http://127.0.0.1:8000/fake-lexware"
    LEXOFFICE_API_BASE_URL = "http://127.0.0.1:8000/fake-lexware"
"""

from __future__ import annotations

from django.urls import path

from . import views, webhooks

app_name = "fake_lexware"

urlpatterns = [
    path("oauth2/authorize", views.authorize, name="authorize"),
    path("oauth2/token", views.token, name="token"),
    path("oauth2/revoke", views.revoke, name="revoke"),
    path("v1/profile", views.profile, name="profile"),
    path("v1/contacts", views.contacts, name="contacts"),
    path("v1/event-subscriptions", webhooks.event_subscriptions, name="event_subscriptions"),
    path("v1/event-subscriptions/<str:subscription_id>", webhooks.event_subscription),
    path("verbundene-apps", webhooks.connected_apps, name="connected_apps"),
]
