"""``GET /v1/profile`` behind DOT's bearer-token validation: the one stubbed Lexware call.

It answers Lexware's profile shape (LEXOFFICE.md) for the token's user, and Lexware's
``401 {"message": "Unauthorized"}`` for a missing, expired or revoked token.
"""

from __future__ import annotations

import uuid

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from oauth2_provider.oauth2_backends import get_oauthlib_core

from .constants import COMPANY_NAME

#: Stable ids derived from DOT's primary keys, shaped like Lexware's UUIDs.
NAMESPACE = uuid.UUID("6f1c3d2e-8a4b-4c5d-9e0f-1a2b3c4d5e6f")


def stable_id(kind: str, pk: object) -> str:
    """A UUID that is the same for the same row on every run."""
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{pk}"))


@require_GET
def profile(request: HttpRequest) -> HttpResponse:
    """The token owner's Lexware-style profile; needs scope ``profile.read``."""
    valid, oauth_request = get_oauthlib_core().verify_request(request, scopes=["profile.read"])
    if not valid:
        return JsonResponse({"message": "Unauthorized"}, status=401)
    user = oauth_request.user
    token = oauth_request.access_token
    return JsonResponse(
        {
            "organizationId": stable_id("organization", user.pk),
            "companyName": COMPANY_NAME,
            "connectionId": stable_id("connection", f"{token.application_id}:{user.pk}"),
            "created": {
                "userId": stable_id("user", user.pk),
                "userName": user.get_full_name() or user.get_username(),
                "userEmail": user.email,
                "date": user.date_joined.isoformat(),
            },
            "businessFeatures": ["INVOICING", "BOOKKEEPING"],
            "features": [],
            "subscriptionStatus": "active",
            "taxType": "net",
            "smallBusiness": False,
        }
    )


def ready(request: HttpRequest) -> HttpResponse:
    """Readiness probe for the test fixture."""
    return HttpResponse("ok", content_type="text/plain")
