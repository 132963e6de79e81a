"""The test site's URLs plus what a browser meets around them: Lexware's front page.

The callback error pages link to ``LEXOFFICE_AUTH_BASE_URL + "/"`` (Lexware's sign-in page);
in the browser suite that base URL is the fake Lexware on the live server, which has no page
there, so this stands in for it.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from tests.urls import urlpatterns as site_urlpatterns


def lexware_front_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<!DOCTYPE html><title>Lexware</title><h1>Anmelden</h1>")


urlpatterns = [
    path("fake-lexware/", lexware_front_page),
    *site_urlpatterns,
]
