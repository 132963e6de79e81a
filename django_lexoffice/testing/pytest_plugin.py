"""pytest fixtures for the fake Lexware.

Enable in a ``conftest.py``::

    pytest_plugins = ["django_lexoffice.testing.pytest_plugin"]

``fake_lexware`` gives a reset :class:`~django_lexoffice.testing.FakeLexware` routed in-process
(``responses``), with the configured ``SOCIAL_AUTH_LEXOFFICE_KEY`` / ``_SECRET`` registered for
the redirect URIs of ``fake_lexware_redirect_uris`` (override that fixture to change them). The
state is reset before and after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from django_lexoffice.testing import FakeLexware

DEFAULT_REDIRECT_URI = "http://testserver/lexoffice/callback/"


@pytest.fixture
def fake_lexware_redirect_uris() -> list[str]:
    """Redirect URIs registered for the configured client: ``LEXOFFICE_REDIRECT_URI`` if set,
    and the test client's default callback URL."""
    from django_lexoffice.conf import settings as lexoffice_settings

    uris = [DEFAULT_REDIRECT_URI]
    if lexoffice_settings.REDIRECT_URI and lexoffice_settings.REDIRECT_URI not in uris:
        uris.insert(0, lexoffice_settings.REDIRECT_URI)
    return uris


@pytest.fixture
def fake_lexware(fake_lexware_redirect_uris: list[str]) -> Iterator[FakeLexware]:
    """A fresh fake Lexware, routed in-process for the test."""
    # Imported here: the plugin module is loaded before Django is configured.
    from django_lexoffice.conf import settings as lexoffice_settings
    from django_lexoffice.testing import FakeLexware

    fake = FakeLexware()
    fake.reset()
    if lexoffice_settings.CLIENT_ID:
        fake.register_client(
            lexoffice_settings.CLIENT_ID,
            secret=lexoffice_settings.CLIENT_SECRET,
            redirect_uris=fake_lexware_redirect_uris,
        )
    try:
        with fake.mock():
            yield fake
    finally:
        fake.reset()
