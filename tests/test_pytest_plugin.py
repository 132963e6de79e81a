"""The fake Lexware's pytest plugin and ``FakeLexware.activate()``, used the way a site's tests use
them (docs/testing.rst): through ``lexoffice:login``, the fixtures and ``requests``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import Client
from django.urls import reverse

from django_lexoffice import tokens
from django_lexoffice.client import LexofficeClient
from django_lexoffice.conf import settings as lexoffice_settings
from django_lexoffice.testing import AuthorizeErrorPage, FakeLexware, FakeLexwareError

ROOT = Path(__file__).resolve().parent.parent
OTHER_CALLBACK = "https://example.test/accounts/lexoffice/callback/"


def start_login(client: Client) -> str:
    return str(client.post(reverse("lexoffice:login"))["Location"])


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def test_fixture_registers_the_configured_client(client: Client, fake_lexware: FakeLexware) -> None:
    assert "code" in query(fake_lexware.approve(start_login(client)))


def test_fixture_refuses_other_hosts_unless_its_mock_allows_them(fake_lexware: FakeLexware) -> None:
    assert fake_lexware.requests_mock is not None
    with pytest.raises(requests.ConnectionError):
        requests.get("https://example.com/rates")
    fake_lexware.requests_mock.get("https://example.com/rates", json={"EUR": 1})
    assert requests.get("https://example.com/rates").json() == {"EUR": 1}


class TestRedirectUrisOverride:
    @pytest.fixture
    def fake_lexware_redirect_uris(self) -> list[str]:
        return [OTHER_CALLBACK]

    def test_registers_only_the_overridden_uris(
        self, client: Client, fake_lexware: FakeLexware, settings: Any
    ) -> None:
        with pytest.raises(AuthorizeErrorPage):
            fake_lexware.approve(start_login(client))  # the test client's callback
        settings.LEXOFFICE_REDIRECT_URI = OTHER_CALLBACK
        assert fake_lexware.approve(start_login(client)).startswith(OTHER_CALLBACK + "?code=")


def test_lexoffice_connection_holds_a_live_grant(
    lexoffice_connection: Any, fake_lexware: FakeLexware
) -> None:
    assert lexoffice_connection.user.username == "lexoffice-user"
    profile = LexofficeClient(lexoffice_connection).get("/v1/profile").json()
    assert profile["connectionId"] == lexoffice_connection.connection_id
    assert profile["organizationId"] == lexoffice_connection.organization_id
    tokens.refresh(lexoffice_connection, force=True)
    assert fake_lexware.count("refresh", connection_id=lexoffice_connection.connection_id) == 1
    refresh_token = lexoffice_connection.refresh_token
    tokens.revoke(lexoffice_connection)
    assert not fake_lexware.is_refresh_token_valid(refresh_token)


def test_connect_stores_another_company_due_for_a_refresh(
    fake_lexware: FakeLexware, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("anna")
    connection = fake_lexware.connect(user, company="Anna Weber Grafikdesign", expires_in=10)
    assert (connection.user, connection.company_name) == (user, "Anna Weber Grafikdesign")
    assert connection.lexoffice_user_email == "anna.weber@weber-design.example"
    assert connection.scopes == list(lexoffice_settings.SCOPES) and connection.needs_refresh()
    assert tokens.refresh(connection).refreshed
    profile = LexofficeClient(connection).get("/v1/profile").json()
    assert (profile["connectionId"], profile["companyName"]) == (
        connection.connection_id,
        "Anna Weber Grafikdesign",
    )
    with pytest.raises(FakeLexwareError, match="unknown company"):
        fake_lexware.connect(user, company="Nobody GmbH")


@pytest.mark.django_db
def test_activate_registers_the_configured_client(client: Client) -> None:
    with FakeLexware.activate() as fake:
        assert "code" in query(fake.approve(start_login(client)))


def test_activate_without_a_configured_client_registers_none(settings: Any) -> None:
    settings.SOCIAL_AUTH_LEXOFFICE_KEY = ""
    with FakeLexware.activate() as fake:
        assert fake.get_client("") is None
        assert fake.get_client("test-client-id") is None


def test_a_dummy_cache_is_refused_with_a_clear_message(settings: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    settings.LEXOFFICE_FAKE_CACHE = "dummy"
    with pytest.raises(FakeLexwareError, match=r"DummyCache.*LEXOFFICE_FAKE_CACHE"):
        FakeLexware().reset()


def test_the_server_half_needs_no_responses() -> None:
    # The demo and the wheel check mount the fake's URLs where responses is not installed.
    code = (
        "import sys; sys.modules['responses'] = None\n"
        "import django; django.setup()\n"
        "from django.urls import reverse\n"
        "import django_lexoffice.testing.urls\n"
        "from django_lexoffice.testing import FakeLexware\n"
        "print(reverse('fake_lexware:token'))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/fake-lexware/oauth2/token"
