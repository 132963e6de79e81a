"""The demo's own page: the home page with the "Connect with lexoffice" button."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
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
