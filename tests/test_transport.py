"""Tokens travel only in the Authorization header, only over https (loopback
excepted, for tests), with certificate verification on (SECURITY.md 13)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.utils import timezone

from django_lexoffice import tokens
from django_lexoffice.exceptions import LexofficeConfigurationError
from django_lexoffice.http import require_secure_url
from django_lexoffice.models import LexofficeConnection

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "https://app.lexware.de/oauth2/token",
        "http://127.0.0.1:8000/x",
        "http://localhost/x",
        "http://[::1]:9000/x",
        "http://127.0.0.2/x",
    ],
)
def test_sec13_https_or_loopback_is_allowed(url):
    require_secure_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://app.lexware.de/oauth2/token",
        "http://10.0.0.1/x",
        "ftp://app.lexware.de/x",
        "http://localhost.evil.test/x",
        "app.lexware.de/oauth2/token",
    ],
)
def test_sec13_anything_else_is_refused(url):
    with pytest.raises(LexofficeConfigurationError, match="must use https"):
        require_secure_url(url)


def test_sec13_refresh_never_sends_a_token_over_plain_http(settings, make_connection):
    settings.LEXOFFICE_AUTH_BASE_URL = "http://app.lexware.de"
    connection = make_connection(expires_at=timezone.now())
    with responses.RequestsMock() as rsps:  # any request would fail the test
        with pytest.raises(LexofficeConfigurationError):
            tokens.refresh(connection)
        assert len(rsps.calls) == 0
    assert LexofficeConnection.objects.get().refresh_token == connection.refresh_token


def test_sec13_revoke_over_plain_http_is_not_sent_but_recorded(settings, make_connection):
    settings.LEXOFFICE_AUTH_BASE_URL = "http://app.lexware.de"
    connection = make_connection()
    with responses.RequestsMock() as rsps:
        assert tokens.revoke(connection) is False
        assert len(rsps.calls) == 0
    connection.refresh_from_db()
    assert connection.status == "revoked" and "must use https" in connection.last_error


def test_sec13_login_over_plain_http_host_shows_the_configuration_page(client, settings):
    settings.LEXOFFICE_AUTH_BASE_URL = "http://app.lexware.de"
    settings.LEXOFFICE_API_BASE_URL = "http://api.lexware.io"
    location = client.post("/lexoffice/login/")["Location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    with responses.RequestsMock() as rsps:
        response = client.get("/lexoffice/callback/", {"state": state, "code": "c"})
        assert len(rsps.calls) == 0
    assert response.status_code == 503
    assert LexofficeConnection.objects.count() == 0


def test_sec13_bearer_only_in_the_header_and_tls_verified(client, fake_lexware, monkeypatch):
    seen = []
    original = requests.Session.request

    def spy(self, method, url, **kwargs):
        seen.append(
            (method.upper(), url, kwargs.get("verify", self.verify), kwargs.get("headers") or {})
        )
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    location = client.post("/lexoffice/login/")["Location"]
    callback = urlsplit(fake_lexware.approve(location))
    client.get(callback.path, parse_qs(callback.query))
    connection = LexofficeConnection.objects.get()
    connection.expires_at = timezone.now() - timedelta(seconds=1)
    connection.save()
    tokens.refresh(connection)
    tokens.revoke(connection)
    assert {method for method, *_ in seen} == {"GET", "POST"}
    for method, url, verify, headers in seen:
        assert verify is not False
        assert urlsplit(url).query == ""  # never a token (or anything) in a URL
        if method == "GET":
            assert headers["Authorization"].startswith("Bearer ")
