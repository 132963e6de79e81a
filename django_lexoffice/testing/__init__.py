"""A strict fake of Lexware Office's OAuth authorization server and API, for tests and demos.

It enforces what Lexware enforces (LEXOFFICE.md): exact redirect URIs, PKCE S256 only,
single-use codes that expire after 5 minutes, HTTP Basic client authentication, refresh token
rotation, revocation, ``/v1/profile``, a paged ``/v1/contacts``, the 2 requests/second bucket,
and switchable faults. Never imported by the rest of ``django_lexoffice``.

Two ways to reach it:

1. In-process, no server: ``with FakeLexware.activate() as fake:`` (or ``with fake.mock():``)
   routes ``requests`` calls for ``LEXOFFICE_AUTH_BASE_URL/oauth2/*`` and
   ``LEXOFFICE_API_BASE_URL/v1/*`` to the fake's views through ``responses``. In pytest, enable
   ``pytest_plugins = ["django_lexoffice.testing.pytest_plugin"]`` and use ``fake_lexware``.
2. Over HTTP: mount ``path("fake-lexware/", include("django_lexoffice.testing.urls"))`` and set
   both ``LEXOFFICE_AUTH_BASE_URL`` and ``LEXOFFICE_API_BASE_URL`` to
   ``http://127.0.0.1:8000/fake-lexware``; register clients with ``LEXOFFICE_FAKE_CLIENTS``.

Python API (see :class:`FakeLexware`): ``reset``, ``register_client``, ``add_company``,
``add_contact``, ``approve``, ``deny``, ``issue_tokens``, ``inject``, ``clear_faults``,
``set_rate_limit``, ``advance_clock``, ``count``, ``is_refresh_token_valid``,
``is_access_token_valid``, ``invalidate_access_token``, ``revoke_connection``,
``connection_id_for``, ``mock``, ``activate``. Settings: :mod:`django_lexoffice.testing.conf`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .constants import DEMO_COMPANIES, SCOPES
    from .exceptions import AuthorizeErrorPage, FakeLexwareError, InjectedFaultError
    from .fake import FakeLexware
    from .pkce import challenge as pkce_challenge

# Exported names are imported on first use (PEP 562), so importing one small submodule
# (``state``, ``grants``) does not pull in ``responses`` and ``django.test``.
_EXPORTS = {
    "DEMO_COMPANIES": ("constants", "DEMO_COMPANIES"),
    "SCOPES": ("constants", "SCOPES"),
    "AuthorizeErrorPage": ("exceptions", "AuthorizeErrorPage"),
    "FakeLexwareError": ("exceptions", "FakeLexwareError"),
    "InjectedFaultError": ("exceptions", "InjectedFaultError"),
    "FakeLexware": ("fake", "FakeLexware"),
    "pkce_challenge": ("pkce", "challenge"),
}

__all__ = [
    "DEMO_COMPANIES",
    "SCOPES",
    "AuthorizeErrorPage",
    "FakeLexware",
    "FakeLexwareError",
    "InjectedFaultError",
    "pkce_challenge",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
