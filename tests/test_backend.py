"""The backend's authorization request and its pieces (SECURITY.md 1, 2, 4, 5, 16)."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import override_settings
from social_core.exceptions import AuthConfigurationError

from django_lexoffice.backends import (
    DEFAULT_PIPELINE,
    LexofficeOAuth2,
    sanitize_connection_name,
)

from .test_flow import connect

pytestmark = pytest.mark.django_db

UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def start_flow(client, **data):
    response = client.post("/lexoffice/login/", data)
    assert response.status_code == 302
    location = response["Location"]
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def session_verifier(client, state):
    return client.session[f"lexoffice_oauth2_state_{state}"]["code_verifier"]


@pytest.mark.parametrize(
    ("verifier", "challenge"),
    [
        # RFC 7636 Appendix B
        (
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        # Lexware's own vector (LEXOFFICE.md)
        (
            "oJdaNUDOIK3xpqlkZ79Sa3dLWst2rF5F8EXQVrqWfzckNOPBC67SzNffeTTb54jSpfuSAnawxLgddxbIqXh4"
            "APOrKYqhI8W5fXtIytVSgjLlrnMn0AUB5h2O6VD1sTDJ",
            "9s_XWOy5h9KO8CQCqzRKr3WEntoEJepUZS9d1IYh_uo",
        ),
    ],
    ids=["rfc7636-appendix-b", "lexware"],
)
def test_sec05_pkce_test_vectors(verifier, challenge):
    backend = LexofficeOAuth2()
    assert backend.generate_code_challenge(verifier, "S256") == challenge


def test_sec05_plain_is_refused():
    with pytest.raises(AuthConfigurationError):
        LexofficeOAuth2().generate_code_challenge("x" * 43, "plain")


def test_sec01_sec05_authorize_request_is_code_flow_with_s256(client):
    location, params = start_flow(client)
    assert location.startswith("https://app.lexware.de/oauth2/authorize?")
    assert params["response_type"] == "code"
    assert params["client_id"] == "test-client-id"
    assert params["code_challenge_method"] == "S256"
    verifier = session_verifier(client, params["state"])
    assert 43 <= len(verifier) <= 128 and set(verifier) <= UNRESERVED
    assert params["code_challenge"] == s256(verifier)
    assert "redirect_state" not in params["redirect_uri"]


@override_settings(SOCIAL_AUTH_LEXOFFICE_PKCE_CODE_CHALLENGE_METHOD="plain")
def test_sec05_a_plain_setting_is_ignored(client):
    _, params = start_flow(client)
    assert params["code_challenge_method"] == "S256"


@pytest.mark.parametrize("length", [8, 200])
def test_sec05_a_verifier_length_setting_is_ignored(client, settings, length):
    # RFC 7636 allows 43 to 128 characters; Lexware would refuse the code exchange.
    settings.SOCIAL_AUTH_PKCE_CODE_VERIFIER_LENGTH = length
    settings.SOCIAL_AUTH_LEXOFFICE_PKCE_CODE_VERIFIER_LENGTH = length
    _, params = start_flow(client)
    verifier = session_verifier(client, params["state"])
    assert len(verifier) == LexofficeOAuth2.PKCE_DEFAULT_CODE_VERIFIER_LENGTH
    assert 43 <= len(verifier) <= 128


@pytest.mark.parametrize("name", ["SOCIAL_AUTH_VERIFY_SSL", "SOCIAL_AUTH_LEXOFFICE_VERIFY_SSL"])
def test_sec13_a_verify_ssl_setting_cannot_turn_off_certificate_checks(
    client, fake_lexware, settings, monkeypatch, name
):
    setattr(settings, name, False)  # e.g. set site-wide for another provider
    real_request = requests.request
    seen = []

    def spy(method, url, **kwargs):
        seen.append((urlsplit(url).path, kwargs.get("verify")))
        return real_request(method, url, **kwargs)

    monkeypatch.setattr(requests, "request", spy)
    assert connect(client, fake_lexware).status_code == 302
    assert seen == [("/oauth2/token", True), ("/v1/profile", True)]


def test_sec05_each_flow_gets_a_fresh_state_and_verifier(client):
    _, first = start_flow(client)
    _, second = start_flow(client)
    assert first["state"] != second["state"]
    assert first["code_challenge"] != second["code_challenge"]
    assert session_verifier(client, first["state"]) != session_verifier(client, second["state"])


def test_sec03_state_has_at_least_128_bits(client):
    _, params = start_flow(client)
    # 32 characters of [A-Za-z0-9]: log2(62) * 32 = 190 bits.
    assert len(params["state"]) >= 32 and params["state"].isalnum()


def test_sec02_redirect_uri_from_reverse_not_forwarded_headers(client):
    _, params = start_flow(client, HTTP_X_FORWARDED_HOST="evil.test")
    assert params["redirect_uri"] == "http://testserver/lexoffice/callback/"


@override_settings(LEXOFFICE_REDIRECT_URI="https://proxy.example/lexoffice/callback/")
def test_sec02_configured_redirect_uri_is_sent_verbatim(client):
    _, params = start_flow(client)
    assert params["redirect_uri"] == "https://proxy.example/lexoffice/callback/"


def test_sec16_scopes_are_profile_read_plus_configured_deduplicated(client):
    with override_settings(SOCIAL_AUTH_LEXOFFICE_SCOPE=["contacts.read", "profile.read"]):
        _, params = start_flow(client)
    assert params["scope"] == "profile.read contacts.read"
    with override_settings(SOCIAL_AUTH_LEXOFFICE_SCOPE=[]):
        _, params = start_flow(client)
    assert params["scope"] == "profile.read"


@override_settings(LEXOFFICE_SANDBOX=True)
def test_sandbox_switches_both_hosts(client):
    from django_lexoffice.conf import settings

    location, _ = start_flow(client)
    assert location.startswith("https://app.lexware-sandbox.de/oauth2/authorize?")
    assert settings.PROFILE_URL == "https://api.lexware-sandbox.io/v1/profile"
    assert settings.TOKEN_URL == "https://app.lexware-sandbox.de/oauth2/token"


@override_settings(
    LEXOFFICE_SANDBOX=True,
    LEXOFFICE_AUTH_BASE_URL="http://127.0.0.1:9000/fake/",
    LEXOFFICE_API_BASE_URL="http://127.0.0.1:9000/fake",
)
def test_explicit_hosts_win_over_sandbox():
    from django_lexoffice.conf import settings

    assert settings.AUTHORIZE_URL == "http://127.0.0.1:9000/fake/oauth2/authorize"
    assert settings.PROFILE_URL == "http://127.0.0.1:9000/fake/v1/profile"


def test_an_endpoint_read_on_the_settings_class_is_the_descriptor():
    from django_lexoffice.conf import Settings

    endpoint = Settings.TOKEN_URL
    assert (endpoint.base, endpoint.path) == ("AUTH_BASE_URL", "/oauth2/token")


def test_connection_name_defaults_to_site_and_username(client, user):
    client.force_login(user)
    _, params = start_flow(client)
    assert params["connection_name"] == "testserver erika"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Müller & Söhne <GmbH>", "Müller Söhne GmbH"),
        ('Shop {1} "A" (B) x=y, z: a/b? c\\d_e.f-g', 'Shop {1} "A" (B) x=y, z: a/b? c\\d_e.f-g'),
        ("emoji 🎉 and\ttabs\nnewlines", "emoji and tabs newlines"),
        ("x" * 300, "x" * 100),
        ("<script>", "script"),
    ],
)
def test_connection_name_is_sanitized(raw, clean):
    assert sanitize_connection_name(raw) == clean


def test_connection_name_setting_string_and_callable(client, user):
    client.force_login(user)
    with override_settings(LEXOFFICE_CONNECTION_NAME="Mein Shop v1.0 <prod>"):
        _, params = start_flow(client)
    assert params["connection_name"] == "Mein Shop v1.0 prod"
    with override_settings(LEXOFFICE_CONNECTION_NAME="tests.test_backend.connection_name_factory"):
        _, params = start_flow(client)
    assert params["connection_name"] == "Shop für erika"


def connection_name_factory(request, user):
    return f"Shop für {user.username}!"


def test_default_pipeline_is_social_default_plus_save_connection():
    assert DEFAULT_PIPELINE[-1] == "django_lexoffice.pipeline.save_connection"
    assert "social_core.pipeline.social_auth.associate_by_email" not in DEFAULT_PIPELINE
    assert "social_core.pipeline.user.user_details" not in DEFAULT_PIPELINE
    assert "social_core.pipeline.social_auth.load_extra_data" in DEFAULT_PIPELINE


def test_sec04_login_get_renders_a_csrf_protected_post_form(client):
    response = client.get("/lexoffice/login/", {"next": "/after/"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'method="post"' in html and "csrfmiddlewaretoken" in html
    assert 'name="next" value="/after/"' in html
    assert not any(key.startswith("lexoffice_oauth2_state") for key in client.session.keys())


def test_sec04_login_post_without_csrf_token_is_refused():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/lexoffice/login/")
    assert response.status_code == 403


def test_login_post_with_csrf_token_starts_the_flow():
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/lexoffice/login/")
    token = page.cookies["csrftoken"].value
    response = browser.post("/lexoffice/login/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"].startswith("https://app.lexware.de/oauth2/authorize?")


@override_settings(SOCIAL_AUTH_LEXOFFICE_KEY="")
def test_login_without_client_id_shows_configuration_page(client):
    # A missing client id is reported by check lexoffice.E001 too; the page never 500s.
    response = client.post("/lexoffice/login/")
    assert response.status_code == 503
    assert b"not set up correctly" in response.content


@pytest.mark.parametrize(
    ("full", "first", "last"),
    [
        ("Frau Erika Musterfrau", "Erika", "Musterfrau"),
        ("Herr Dr. Max von Schmidt", "Max von", "Schmidt"),
        ("Anna", "Anna", ""),
        ("Frau", "Frau", ""),
        ("", "", ""),
    ],
)
def test_names_without_salutation(full, first, last):
    from django_lexoffice.backends import split_name

    assert split_name(full) == (first, last)


@override_settings(
    LEXOFFICE_REDIRECT_URI="https://shop.example/lexoffice/callback/?tenant=a&x=1",
    LEXOFFICE_CONNECTION_NAME="Shop (Test) = 1/2",
)
def test_authorize_url_is_properly_encoded(client):
    location, params = start_flow(client)
    query = urlsplit(location).query
    assert (
        "redirect_uri=https%3A%2F%2Fshop.example%2Flexoffice%2Fcallback%2F%3Ftenant%3Da%26x%3D1"
        in query
    )
    assert params["redirect_uri"] == "https://shop.example/lexoffice/callback/?tenant=a&x=1"
    assert params["connection_name"] == "Shop (Test) = 1/2"
    assert " " not in location
