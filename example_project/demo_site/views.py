"""The demo's own pages: the home page with the "Connect with lexoffice" button, the fake
Lexware's front page and the favicon."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from django_lexoffice.models import LexofficeConnection


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Explain the demo and offer the connect button; list the visitor's connections."""
    connections = (
        # The page needs no token: none is decrypted (it works with a wrong key).
        LexofficeConnection.objects.without_tokens()
        .filter(user=request.user)
        .order_by("company_name", "pk")
        if request.user.is_authenticated
        else LexofficeConnection.objects.none()
    )
    return render(request, "home.html", {"connections": connections})


@require_GET
def fake_lexware(request: HttpRequest) -> HttpResponse:
    """What stands at ``/fake-lexware/``, where the real Lexware has its sign-in page."""
    return render(request, "fake_lexware.html")


#: The demo's logo ("lx" on blue) as the site's icon; browsers ask for /favicon.ico.
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#0b6bcb"/>'
    '<text x="16" y="22" font-family="system-ui, sans-serif" font-size="16" font-weight="700" '
    'fill="#fff" text-anchor="middle">lx</text></svg>'
)


@require_GET
@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponse:
    """The site icon, so no page logs a 404 for ``/favicon.ico``."""
    return HttpResponse(FAVICON_SVG, content_type="image/svg+xml")
