"""URLs of the fake Lexware, for a site or the example project (never in production).

Mount both halves under one prefix and point both base URLs at it::

    path("fake-lexware/", include("django_lexoffice.testing.urls"))

    LEXOFFICE_AUTH_BASE_URL = "http://127.0.0.1:8000/fake-lexware"
    LEXOFFICE_API_BASE_URL = "http://127.0.0.1:8000/fake-lexware"

``FakeLexware.mock()`` routes ``requests`` to the same two groups in-process, each under its
base URL (:data:`BASE_URL_SETTINGS`).
"""

from __future__ import annotations

from django.urls import include, path

from . import views, webhooks

app_name = "fake_lexware"

#: The setting naming the base URL of each group: Lexware's two hosts.
BASE_URL_SETTINGS = {"oauth2/": "AUTH_BASE_URL", "v1/": "API_BASE_URL"}

authorization_server = [
    path("authorize", views.authorize, name="authorize"),
    path("token", views.token, name="token"),
    path("revoke", views.revoke, name="revoke"),
]
api = [
    path("profile", views.profile, name="profile"),
    path("contacts", views.contacts, name="contacts"),
    path("event-subscriptions", webhooks.event_subscriptions, name="event_subscriptions"),
    path("event-subscriptions/<str:subscription_id>", webhooks.event_subscription),
]
urlpatterns = [
    path("oauth2/", include(authorization_server)),
    path("v1/", include(api)),
    path("verbundene-apps", webhooks.connected_apps, name="connected_apps"),  # a page for people
]
