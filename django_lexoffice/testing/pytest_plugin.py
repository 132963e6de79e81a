"""pytest fixtures for the fake Lexware (needs pytest-django); docs/testing.rst describes them.
Enable in ``conftest.py``::

    pytest_plugins = ["django_lexoffice.testing.pytest_plugin"]

Django models are imported inside the fixtures: pytest loads plugins before Django is set up.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
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
    from django.utils import timezone

    from django_lexoffice.conf import settings as lexoffice_settings
    from django_lexoffice.models import LexofficeConnection

    company = fake_lexware.companies()[0]
    scopes = lexoffice_settings.SCOPES
    issued = fake_lexware.issue_tokens(lexoffice_settings.CLIENT_ID, scopes=scopes)
    user = django_user_model.objects.create_user(
        username="lexoffice-user", email="lexoffice-user@example.com"
    )
    return LexofficeConnection.objects.create(
        user=user,
        organization_id=company["organization_id"],
        connection_id=fake_lexware.connection_id_for(issued["access_token"]) or "",
        company_name=company["company_name"],
        lexoffice_user_id=company["user_id"],
        lexoffice_user_name=company["user_name"],
        lexoffice_user_email=company["user_email"],
        scopes=scopes,
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=timezone.now() + timedelta(seconds=issued["expires_in"]),
    )
