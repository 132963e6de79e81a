"""What Lexware enforces, as data (see LEXOFFICE.md): scopes, lifetimes, formats, demo companies."""

from __future__ import annotations

import re
from typing import Any, Final, TypedDict

from django_lexoffice.conf import KNOWN_SCOPES

#: Every scope Lexware knows (one list, the system checks'), ``profile.read`` first.
SCOPES: Final[tuple[str, ...]] = ("profile.read", *sorted(KNOWN_SCOPES - {"profile.read"}))

CODE_LIFETIME: Final = 300  # seconds; the authorization code is single-use and lives 5 minutes
ACCESS_TOKEN_LIFETIME: Final = 4 * 3600
EXPIRES_IN: Final = 14399  # what Lexware answers in ``expires_in``
REFRESH_TOKEN_LENGTH: Final = 128

#: How long the cache keeps records. Expiry rules use the fake's clock, not these timeouts: they
#: only bound how long garbage lives (a refresh token lives "until revoked" at Lexware).
CODE_TTL: Final = 3600
GRANT_TTL: Final = 30 * 24 * 3600

#: RFC 7636 §4.1/§4.2: the verifier is 43-128 unreserved characters; an S256 challenge is the
#: unpadded base64url of a SHA-256 digest, i.e. exactly 43 characters.
VERIFIER_RE: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
CHALLENGE_RE: Final = re.compile(r"[A-Za-z0-9_\-]{43}")
#: LEXOFFICE.md: letters incl. äöüÄÖÜß, digits, whitespace and / ? . - { } " _ \ : = , ( )
CONNECTION_NAME_RE: Final = re.compile(r"[A-Za-z0-9äöüÄÖÜß \t\n\r\f\v/?.\-{}\"_\\:=,()]*")

#: Every fault kind (docs/testing.rst tells what the client sees for each).
FAULT_KINDS: Final[tuple[str, ...]] = (
    "server_error",
    "slow",
    "invalid_grant",
    "unauthorized_client",
    "non_json",
    "rate_limit",
    "rate_limit_500",
    "lost_response",
    "connection_reset",
)
_ANSWERING = ("server_error", "non_json", "rate_limit", "rate_limit_500", "connection_reset")
#: The endpoints a fault can be injected into, with the kinds each accepts (``inject`` refuses
#: the rest with ``ValueError``): ``token`` is the code exchange, ``refresh`` the refresh grant
#: (both ``/oauth2/token``), ``api`` every ``/v1`` endpoint but ``/v1/profile``. The API
#: gateway speaks no OAuth errors, and the authorization page has no answer to lose.
FAULTS_BY_ENDPOINT: Final[dict[str, tuple[str, ...]]] = {
    "authorize": (*_ANSWERING, "slow", "unauthorized_client"),
    "token": FAULT_KINDS,
    "refresh": FAULT_KINDS,
    "revoke": (*_ANSWERING, "slow", "unauthorized_client", "lost_response"),
    "profile": (*_ANSWERING, "slow", "lost_response"),
    "api": (*_ANSWERING, "slow", "lost_response"),
}
ENDPOINTS: Final[tuple[str, ...]] = tuple(FAULTS_BY_ENDPOINT)
SERVER_ERROR_STATUSES: Final = (500, 502, 503, 504)
#: Names :meth:`FakeLexware.count` accepts: one counter per fault endpoint, and the bucket's 429s.
COUNTERS: Final[tuple[str, ...]] = (*ENDPOINTS, "rate_limited")
#: Lexware's API rate: requests per second per client id.
DEFAULT_RATE_LIMIT: Final = 2.0


class Company(TypedDict):
    """A Lexware company (organization) and the user who connects it."""

    organization_id: str
    company_name: str
    user_id: str
    user_name: str
    user_email: str
    business_features: list[str]
    features: list[str]
    subscription_status: str
    tax_type: str
    small_business: bool


DEMO_COMPANIES: Final[tuple[Company, ...]] = (
    {
        "organization_id": "aa93e8a8-2aa3-470b-b914-caad8a255dd8",
        "company_name": "Testfirma GmbH",
        "user_id": "1aea5501-3f3e-403d-8492-2dad03016289",
        "user_name": "Frau Erika Musterfrau",
        "user_email": "erika.musterfrau@testfirma.de",
        "business_features": ["INVOICING", "INVOICING_PRO", "BOOKKEEPING"],
        "features": ["cashbox"],
        "subscription_status": "active",
        "tax_type": "net",
        "small_business": False,
    },
    {
        "organization_id": "5c3b7f52-1d8e-4b0a-9c57-2f6e4a1d9b30",
        "company_name": "Musterfirma Bäckerei Schmidt GmbH",
        "user_id": "8f0d2c4e-6a1b-4f3d-9e7c-1b5a3d2f4e60",
        "user_name": "Herr Max Schmidt",
        "user_email": "max.schmidt@baeckerei-schmidt.example",
        "business_features": ["INVOICING", "BOOKKEEPING"],
        "features": [],
        "subscription_status": "active",
        "tax_type": "gross",
        "small_business": False,
    },
    {
        "organization_id": "e2a9c6d1-7b4f-4c8e-a3d5-6f1b0e9c2a47",
        "company_name": "Anna Weber Grafikdesign",
        "user_id": "3c7e1a9b-5d2f-4e6a-8b0c-9d4f2a6e1c58",
        "user_name": "Frau Anna Weber",
        "user_email": "anna.weber@weber-design.example",
        "business_features": ["INVOICING"],
        "features": [],
        "subscription_status": "active",
        "tax_type": "vatfree",
        "small_business": True,
    },
)

#: Demo contacts per demo company (enough for several pages at a small page size).
DEMO_CONTACT_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "aa93e8a8-2aa3-470b-b914-caad8a255dd8": (
        "Müller Maschinenbau GmbH",
        "Ingenieurbüro Krause",
        "Fischer & Söhne KG",
        "Zahnarztpraxis Dr. Wagner",
        "Becker Logistik AG",
        "Hoffmann IT-Service",
        "Schäfer Gartenbau",
    ),
    "5c3b7f52-1d8e-4b0a-9c57-2f6e4a1d9b30": (
        "Café am Markt",
        "Hotel Sonnenhof",
        "Mühle Braun OHG",
        "Kita Regenbogen e.V.",
        "Feinkost Neumann",
    ),
    "e2a9c6d1-7b4f-4c8e-a3d5-6f1b0e9c2a47": (
        "Verlag Lindner",
        "Agentur Wolkenkratzer",
        "Theater im Hof",
    ),
}


def scope_label(scope: str) -> str:
    """A short German description of a scope for the consent page."""
    noun, _, action = scope.rpartition(".")
    verbs: dict[str, Any] = {
        "read": "lesen",
        "write": "schreiben",
        "delete": "löschen",
        "sendmail": "per E-Mail senden",
        "status": "Status abfragen",
    }
    return f"{noun}: {verbs.get(action, action)}"
