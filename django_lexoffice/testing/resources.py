"""The API side: bearer authentication, the rate limit, ``/v1/profile`` and ``/v1/contacts``."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse, JsonResponse

from . import grants, ratelimit, replies
from .constants import DEMO_CONTACT_NAMES
from .grants import Grant
from .state import FakeState

_BERLIN = ZoneInfo("Europe/Berlin")
_CONTACT_NAMESPACE = uuid.UUID("6c1e3f1a-8a4b-4c57-9d0e-2b7f5a9c3e11")
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 250


def authenticate(request: HttpRequest, state: FakeState) -> Grant | None:
    """The grant of the ``Authorization: Bearer`` token; ``None`` answers 401.

    RFC 6750 §2.1 only: a token in the query string or form body is never accepted (it would
    end up in logs and Referer headers), and a request carrying one is refused outright.
    """
    if "access_token" in request.GET or "access_token" in request.POST:
        return None
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return grants.grant_for_access_token(state, token)


def api_call(
    request: HttpRequest,
    state: FakeState,
    scope: str,
    build: Callable[[Grant], HttpResponse],
) -> HttpResponse:
    """Authenticate, rate-limit per client id, check the scope, then answer."""
    grant = authenticate(request, state)
    if grant is None:
        return replies.unauthorized()
    if not ratelimit.allow(state, grant["client_id"]):
        return replies.too_many_requests()  # the call is not performed
    if scope not in grant["scopes"]:
        return replies.message(403, "Forbidden")
    return build(grant)


def _iso(timestamp: float) -> str:
    # Lexware's style: "2017-01-03T13:15:45.000+01:00"
    return datetime.fromtimestamp(timestamp, _BERLIN).isoformat(timespec="milliseconds")


def profile_body(grant: Grant) -> dict[str, Any]:
    """``GET /v1/profile`` for a grant: the company the user picked and this connection."""
    company = grant["company"]
    return {
        "organizationId": company["organization_id"],
        "companyName": company["company_name"],
        "connectionId": grant["connection_id"],
        "created": {
            "userId": company["user_id"],
            "userName": company["user_name"],
            "userEmail": company["user_email"],
            "date": _iso(grant["created_at"]),
        },
        "businessFeatures": list(company["business_features"]),
        "features": list(company["features"]),
        "subscriptionStatus": company["subscription_status"],
        "taxType": company["tax_type"],
        "smallBusiness": company["small_business"],
    }


def profile(state: FakeState, grant: Grant) -> HttpResponse:
    """Answer ``/v1/profile`` and count it."""
    state.incr("count", "profile")
    return JsonResponse(profile_body(grant))


def make_contact(organization_id: str, name: str, number: int, contact_id: str) -> dict[str, Any]:
    """A company contact in Lexware's shape (customer role)."""
    return {
        "id": contact_id,
        "organizationId": organization_id,
        "version": 1,
        "roles": {"customer": {"number": number}},
        "company": {"name": name},
        "archived": False,
    }


def all_contacts(state: FakeState, organization_id: str) -> list[dict[str, Any]]:
    """The built-in demo contacts of a company followed by those added at run time."""
    demo = [
        make_contact(
            organization_id,
            name,
            10001 + index,
            str(uuid.uuid5(_CONTACT_NAMESPACE, f"{organization_id}:{index}")),
        )
        for index, name in enumerate(DEMO_CONTACT_NAMES.get(organization_id, ()))
    ]
    return [*demo, *state.added_contacts(organization_id)]


def _int_param(request: HttpRequest, name: str, default: int) -> int | None:
    values = request.GET.getlist(name)
    if not values:
        return default
    if len(values) > 1 or not values[0].isdigit():
        return None
    return int(values[0])


def contacts(request: HttpRequest, state: FakeState, grant: Grant) -> HttpResponse:
    """``GET /v1/contacts?page=0&size=25``: a Spring-style page, as Lexware answers."""
    page = _int_param(request, "page", 0)
    size = _int_param(request, "size", DEFAULT_PAGE_SIZE)
    if page is None or size is None or not 1 <= size <= MAX_PAGE_SIZE:
        return replies.message(400, "Bad Request")
    items = all_contacts(state, grant["company"]["organization_id"])
    total_pages = math.ceil(len(items) / size)
    content = items[page * size : (page + 1) * size]
    state.incr("count", "api")
    return JsonResponse(
        {
            "content": content,
            "first": page == 0,
            "last": page + 1 >= total_pages,
            "totalPages": total_pages,
            "totalElements": len(items),
            "numberOfElements": len(content),
            "size": size,
            "number": page,
        }
    )
