"""A strict fake of Lexware Office's OAuth authorization server and API, for tests and demos.

It enforces what Lexware enforces (exact redirect URIs, PKCE S256 only, single-use codes that
expire after 5 minutes, HTTP Basic client authentication, refresh token rotation, revocation,
``/v1/profile``, a paged ``/v1/contacts``, the 2 requests/second bucket) and fails on request.
Nothing else in ``django_lexoffice`` imports it. Where each part lives:

* ``constants``: what Lexware enforces, as data (scopes, lifetimes, fault kinds, demo companies).
* ``state``: every record, in a Django cache shared by threads and processes (``FakeState``).
* ``views``: the server: consent page, token, revoke and API endpoints, with fault injection.
* ``webhooks``: event subscriptions, signed deliveries, "Verbundene Apps" (``FakeWebhooks``).
* ``urls``: every endpoint, once, grouped by Lexware's two hosts: a site mounts them
  (``path("fake-lexware/", include(...))``) and ``FakeLexware.mock()`` routes ``requests`` there.
* ``fake``: ``FakeLexware``, the test API, and its in-process routing through ``responses``.
* ``pytest_plugin``: the ``fake_lexware`` and ``lexoffice_connection`` fixtures.

docs/testing.rst explains how to use it.
"""

from __future__ import annotations

from .constants import DEMO_COMPANIES, SCOPES
from .fake import FakeLexware
from .state import FakeLexwareError
from .views import AuthorizeErrorPage, InjectedFaultError, pkce_challenge

__all__ = [
    "DEMO_COMPANIES",
    "SCOPES",
    "AuthorizeErrorPage",
    "FakeLexware",
    "FakeLexwareError",
    "InjectedFaultError",
    "pkce_challenge",
]
