"""Template context of the demo site."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from django_lexoffice.conf import settings as lexoffice_settings


def demo(request: HttpRequest) -> dict[str, Any]:
    """Which Lexware the demo talks to: ``fake``, ``sandbox`` or ``production``."""
    if getattr(settings, "DEMO_FAKE_LEXWARE", False):
        mode = "fake"
    elif lexoffice_settings.SANDBOX:
        mode = "sandbox"
    else:
        mode = "production"
    return {"demo_mode": mode, "lexware_auth_url": lexoffice_settings.AUTH_BASE_URL}
