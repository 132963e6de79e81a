"""URLconf for the fake Lexware tests: the fake mounted like a site would mount it."""

from django.urls import include, path

urlpatterns = [
    path("fake-lexware/", include("django_lexoffice.testing.urls")),
]
