"""pytest fixtures for the fake Lexware (needs pytest-django); docs/testing.rst describes them.
Enable in ``conftest.py``::

    pytest_plugins = ["django_lexoffice.testing.pytest_plugin"]

The fake is imported inside the fixtures: pytest loads plugins before Django is set up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from django_lexoffice.models import LexofficeConnection
    from django_lexoffice.testing import FakeLexware


@pytest.fixture
def fake_lexware_redirect_uris() -> list[str]:
    """Redirect URIs registered for the configured client; override to change them."""
    from django_lexoffice.testing.fake import default_redirect_uris

    return default_redirect_uris()


@pytest.fixture
def fake_lexware(db: None, fake_lexware_redirect_uris: list[str]) -> Iterator[FakeLexware]:
    """A reset fake Lexware routed in-process (``FakeLexware.activate()``), with the configured
    client registered for ``fake_lexware_redirect_uris``. It asks for the database (starting a
    login writes social-auth's state), so tests using it need no ``django_db`` mark."""
    from django_lexoffice.testing import FakeLexware

    with FakeLexware.activate() as fake:
        fake.register_configured_client(fake_lexware_redirect_uris)  # replaces activate()'s
        yield fake


@pytest.fixture
def lexoffice_connection(fake_lexware: FakeLexware, django_user_model: Any) -> LexofficeConnection:
    """User ``lexoffice-user``'s connection to the first demo company ("Testfirma GmbH"),
    holding a live grant of the configured client at the fake for the configured scopes."""
    user = django_user_model.objects.create_user(
        username="lexoffice-user", email="lexoffice-user@example.com"
    )
    return fake_lexware.connect(user)
