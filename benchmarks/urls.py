"""URLs of the benchmark site: the app, social-auth's own views, and the fake Lexware."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("lexoffice/", include("django_lexoffice.urls")),
    path("social/", include("social_django.urls", namespace="social")),
    path("fake-lexware/", include("django_lexoffice.testing.urls")),
]
