"""The fake Lexware rejects what Lexware rejects (LEXOFFICE.md), and fails the way we tell it to.

Most tests drive the fake in-process through ``requests`` + ``responses`` (the way the app's
tests use it); the consent page and the HTTP-only fault answers go through Django's test client
against the URLs mounted in ``tests.fake_urls``.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import redis
import requests
from django.test import Client

from django_lexoffice.conf import settings as lexoffice_settings
from django_lexoffice.testing import (
    DEMO_COMPANIES,
    AuthorizeErrorPage,
    FakeLexware,
    FakeLexwareError,
    InjectedFaultError,
    pkce_challenge,
)
from django_lexoffice.testing import state as clock

pytestmark = pytest.mark.urls("tests.fake_urls")

REDIRECT_URI = "http://testserver/lexoffice/callback/"
CLIENT_ID = "fake-test-client"
SECRET = "fake-test-secret-0123"
OTHER_ID = "fake-other-client"
OTHER_SECRET = "other-secret"
LIMITED_ID = "fake-limited-client"
PUBLIC_ID = "fake-public-client"
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
LEXWARE_VERIFIER = (
    "oJdaNUDOIK3xpqlkZ79Sa3dLWst2rF5F8EXQVrqWfzckNOPBC67SzNffeTTb54jSpfuSAnawxLgddxbIqXh4AP"
    "OrKYqhI8W5fXtIytVSgjLlrnMn0AUB5h2O6VD1sTDJ"
)
LEXWARE_CHALLENGE = "9s_XWOy5h9KO8CQCqzRKr3WEntoEJepUZS9d1IYh_uo"
TESTFIRMA = DEMO_COMPANIES[0]
BAECKEREI = DEMO_COMPANIES[1]
MOUNT = "/fake-lexware"


@pytest.fixture
def fake() -> Any:
    with FakeLexware.activate() as fake:
        fake.register_client(CLIENT_ID, secret=SECRET, redirect_uris=[REDIRECT_URI])
        fake.register_client(OTHER_ID, secret=OTHER_SECRET, redirect_uris=[REDIRECT_URI])
        fake.register_client(
            LIMITED_ID, secret="limited", redirect_uris=[REDIRECT_URI], scopes=["profile.read"]
        )
        fake.register_client(PUBLIC_ID, secret="", redirect_uris=[REDIRECT_URI])
        yield fake


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Stop the fake's clock now; call the result to move it ``seconds`` past that instant."""
    start = time.time()

    def move(seconds: float) -> None:
        monkeypatch.setattr(clock, "now", lambda: start + seconds)

    move(0)
    return move


# -- helpers -----------------------------------------------------------------------------------


def authorize_params(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "state": "state-123",
        "code_challenge_method": "S256",
        "code_challenge": RFC_CHALLENGE,
        "scope": "profile.read contacts.read",
        "connection_name": "Testseite (erika)",
    }
    params.update(overrides)
    return {name: value for name, value in params.items() if value is not None}


def authorize_url(**overrides: str | None) -> str:
    return f"{lexoffice_settings.AUTHORIZE_URL}?{urlencode(authorize_params(**overrides))}"


def consent_url(**overrides: str | None) -> str:
    return f"{MOUNT}/oauth2/authorize?{urlencode(authorize_params(**overrides))}"


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def get_code(fake: FakeLexware, **overrides: str | None) -> str:
    return query(fake.approve(authorize_url(**overrides)))["code"]


def post_token(
    data: dict[str, str], auth: tuple[str, str] | None = (CLIENT_ID, SECRET), **kwargs: Any
) -> requests.Response:
    return requests.post(lexoffice_settings.TOKEN_URL, data=data, auth=auth, **kwargs)


def code_data(code: str, **overrides: str | None) -> dict[str, str]:
    data: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": RFC_VERIFIER,
    }
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


def connect(fake: FakeLexware, **overrides: str | None) -> dict[str, Any]:
    response = post_token(code_data(get_code(fake, **overrides)))
    assert response.status_code == 200, response.text
    return dict(response.json())


def refresh(refresh_token: str, auth: tuple[str, str] = (CLIENT_ID, SECRET)) -> requests.Response:
    return post_token({"grant_type": "refresh_token", "refresh_token": refresh_token}, auth=auth)


def revoke(token: str, auth: tuple[str, str] | None = (CLIENT_ID, SECRET)) -> requests.Response:
    return requests.post(lexoffice_settings.REVOKE_URL, data={"token": token}, auth=auth)


def api_get(path: str, access_token: str | None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    return requests.get(f"{lexoffice_settings.API_BASE_URL}{path}", headers=headers, **kwargs)


def oauth_error(response: requests.Response) -> str:
    body = response.json()
    assert set(body) == {"error", "error_description"}
    return str(body["error"])


# -- PKCE ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verifier", "challenge"),
    [(RFC_VERIFIER, RFC_CHALLENGE), (LEXWARE_VERIFIER, LEXWARE_CHALLENGE)],
    ids=["rfc7636-appendix-b", "lexware-docs"],
)
def test_pkce_test_vectors_verify(fake: FakeLexware, verifier: str, challenge: str) -> None:
    assert pkce_challenge(verifier) == challenge
    code = get_code(fake, code_challenge=challenge)
    response = post_token(code_data(code, code_verifier=verifier))
    assert response.status_code == 200, response.text


# -- authorize: errors shown as a page, never redirected -----------------------------------------


PAGE_ERRORS = {
    "unknown-client": ({"client_id": "nobody"}, "invalid_client"),
    "missing-client": ({"client_id": None}, "invalid_client"),
    "missing-redirect-uri": ({"redirect_uri": None}, "invalid_redirect_uri"),
    "other-host": (
        {"redirect_uri": "http://evil.test/lexoffice/callback/"},
        "invalid_redirect_uri",
    ),
    "extra-slash": ({"redirect_uri": REDIRECT_URI + "/"}, "invalid_redirect_uri"),
    "missing-slash": ({"redirect_uri": REDIRECT_URI.rstrip("/")}, "invalid_redirect_uri"),
    "other-case": ({"redirect_uri": REDIRECT_URI.upper()}, "invalid_redirect_uri"),
    "https-instead": (
        {"redirect_uri": REDIRECT_URI.replace("http:", "https:")},
        "invalid_redirect_uri",
    ),
    "added-query": ({"redirect_uri": REDIRECT_URI + "?next=/"}, "invalid_redirect_uri"),
}


@pytest.mark.parametrize(("overrides", "code"), PAGE_ERRORS.values(), ids=PAGE_ERRORS.keys())
def test_authorize_error_page_is_never_a_redirect(
    fake: FakeLexware, overrides: dict[str, str | None], code: str
) -> None:
    with pytest.raises(AuthorizeErrorPage) as excinfo:
        fake.approve(authorize_url(**overrides))
    assert excinfo.value.code == code
    response = Client().get(f"{MOUNT}/oauth2/authorize", authorize_params(**overrides))
    assert response.status_code == 400
    assert "Location" not in response
    assert "Fehlerhafte Anfrage" in response.content.decode()


def test_authorize_repeated_client_id_is_an_error_page(fake: FakeLexware) -> None:
    url = authorize_url() + "&client_id=" + OTHER_ID
    with pytest.raises(AuthorizeErrorPage):
        fake.approve(url)


# -- authorize: errors redirected with error and state --------------------------------------------


REDIRECT_ERRORS = {
    "response-type-token": ({"response_type": "token"}, "unsupported_response_type"),
    "response-type-missing": ({"response_type": None}, "invalid_request"),
    "pkce-plain": ({"code_challenge_method": "plain"}, "invalid_request"),
    "pkce-method-missing": ({"code_challenge_method": None}, "invalid_request"),
    "pkce-method-lowercase": ({"code_challenge_method": "s256"}, "invalid_request"),
    "challenge-missing": ({"code_challenge": None}, "invalid_request"),
    "challenge-short": ({"code_challenge": RFC_CHALLENGE[:-1]}, "invalid_request"),
    "challenge-long": ({"code_challenge": RFC_CHALLENGE + "A"}, "invalid_request"),
    "challenge-padded": ({"code_challenge": RFC_CHALLENGE[:-1] + "="}, "invalid_request"),
    "challenge-base64-not-url": ({"code_challenge": "+" + RFC_CHALLENGE[1:]}, "invalid_request"),
    "challenge-is-verifier": ({"code_challenge": RFC_VERIFIER + "x"}, "invalid_request"),
    "scope-openid": ({"scope": "openid profile.read"}, "invalid_scope"),
    "scope-profile": ({"scope": "profile"}, "invalid_scope"),
    "scope-singular": ({"scope": "contact.read"}, "invalid_scope"),
    "scope-comma": ({"scope": "profile.read,contacts.read"}, "invalid_scope"),
    "scope-double-space": ({"scope": "profile.read  contacts.read"}, "invalid_scope"),
    "connection-name-angle": ({"connection_name": "<script>"}, "invalid_request"),
    "connection-name-semicolon": ({"connection_name": "a;b"}, "invalid_request"),
    "connection-name-at": ({"connection_name": "erika@example.de"}, "invalid_request"),
    "connection-name-accent": ({"connection_name": "Café"}, "invalid_request"),
    "connection-name-emoji": ({"connection_name": "Shop 🛒"}, "invalid_request"),
}


@pytest.mark.parametrize(
    ("overrides", "error"), REDIRECT_ERRORS.values(), ids=REDIRECT_ERRORS.keys()
)
def test_authorize_redirects_back_with_error_and_state(
    fake: FakeLexware, overrides: dict[str, str | None], error: str
) -> None:
    callback = fake.approve(authorize_url(**overrides))
    assert callback.startswith(REDIRECT_URI + "?")
    params = query(callback)
    assert params["error"] == error
    assert params["state"] == "state-123"
    assert "code" not in params
    response = Client().get(f"{MOUNT}/oauth2/authorize", authorize_params(**overrides))
    assert response.status_code == 302
    assert query(response["Location"])["error"] == error


def test_authorize_missing_state_is_invalid_request(fake: FakeLexware) -> None:
    params = query(fake.approve(authorize_url(state=None)))
    assert params["error"] == "invalid_request"
    assert "state" not in params
    assert "code" not in params


def test_authorize_repeated_parameter_is_invalid_request(fake: FakeLexware) -> None:
    params = query(fake.approve(authorize_url() + "&scope=contacts.read"))
    assert params["error"] == "invalid_request"


def test_authorize_scope_not_provisioned_for_client(fake: FakeLexware) -> None:
    url = authorize_url(client_id=LIMITED_ID, scope="profile.read contacts.read")
    assert query(fake.approve(url))["error"] == "invalid_scope"


def test_authorize_without_scope_grants_the_provisioned_scopes(fake: FakeLexware) -> None:
    code = get_code(fake, client_id=LIMITED_ID, scope=None)
    tokens = post_token(code_data(code), auth=(LIMITED_ID, "limited")).json()
    assert api_get("/v1/profile", tokens["access_token"]).status_code == 200
    assert api_get("/v1/contacts", tokens["access_token"]).status_code == 403


def test_authorize_accepts_every_allowed_connection_name_character(fake: FakeLexware) -> None:
    name = 'Bäckerei Öß Ü-ä_ü/?.{}"\\:=,() 42\tX'
    assert "code" in query(fake.approve(authorize_url(connection_name=name)))


def test_approve_refuses_a_url_for_another_host(fake: FakeLexware) -> None:
    url = authorize_url().replace(lexoffice_settings.AUTH_BASE_URL, "https://app.lexoffice.de")
    with pytest.raises(FakeLexwareError, match="not the authorization endpoint"):
        fake.approve(url)


def test_approve_picks_a_company_by_id_or_name(fake: FakeLexware) -> None:
    for company in (BAECKEREI["organization_id"], BAECKEREI["company_name"]):
        code = query(fake.approve(authorize_url(), company=company))["code"]
        tokens = post_token(code_data(code)).json()
        profile = api_get("/v1/profile", tokens["access_token"]).json()
        assert profile["organizationId"] == BAECKEREI["organization_id"]
    with pytest.raises(FakeLexwareError, match="unknown company"):
        fake.approve(authorize_url(), company="Nirgendwo GmbH")


def test_deny_of_a_bad_request_redirects_with_its_error(fake: FakeLexware) -> None:
    assert query(fake.deny(authorize_url(response_type="token")))["error"] == (
        "unsupported_response_type"
    )


def test_deny_redirects_with_access_denied(fake: FakeLexware) -> None:
    params = query(fake.deny(authorize_url()))
    assert params["error"] == "access_denied"
    assert params["state"] == "state-123"
    assert "code" not in params


def test_approve_keeps_a_registered_query_string(fake: FakeLexware) -> None:
    uri = "https://example.test/cb?tenant=a%20b"
    fake.register_client("with-query", secret="s", redirect_uris=[uri])
    callback = fake.approve(authorize_url(client_id="with-query", redirect_uri=uri))
    assert callback.startswith(uri + "&code=")


# -- the consent page ------------------------------------------------------------------------------


def test_consent_page_renders_in_german(fake: FakeLexware) -> None:
    client = Client()
    response = client.get(f"{MOUNT}/oauth2/authorize", authorize_params())
    assert response.status_code == 200
    html = response.content.decode()
    assert "Mit Lexware Office verbinden" in html
    assert 'name="decision" value="allow"' in html and "Zulassen" in html
    assert 'name="decision" value="deny"' in html and "Ablehnen" in html
    for company in DEMO_COMPANIES:
        assert f'type="radio" name="company" value="{company["organization_id"]}"' in html
    assert "Bäckerei Schmidt" in html
    assert "<code>contacts.read</code>" in html
    assert "Testseite (erika)" in html
    assert "csrfmiddlewaretoken" in html
    assert response["X-Frame-Options"] == "DENY"


def test_consent_page_escapes_the_connection_name(fake: FakeLexware) -> None:
    response = Client().get(
        f"{MOUNT}/oauth2/authorize", authorize_params(connection_name='a "quoted" name')
    )
    assert "a &quot;quoted&quot; name" in response.content.decode()


def test_consent_allow_redirects_with_code_for_the_chosen_company(fake: FakeLexware) -> None:
    client = Client(enforce_csrf_checks=True)
    url = consent_url()
    page = client.get(url)
    token = page.context["csrf_token"]
    response = client.post(
        url,
        {
            "csrfmiddlewaretoken": token,
            "company": BAECKEREI["organization_id"],
            "decision": "allow",
        },
    )
    assert response.status_code == 302
    params = query(response["Location"])
    assert response["Location"].startswith(REDIRECT_URI)
    assert params["state"] == "state-123"
    tokens = post_token(code_data(params["code"])).json()
    profile = api_get("/v1/profile", tokens["access_token"]).json()
    assert profile["companyName"] == BAECKEREI["company_name"]
    assert profile["organizationId"] == BAECKEREI["organization_id"]


def test_consent_deny_redirects_with_access_denied(fake: FakeLexware) -> None:
    client = Client()
    url = consent_url()
    response = client.post(url, {"decision": "deny"})
    assert response.status_code == 302
    params = query(response["Location"])
    assert params == {
        "error": "access_denied",
        "error_description": params["error_description"],
        "state": "state-123",
    }


def test_consent_post_without_csrf_token_is_refused(fake: FakeLexware) -> None:
    client = Client(enforce_csrf_checks=True)
    url = consent_url()
    response = client.post(url, {"company": TESTFIRMA["organization_id"], "decision": "allow"})
    assert response.status_code == 403
    assert fake.count("authorize") == 0


@pytest.mark.parametrize(
    "form",
    [{"decision": "allow"}, {"decision": "allow", "company": "nope"}, {"decision": "maybe"}],
    ids=["no-company", "unknown-company", "unknown-decision"],
)
def test_consent_post_with_bad_form_shows_the_page_again(
    fake: FakeLexware, form: dict[str, str]
) -> None:
    url = consent_url()
    response = Client().post(url, form)
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert fake.count("authorize") == 0


def test_consent_post_revalidates_the_request(fake: FakeLexware) -> None:
    url = consent_url(redirect_uri="http://evil.test/")
    response = Client().post(url, {"company": TESTFIRMA["organization_id"], "decision": "allow"})
    assert response.status_code == 400
    assert "Location" not in response
    url = consent_url(code_challenge_method="plain")
    response = Client().post(url, {"company": TESTFIRMA["organization_id"], "decision": "allow"})
    assert query(response["Location"])["error"] == "invalid_request"


# -- token endpoint: code exchange -----------------------------------------------------------------


def test_token_response_shape(fake: FakeLexware) -> None:
    response = post_token(code_data(get_code(fake)))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
    assert body["expires_in"] == 14399
    assert body["token_type"] == "Bearer"
    assert len(body["refresh_token"]) == 128
    assert len(body["access_token"]) <= 4096
    assert body["scope"] == "read"  # coarse, not the fine-grained list
    assert response.headers["Cache-Control"] == "no-store"
    assert fake.count("token") == 1


def assert_code_spent(code: str) -> None:
    # Lexware: any error during the code exchange consumes the code.
    retry = post_token(code_data(code))
    assert retry.status_code == 400
    assert oauth_error(retry) == "invalid_grant"


@pytest.mark.parametrize(
    ("overrides", "auth", "headers"),
    [
        pytest.param(
            {"client_id": CLIENT_ID, "client_secret": SECRET}, None, {}, id="credentials-in-body"
        ),
        pytest.param({"client_secret": SECRET}, (CLIENT_ID, SECRET), {}, id="secret-in-body-too"),
        pytest.param({}, (CLIENT_ID, "wrong"), {}, id="wrong-secret"),
        pytest.param({}, ("nobody", SECRET), {}, id="unknown-client"),
        pytest.param({}, None, {}, id="no-client-auth"),
        pytest.param({"client_id": CLIENT_ID}, None, {}, id="client-id-only-for-confidential"),
        pytest.param({"client_id": OTHER_ID}, (CLIENT_ID, SECRET), {}, id="other-body-client-id"),
        pytest.param({}, None, {"Authorization": "Basic not-base64!"}, id="malformed-basic"),
        pytest.param({}, None, {"Authorization": "Bearer abc"}, id="bearer-instead-of-basic"),
    ],
)
def test_token_refuses_bad_client_authentication_and_spends_the_code(
    fake: FakeLexware,
    overrides: dict[str, str],
    auth: tuple[str, str] | None,
    headers: dict[str, str],
) -> None:
    code = get_code(fake)
    response = post_token(code_data(code, **overrides), auth=auth, headers=headers)
    assert response.status_code == 401
    assert oauth_error(response) == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert_code_spent(code)
    assert fake.count("token") == 0


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"redirect_uri": "http://evil.test/"}, "invalid_grant", id="other-redirect"),
        pytest.param({"redirect_uri": REDIRECT_URI + "/"}, "invalid_grant", id="extra-slash"),
        pytest.param({"redirect_uri": None}, "invalid_request", id="missing-redirect-uri"),
        pytest.param({"code_verifier": LEXWARE_VERIFIER}, "invalid_grant", id="wrong-verifier"),
        pytest.param({"code_verifier": RFC_CHALLENGE}, "invalid_grant", id="challenge-as-verifier"),
        pytest.param({"code_verifier": "a" * 42}, "invalid_request", id="short-verifier"),
        pytest.param({"code_verifier": "a" * 129}, "invalid_request", id="long-verifier"),
        pytest.param({"code_verifier": "a" * 42 + "+"}, "invalid_request", id="bad-characters"),
        pytest.param({"code_verifier": None}, "invalid_request", id="missing-verifier"),
        pytest.param({"grant_type": None}, "invalid_request", id="missing-grant-type"),
    ],
)
def test_token_refuses_a_bad_exchange_and_spends_the_code(
    fake: FakeLexware, overrides: dict[str, str | None], error: str
) -> None:
    code = get_code(fake)
    response = post_token(code_data(code, **overrides))
    assert response.status_code == 400
    assert oauth_error(response) == error
    assert_code_spent(code)
    assert fake.count("token") == 0


def test_token_code_of_another_client_is_invalid_grant_and_spent(fake: FakeLexware) -> None:
    code = get_code(fake)
    response = post_token(code_data(code), auth=(OTHER_ID, OTHER_SECRET))
    assert oauth_error(response) == "invalid_grant"
    assert_code_spent(code)


def test_token_repeated_parameter_is_invalid_request_and_spends_the_code(
    fake: FakeLexware,
) -> None:
    code = get_code(fake)
    pairs = [*code_data(code).items(), ("redirect_uri", REDIRECT_URI)]
    response = requests.post(lexoffice_settings.TOKEN_URL, data=pairs, auth=(CLIENT_ID, SECRET))
    assert oauth_error(response) == "invalid_request"
    assert_code_spent(code)


def test_token_unknown_code_is_invalid_grant(fake: FakeLexware) -> None:
    response = post_token(code_data("not-a-code"))
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_grant"


def test_token_json_body_is_refused_and_the_code_stays_usable(fake: FakeLexware) -> None:
    code = get_code(fake)
    url = lexoffice_settings.TOKEN_URL
    response = requests.post(url, json=code_data(code), auth=(CLIENT_ID, SECRET))
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_request"
    assert post_token(code_data(code)).status_code == 200  # never presented in a form body


def test_token_parameters_in_the_url_are_refused_and_the_code_stays_usable(
    fake: FakeLexware,
) -> None:
    code = get_code(fake)
    url = f"{lexoffice_settings.TOKEN_URL}?{urlencode(code_data(code))}"
    response = requests.post(url, data={"x": "1"}, auth=(CLIENT_ID, SECRET))
    assert oauth_error(response) == "invalid_request"
    assert post_token(code_data(code)).status_code == 200


def test_token_code_is_single_use(fake: FakeLexware) -> None:
    code = get_code(fake)
    assert post_token(code_data(code)).status_code == 200
    reused = post_token(code_data(code))
    assert reused.status_code == 400
    assert oauth_error(reused) == "invalid_grant"


def test_token_code_is_single_use_under_concurrency(fake: FakeLexware) -> None:
    code = get_code(fake)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: post_token(code_data(code)).status_code, range(8)))
    assert sorted(statuses) == [200] + [400] * 7
    assert fake.count("token") == 1


@pytest.mark.parametrize(("age", "status"), [(299, 200), (301, 400)], ids=["fresh", "expired"])
def test_token_code_expires_after_five_minutes(
    fake: FakeLexware, frozen_clock: Callable[[float], None], age: int, status: int
) -> None:
    code = get_code(fake)
    frozen_clock(age)
    response = post_token(code_data(code))
    assert response.status_code == status
    if status == 400:
        assert oauth_error(response) == "invalid_grant"


@pytest.mark.parametrize(
    "grant_type",
    [
        "password",
        "client_credentials",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ],
)
def test_token_unsupported_grant_types(fake: FakeLexware, grant_type: str) -> None:
    data = {"grant_type": grant_type, "username": "erika", "password": "x", "scope": "profile.read"}
    response = post_token(data)
    assert response.status_code == 400
    assert oauth_error(response) == "unsupported_grant_type"


def test_public_client_sends_client_id_in_the_body(fake: FakeLexware) -> None:
    code = get_code(fake, client_id=PUBLIC_ID)
    response = post_token({**code_data(code), "client_id": PUBLIC_ID}, auth=None)
    assert response.status_code == 200, response.text
    tokens = response.json()
    rotated = post_token(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": PUBLIC_ID,
        },
        auth=None,
    )
    assert rotated.status_code == 200


def test_public_client_may_not_use_basic_with_empty_secret(fake: FakeLexware) -> None:
    code = get_code(fake, client_id=PUBLIC_ID)
    response = post_token(code_data(code), auth=(PUBLIC_ID, ""))
    assert response.status_code == 401


def test_basic_auth_with_matching_client_id_in_body_is_fine(fake: FakeLexware) -> None:
    response = post_token({**code_data(get_code(fake)), "client_id": CLIENT_ID})
    assert response.status_code == 200


def test_token_endpoint_needs_post(fake: FakeLexware) -> None:
    response = Client().get(f"{MOUNT}/oauth2/token")
    assert response.status_code == 405


def test_token_endpoint_is_csrf_exempt_over_http(fake: FakeLexware) -> None:
    code = get_code(fake)
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    response = Client(enforce_csrf_checks=True).post(
        f"{MOUNT}/oauth2/token",
        urlencode(code_data(code)),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


# -- refresh ---------------------------------------------------------------------------------------


def test_refresh_rotates_both_tokens(fake: FakeLexware) -> None:
    tokens = connect(fake)
    connection_id = fake.connection_id_for(tokens["refresh_token"])
    response = refresh(tokens["refresh_token"])
    assert response.status_code == 200
    new = response.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert len(new["refresh_token"]) == 128
    assert new["access_token"] != tokens["access_token"]
    assert response.headers["Cache-Control"] == "no-store"
    # The old refresh token is dead, and so is the old access token.
    assert api_get("/v1/profile", tokens["access_token"]).status_code == 401
    assert api_get("/v1/profile", new["access_token"]).status_code == 200
    assert fake.is_refresh_token_valid(new["refresh_token"])
    assert not fake.is_refresh_token_valid(tokens["refresh_token"])
    assert not fake.is_access_token_valid(tokens["access_token"])
    assert fake.count("refresh") == 1
    assert fake.count("refresh", connection_id=connection_id) == 1
    assert fake.connection_id_for(new["refresh_token"]) == connection_id


def test_a_rotated_refresh_token_presented_again_ends_the_connection(fake: FakeLexware) -> None:
    """LEXOFFICE.md: two concurrent refreshes with the same refresh token break the
    connection. The second one presents a token the first already rotated."""
    tokens = connect(fake)
    new = refresh(tokens["refresh_token"]).json()
    again = refresh(tokens["refresh_token"])
    assert (again.status_code, oauth_error(again)) == (400, "invalid_grant")
    assert not fake.is_refresh_token_valid(new["refresh_token"])
    assert api_get("/v1/profile", new["access_token"]).status_code == 401
    assert oauth_error(refresh(new["refresh_token"])) == "invalid_grant"
    assert fake.live_grants() == []


def test_concurrent_refreshes_rotate_exactly_once_and_break_the_connection(
    fake: FakeLexware,
) -> None:
    tokens = connect(fake)
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses_ = list(pool.map(lambda _: refresh(tokens["refresh_token"]), range(8)))
    statuses = sorted(response.status_code for response in responses_)
    assert statuses == [200] + [400] * 7
    assert fake.count("refresh") == 1
    (won,) = [response.json() for response in responses_ if response.status_code == 200]
    assert not fake.is_refresh_token_valid(won["refresh_token"])  # as at Lexware


def test_a_connection_ended_while_it_rotates_stays_ended(
    fake: FakeLexware, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = connect(fake)
    connection_id = fake.connection_id_for(tokens["refresh_token"])
    rotate = clock.FakeState._new_tokens
    ender = threading.Thread(target=fake.revoke_connection, args=(connection_id,))

    def user_ends_it_meanwhile(self: Any, grant: Any) -> dict[str, Any]:
        ender.start()  # "Verbindung trennen", while Lexware writes the new pair
        ender.join(timeout=0.2)
        return rotate(self, grant)

    monkeypatch.setattr(clock.FakeState, "_new_tokens", user_ends_it_meanwhile)
    new = refresh(tokens["refresh_token"]).json()
    ender.join()
    assert not fake.is_refresh_token_valid(new["refresh_token"])
    assert fake.live_grants() == []


def test_refresh_with_secret_in_body_is_invalid_client(fake: FakeLexware) -> None:
    tokens = connect(fake)
    data = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }
    response = post_token(data, auth=None)
    assert response.status_code == 401
    assert oauth_error(response) == "invalid_client"
    assert fake.is_refresh_token_valid(tokens["refresh_token"])


def test_refresh_token_of_another_client_is_invalid_grant(fake: FakeLexware) -> None:
    tokens = connect(fake)
    response = refresh(tokens["refresh_token"], auth=(OTHER_ID, OTHER_SECRET))
    assert oauth_error(response) == "invalid_grant"
    assert fake.is_refresh_token_valid(tokens["refresh_token"])


def test_refresh_cannot_widen_the_scope(fake: FakeLexware) -> None:
    tokens = connect(fake, scope="profile.read")
    data = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "scope": "profile.read invoices.write",
    }
    assert oauth_error(post_token(data)) == "invalid_scope"


def test_issue_tokens_opens_a_connection_without_the_browser(fake: FakeLexware) -> None:
    tokens = fake.issue_tokens(
        CLIENT_ID, organization_id=BAECKEREI["organization_id"], scopes=["profile.read"]
    )
    assert set(tokens) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
    assert (
        api_get("/v1/profile", tokens["access_token"]).json()["companyName"]
        == (BAECKEREI["company_name"])
    )
    assert refresh(tokens["refresh_token"]).status_code == 200
    with pytest.raises(FakeLexwareError):
        fake.issue_tokens(LIMITED_ID, scopes=["contacts.read"])
    with pytest.raises(FakeLexwareError):
        fake.issue_tokens("nobody")


def test_revoke_connection_makes_refresh_invalid_grant(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.revoke_connection(tokens["refresh_token"])
    assert oauth_error(refresh(tokens["refresh_token"])) == "invalid_grant"
    assert api_get("/v1/profile", tokens["access_token"]).status_code == 401


# -- revoke ----------------------------------------------------------------------------------------


def test_revoke_refresh_token_ends_the_connection(fake: FakeLexware) -> None:
    tokens = connect(fake)
    response = revoke(tokens["refresh_token"])
    assert response.status_code == 200
    assert oauth_error(refresh(tokens["refresh_token"])) == "invalid_grant"
    assert api_get("/v1/profile", tokens["access_token"]).status_code == 401
    assert fake.count("revoke") == 1


def test_revoke_unknown_token_answers_200(fake: FakeLexware) -> None:
    assert revoke("never-issued").status_code == 200


def test_revoke_needs_client_auth_and_a_token(fake: FakeLexware) -> None:
    tokens = connect(fake)
    assert revoke(tokens["refresh_token"], auth=None).status_code == 401
    assert revoke(tokens["refresh_token"], auth=(CLIENT_ID, "wrong")).status_code == 401
    response = requests.post(lexoffice_settings.REVOKE_URL, data={}, auth=(CLIENT_ID, SECRET))
    assert oauth_error(response) == "invalid_request"
    assert fake.is_refresh_token_valid(tokens["refresh_token"])


def test_revoke_another_clients_token_does_nothing(fake: FakeLexware) -> None:
    tokens = connect(fake)
    assert revoke(tokens["refresh_token"], auth=(OTHER_ID, OTHER_SECRET)).status_code == 200
    assert fake.is_refresh_token_valid(tokens["refresh_token"])


def test_revoke_access_token_only_kills_that_token(fake: FakeLexware) -> None:
    tokens = connect(fake)
    assert revoke(tokens["access_token"]).status_code == 200
    assert api_get("/v1/profile", tokens["access_token"]).status_code == 401
    assert refresh(tokens["refresh_token"]).status_code == 200


# -- the API -------------------------------------------------------------------------------------


def test_profile_shape(fake: FakeLexware) -> None:
    tokens = connect(fake)
    response = api_get("/v1/profile", tokens["access_token"])
    assert response.status_code == 200
    profile = response.json()
    assert set(profile) == {
        "organizationId",
        "companyName",
        "connectionId",
        "created",
        "businessFeatures",
        "features",
        "subscriptionStatus",
        "taxType",
        "smallBusiness",
    }
    assert profile["organizationId"] == "aa93e8a8-2aa3-470b-b914-caad8a255dd8"
    assert profile["companyName"] == "Testfirma GmbH"
    assert profile["connectionId"] == fake.connection_id_for(tokens["access_token"])
    assert profile["created"]["userId"] == "1aea5501-3f3e-403d-8492-2dad03016289"
    assert profile["created"]["userName"] == "Frau Erika Musterfrau"
    assert profile["created"]["userEmail"] == "erika.musterfrau@testfirma.de"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", profile["created"]["date"]
    )
    assert profile["businessFeatures"] == ["INVOICING", "INVOICING_PRO", "BOOKKEEPING"]
    assert profile["features"] == ["cashbox"]
    assert profile["subscriptionStatus"] == "active"
    assert profile["taxType"] == "net"
    assert profile["smallBusiness"] is False
    assert fake.count("profile") == 1


def test_connection_id_is_unique_per_grant(fake: FakeLexware) -> None:
    first = api_get("/v1/profile", connect(fake)["access_token"]).json()
    fake.set_rate_limit(None)
    second = api_get("/v1/profile", connect(fake)["access_token"]).json()
    assert first["organizationId"] == second["organizationId"]
    assert first["connectionId"] != second["connectionId"]


def test_added_company_shows_up_in_profile(fake: FakeLexware) -> None:
    company = fake.add_company(
        company_name="Neue Firma UG",
        user_name="Herr Test",
        user_email="test@neu.example",
        tax_type="gross",
        small_business=True,
    )
    callback = fake.approve(authorize_url(), company=company["organization_id"])
    code = query(callback)["code"]
    tokens = post_token(code_data(code)).json()
    profile = api_get("/v1/profile", tokens["access_token"]).json()
    assert profile["companyName"] == "Neue Firma UG"
    assert profile["organizationId"] == company["organization_id"]
    assert profile["taxType"] == "gross"
    assert profile["smallBusiness"] is True


@pytest.mark.parametrize(
    ("scheme", "in_query"),
    [(None, False), (None, True), ("Bearer", True), ("Basic", False)],
    ids=["no-header", "token-in-query", "token-in-query-and-header", "basic-scheme"],
)
def test_api_accepts_the_token_in_a_bearer_header_only(
    fake: FakeLexware, scheme: str | None, in_query: bool
) -> None:
    token = connect(fake)["access_token"]
    headers = {"Authorization": f"{scheme} {token}"} if scheme else {}
    params = {"access_token": token} if in_query else {}
    response = requests.get(lexoffice_settings.PROFILE_URL, headers=headers, params=params)
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_api_refuses_an_unknown_token(fake: FakeLexware) -> None:
    response = api_get("/v1/profile", "unknown")
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_expired_access_token_is_401(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.advance_clock(4 * 3600 + 1)
    assert not fake.is_access_token_valid(tokens["access_token"])
    assert api_get("/v1/profile", tokens["access_token"]).status_code == 401
    assert refresh(tokens["refresh_token"]).status_code == 200  # the refresh token lives on


def test_invalidated_access_token_is_401_and_refresh_recovers(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.invalidate_access_token(tokens["access_token"])
    assert api_get("/v1/profile", tokens["access_token"]).json() == {"message": "Unauthorized"}
    new = refresh(tokens["refresh_token"]).json()
    assert api_get("/v1/profile", new["access_token"]).status_code == 200


def test_missing_scope_is_403(fake: FakeLexware) -> None:
    tokens = connect(fake, scope="contacts.read")
    assert api_get("/v1/profile", tokens["access_token"]).status_code == 403
    fake.set_rate_limit(None)
    tokens = connect(fake, scope="profile.read")
    assert api_get("/v1/contacts", tokens["access_token"]).status_code == 403


def test_contacts_are_paged_like_lexware(fake: FakeLexware) -> None:
    fake.set_rate_limit(None)
    token = connect(fake)["access_token"]
    seen: list[str] = []
    page = 0
    while True:
        body = api_get("/v1/contacts", token, params={"page": page, "size": 3}).json()
        assert set(body) == {
            "content",
            "totalPages",
            "totalElements",
            "last",
            "first",
            "size",
            "number",
            "numberOfElements",
        }
        assert body["number"] == page and body["size"] == 3
        assert body["first"] is (page == 0)
        assert body["totalElements"] == 7 and body["totalPages"] == 3
        assert body["numberOfElements"] == len(body["content"])
        seen += [contact["id"] for contact in body["content"]]
        if body["last"]:
            break
        page += 1
    assert page == 2
    assert len(seen) == len(set(seen)) == 7
    default = api_get("/v1/contacts", token).json()
    assert default["size"] == 25 and default["totalPages"] == 1 and default["last"] is True
    beyond = api_get("/v1/contacts", token, params={"page": 9, "size": 3}).json()
    assert beyond["content"] == [] and beyond["numberOfElements"] == 0
    assert fake.count("api") == 3 + 2


@pytest.mark.parametrize(
    "params",
    [{"size": 0}, {"size": 251}, {"page": -1}, {"page": "x"}, {"page": [0, 1]}],
    ids=str,
)
def test_contacts_reject_bad_paging(fake: FakeLexware, params: dict[str, Any]) -> None:
    token = connect(fake)["access_token"]
    assert api_get("/v1/contacts", token, params=params).status_code == 400


def test_added_contacts_are_listed(fake: FakeLexware) -> None:
    token = connect(fake)["access_token"]
    contact = fake.add_contact(TESTFIRMA["organization_id"], "Neukunde GmbH")
    body = api_get("/v1/contacts", token).json()
    assert body["totalElements"] == 8
    assert body["content"][-1] == contact


def test_unknown_api_path_fails_loudly_in_process(fake: FakeLexware) -> None:
    with pytest.raises(requests.ConnectionError):
        api_get("/v1/invoices", "whatever")


# -- rate limit -----------------------------------------------------------------------------------


def test_rate_limit_answers_429_after_the_burst(
    fake: FakeLexware, frozen_clock: Callable[[float], None]
) -> None:
    fake.set_rate_limit(2.0)  # Lexware's limit; the suite's settings switch it off by default
    token = connect(fake)["access_token"]
    assert api_get("/v1/profile", token).status_code == 200
    assert api_get("/v1/contacts", token).status_code == 200  # one bucket for all endpoints
    limited = api_get("/v1/profile", token)
    assert limited.status_code == 429
    assert limited.json() == {"message": "Too Many Requests"}
    assert "Retry-After" not in limited.headers
    assert not any(name.lower().startswith("x-ratelimit") for name in limited.headers)
    assert fake.count("rate_limited") == 1
    assert fake.count("profile") == 1  # the limited call was not performed
    frozen_clock(0.5)  # 2/s: one token back
    assert api_get("/v1/profile", token).status_code == 200
    assert api_get("/v1/profile", token).status_code == 429


def test_rate_limit_is_per_client(fake: FakeLexware, frozen_clock: Callable[[float], None]) -> None:
    fake.set_rate_limit(2.0)
    mine = connect(fake)["access_token"]
    other = post_token(
        code_data(get_code(fake, client_id=OTHER_ID)), auth=(OTHER_ID, OTHER_SECRET)
    ).json()["access_token"]
    for _ in range(2):
        assert api_get("/v1/profile", mine).status_code == 200
    assert api_get("/v1/profile", mine).status_code == 429
    assert api_get("/v1/profile", other).status_code == 200


def test_rate_limit_configurable_and_disabled(
    fake: FakeLexware, frozen_clock: Callable[[float], None]
) -> None:
    token = connect(fake)["access_token"]
    fake.set_rate_limit(rate=1.0, burst=5)
    assert [api_get("/v1/profile", token).status_code for _ in range(6)] == [200] * 5 + [429]
    fake.set_rate_limit(None)
    assert {api_get("/v1/profile", token).status_code for _ in range(10)} == {200}


def test_rate_limit_from_settings(
    fake: FakeLexware, settings: Any, frozen_clock: Callable[[float], None]
) -> None:
    token = connect(fake)["access_token"]
    settings.LEXOFFICE_FAKE_RATE_LIMIT = None
    assert {api_get("/v1/profile", token).status_code for _ in range(5)} == {200}
    settings.LEXOFFICE_FAKE_RATE_LIMIT = 1
    settings.LEXOFFICE_FAKE_RATE_LIMIT_BURST = 3
    assert [api_get("/v1/profile", token).status_code for _ in range(4)] == [200] * 3 + [429]


def test_rate_limit_default_is_lexwares(
    fake: FakeLexware, settings: Any, frozen_clock: Callable[[float], None]
) -> None:
    if hasattr(settings, "LEXOFFICE_FAKE_RATE_LIMIT"):
        del settings.LEXOFFICE_FAKE_RATE_LIMIT
    token = connect(fake)["access_token"]
    assert [api_get("/v1/profile", token).status_code for _ in range(3)] == [200, 200, 429]


def test_rate_limit_is_one_bucket_under_concurrency(
    fake: FakeLexware, frozen_clock: Callable[[float], None]
) -> None:
    fake.set_rate_limit(rate=2.0, burst=3)
    token = connect(fake)["access_token"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: api_get("/v1/profile", token).status_code, range(12)))
    assert statuses.count(200) == 3
    assert statuses.count(429) == 9


# -- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options", "status", "body"),
    [
        ("server_error", {}, 500, {"message": "Internal Server Error"}),
        ("server_error", {"status": 503}, 503, {"message": "Service Unavailable"}),
        ("server_error", {"status": 504}, 504, {"message": "Endpoint request timed out"}),
        ("rate_limit", {}, 429, {"message": "Too Many Requests"}),
        ("rate_limit_500", {}, 500, {"message": "Internal server error or rate limit exceeded"}),
    ],
)
def test_refresh_transient_faults_answer_and_leave_the_connection(
    fake: FakeLexware, kind: str, options: dict[str, Any], status: int, body: dict[str, str]
) -> None:
    tokens = connect(fake)
    fake.inject("refresh", kind, **options)
    response = refresh(tokens["refresh_token"])
    assert (response.status_code, response.json()) == (status, body)
    assert fake.count("refresh") == 0
    assert refresh(tokens["refresh_token"]).status_code == 200  # one shot, then normal service


def test_refresh_non_json_fault_is_an_html_502(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.inject("refresh", "non_json")
    response = refresh(tokens["refresh_token"])
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()
    assert fake.is_refresh_token_valid(tokens["refresh_token"])


def test_refresh_invalid_grant_fault_ends_the_connection(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.inject("refresh", "invalid_grant")
    assert oauth_error(refresh(tokens["refresh_token"])) == "invalid_grant"
    assert not fake.is_refresh_token_valid(tokens["refresh_token"])  # as Lexware means it


def test_refresh_unauthorized_client_fault_leaves_the_connection(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.inject("refresh", "unauthorized_client")
    response = refresh(tokens["refresh_token"])
    assert response.status_code == 400
    assert oauth_error(response) == "unauthorized_client"
    assert fake.is_refresh_token_valid(tokens["refresh_token"])


def test_refresh_slow_fault_answers_late_and_rotates(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.inject("refresh", "slow", seconds=0.05)
    started = time.monotonic()
    assert refresh(tokens["refresh_token"]).status_code == 200
    assert time.monotonic() - started >= 0.05
    assert fake.count("refresh") == 1


def test_refresh_lost_response_rotates_but_the_client_never_hears(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.inject("refresh", "lost_response")
    with pytest.raises(requests.ConnectionError):
        refresh(tokens["refresh_token"])
    assert fake.count("refresh") == 1
    assert not fake.is_refresh_token_valid(tokens["refresh_token"])
    assert oauth_error(refresh(tokens["refresh_token"])) == "invalid_grant"


def test_refresh_connection_reset_changes_nothing(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.inject("refresh", "connection_reset")
    with pytest.raises(requests.ConnectionError):
        refresh(tokens["refresh_token"])
    assert fake.count("refresh") == 0
    assert fake.is_refresh_token_valid(tokens["refresh_token"])


def test_slow_fault_beyond_the_client_timeout_is_a_read_timeout(
    fake: FakeLexware, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(clock, "sleep", slept.append)
    tokens = connect(fake)
    fake.inject("refresh", "slow", seconds=60)
    with pytest.raises(requests.ReadTimeout):
        post_token(
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            timeout=(5, 30),
        )
    assert slept == [30.0]
    assert fake.count("refresh") == 1  # processed anyway, like a real slow server


def test_fault_times(fake: FakeLexware) -> None:
    token = connect(fake)["access_token"]
    fake.set_rate_limit(None)
    fake.inject("profile", "server_error", times=2, status=503)
    statuses = [api_get("/v1/profile", token).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    fake.inject("profile", "rate_limit", times=None)
    assert {api_get("/v1/profile", token).status_code for _ in range(4)} == {429}
    fake.clear_faults()
    assert api_get("/v1/profile", token).status_code == 200


def test_fault_on_code_exchange_consumes_the_code(fake: FakeLexware) -> None:
    code = get_code(fake)
    fake.inject("token", "server_error")
    assert post_token(code_data(code)).status_code == 500
    assert oauth_error(post_token(code_data(code))) == "invalid_grant"


def test_token_fault_does_not_hit_refresh(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.inject("token", "server_error")
    assert refresh(tokens["refresh_token"]).status_code == 200


def test_lost_response_on_code_exchange(fake: FakeLexware) -> None:
    code = get_code(fake)
    fake.inject("token", "lost_response")
    with pytest.raises(requests.ConnectionError):
        post_token(code_data(code))
    assert fake.count("token") == 1


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("server_error", 500),
        ("non_json", 502),
        ("rate_limit", 429),
        ("rate_limit_500", 500),
        ("unauthorized_client", 400),
    ],
)
def test_revoke_faults(fake: FakeLexware, kind: str, status: int) -> None:
    tokens = connect(fake)
    fake.inject("revoke", kind)
    assert revoke(tokens["refresh_token"]).status_code == status
    assert fake.is_refresh_token_valid(tokens["refresh_token"])


def test_revoke_lost_response_still_revokes(fake: FakeLexware) -> None:
    tokens = connect(fake)
    fake.inject("revoke", "lost_response")
    with pytest.raises(requests.ConnectionError):
        revoke(tokens["refresh_token"])
    assert not fake.is_refresh_token_valid(tokens["refresh_token"])


@pytest.mark.parametrize("endpoint", ["profile", "api"])
@pytest.mark.parametrize(
    ("kind", "status"),
    [("server_error", 500), ("non_json", 502), ("rate_limit", 429), ("rate_limit_500", 500)],
)
def test_api_faults(fake: FakeLexware, endpoint: str, kind: str, status: int) -> None:
    token = connect(fake)["access_token"]
    path = "/v1/profile" if endpoint == "profile" else "/v1/contacts"
    other = "/v1/contacts" if endpoint == "profile" else "/v1/profile"
    fake.inject(endpoint, kind)
    assert api_get(path, token).status_code == status
    fake.inject(endpoint, kind)
    assert api_get(other, token).status_code == 200  # faults are per endpoint


@pytest.mark.parametrize("kind", ["lost_response", "connection_reset"])
def test_api_connection_faults_in_process(fake: FakeLexware, kind: str) -> None:
    token = connect(fake)["access_token"]
    fake.inject("profile", kind)
    with pytest.raises(requests.ConnectionError):
        api_get("/v1/profile", token)
    assert fake.count("profile") == (1 if kind == "lost_response" else 0)


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("lost_response", 504, b'{"message": "Endpoint request timed out"}'),
        ("connection_reset", 502, b""),
    ],
)
def test_connection_faults_over_http(
    fake: FakeLexware, kind: str, status: int, body: bytes
) -> None:
    tokens = connect(fake)
    fake.inject("refresh", kind)
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    response = Client().post(
        f"{MOUNT}/oauth2/token",
        urlencode({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert response.status_code == status
    assert response.content == body
    assert fake.count("refresh") == (1 if kind == "lost_response" else 0)


@pytest.mark.parametrize(
    ("kind", "status"), [("server_error", 500), ("non_json", 502), ("rate_limit", 429)]
)
def test_authorize_faults(fake: FakeLexware, kind: str, status: int) -> None:
    fake.inject("authorize", kind)
    with pytest.raises(InjectedFaultError) as excinfo:
        fake.approve(authorize_url())
    assert excinfo.value.status == status
    fake.inject("authorize", kind)
    assert Client().get(f"{MOUNT}/oauth2/authorize", authorize_params()).status_code == status
    assert "code" in query(fake.approve(authorize_url()))


def test_authorize_unauthorized_client_fault_redirects(fake: FakeLexware) -> None:
    fake.inject("authorize", "unauthorized_client", times=2)
    assert query(fake.approve(authorize_url()))["error"] == "unauthorized_client"
    response = Client().get(f"{MOUNT}/oauth2/authorize", authorize_params())
    assert query(response["Location"])["error"] == "unauthorized_client"


@pytest.mark.parametrize(
    ("endpoint", "kind", "options"),
    [
        ("nowhere", "server_error", {}),
        ("refresh", "explode", {}),
        ("profile", "invalid_grant", {}),
        ("authorize", "lost_response", {}),
        ("refresh", "server_error", {"status": 404}),
        ("refresh", "rate_limit", {"seconds": 1}),
        ("refresh", "server_error", {"times": 0}),
    ],
)
def test_inject_rejects_nonsense(
    fake: FakeLexware, endpoint: str, kind: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        fake.inject(endpoint, kind, **options)


# -- shared state --------------------------------------------------------------------------------


def test_state_is_shared_between_instances_and_reset_clears_it(fake: FakeLexware) -> None:
    tokens = connect(fake)
    other = FakeLexware()  # e.g. another process with the same cache
    assert other.is_refresh_token_valid(tokens["refresh_token"])
    other.inject("refresh", "server_error")
    assert refresh(tokens["refresh_token"]).status_code == 500
    assert other.count("token") == 1
    other.reset()
    assert not fake.is_refresh_token_valid(tokens["refresh_token"])
    assert fake.count("token") == 0
    with pytest.raises(AuthorizeErrorPage):
        fake.approve(authorize_url())  # run-time clients are gone too


def test_clients_from_settings(settings: Any) -> None:
    settings.LEXOFFICE_FAKE_CLIENTS = {
        "settings-client": {"secret": "s3", "redirect_uris": [REDIRECT_URI]}
    }
    with FakeLexware.activate() as fake:
        code = get_code(fake, client_id="settings-client")
        assert post_token(code_data(code), auth=("settings-client", "s3")).status_code == 200


def test_works_on_a_cache_without_atomic_incr(tmp_path: Any, settings: Any) -> None:
    # The file-based cache implements incr as get + set: counters go through the state lock.
    settings.CACHES = {
        **settings.CACHES,
        "files": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path),
        },
    }
    settings.LEXOFFICE_FAKE_CACHE = "files"
    with FakeLexware.activate() as fake:
        fake.register_client(CLIENT_ID, secret=SECRET, redirect_uris=[REDIRECT_URI])
        tokens = connect(fake)
        assert refresh(tokens["refresh_token"]).status_code == 200
        assert oauth_error(refresh(tokens["refresh_token"])) == "invalid_grant"
        fake.inject("profile", "server_error", times=1)
        assert api_get("/v1/profile", tokens["access_token"]).status_code == 500
        assert (fake.count("token"), fake.count("refresh")) == (1, 1)
        # Threads of one process (runserver) still count exactly.
        access = refresh(connect(fake)["refresh_token"]).json()["access_token"]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: api_get("/v1/profile", access), range(16)))
        assert fake.count("profile") == 16


def test_set_up_and_inspection_reject_nonsense(fake: FakeLexware) -> None:
    with pytest.raises(ValueError, match="unknown counter"):
        fake.count("everything")
    with pytest.raises(ValueError, match="refresh counter only"):
        fake.count("token", connection_id="abc")
    with pytest.raises(ValueError, match="client_id"):
        fake.register_client("", redirect_uris=[REDIRECT_URI])
    with pytest.raises(ValueError, match="redirect URI"):
        fake.register_client("x", redirect_uris=[])
    with pytest.raises(ValueError, match="unknown Lexware scopes"):
        fake.register_client("x", redirect_uris=["/"], scopes=["openid"])
    with pytest.raises(ValueError, match="tax_type"):
        fake.add_company(company_name="X", user_name="Y", user_email="", tax_type="?")
    with pytest.raises(ValueError, match="rate must be positive"):
        fake.set_rate_limit(rate=0)
    with pytest.raises(ValueError, match="burst"):
        fake.set_rate_limit(rate=2, burst=0)


def test_revoke_connection_refuses_a_token_of_no_live_connection(fake: FakeLexware) -> None:
    with pytest.raises(FakeLexwareError, match="no live connection"):
        fake.revoke_connection("never-issued")


def test_a_missing_parameter_is_invalid_request(fake: FakeLexware) -> None:
    for response in (
        post_token({"grant_type": "authorization_code"}),  # no code
        post_token({"grant_type": "refresh_token"}),  # no refresh_token
        requests.post(lexoffice_settings.REVOKE_URL, data={"x": "1"}, auth=(CLIENT_ID, SECRET)),
    ):
        assert response.status_code == 400
        assert oauth_error(response) == "invalid_request"


def test_a_busy_bucket_answers_429(fake: FakeLexware, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.set_rate_limit(2.0)
    token = connect(fake)["access_token"]
    monkeypatch.setattr(clock, "LOCK_WAIT", 0.0)
    with fake.lock(f"bucket:{CLIENT_ID}"):  # another request holds the bucket
        assert api_get("/v1/profile", token).status_code == 429
    assert fake.count("rate_limited") == 1


# -- over real HTTP --------------------------------------------------------------------------------


def test_over_real_http_with_live_server(live_server: Any, settings: Any) -> None:
    base = f"{live_server.url}{MOUNT}"
    settings.LEXOFFICE_AUTH_BASE_URL = base
    settings.LEXOFFICE_API_BASE_URL = base
    fake = FakeLexware()
    fake.reset()
    try:
        fake.register_client(CLIENT_ID, secret=SECRET, redirect_uris=[REDIRECT_URI])
        session = requests.Session()
        page = session.get(authorize_url(), timeout=5)
        assert page.status_code == 200
        assert "Mit Lexware Office verbinden" in page.text
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf is not None
        consent = session.post(
            authorize_url(),
            data={
                "csrfmiddlewaretoken": csrf.group(1),
                "company": TESTFIRMA["organization_id"],
                "decision": "allow",
            },
            headers={"Referer": authorize_url()},
            allow_redirects=False,
            timeout=5,
        )
        assert consent.status_code == 302
        code = query(consent.headers["Location"])["code"]
        tokens = post_token(code_data(code), timeout=5).json()
        assert api_get("/v1/profile", tokens["access_token"], timeout=5).status_code == 200
        fake.inject("refresh", "lost_response")
        lost = refresh(tokens["refresh_token"])
        assert lost.status_code == 504
        assert lost.json() == {"message": "Endpoint request timed out"}
        assert fake.count("refresh") == 1
    finally:
        fake.reset()


# -- several processes sharing one Redis-backed state ----------------------------------------------

_WORKER = """
import json, sys
import django
from django.conf import settings
settings.configure(
    CACHES={"fake": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                     "LOCATION": sys.argv[1], "KEY_PREFIX": sys.argv[2]}},
    LEXOFFICE_FAKE_CACHE="fake", LEXOFFICE_FAKE_RATE_LIMIT=0.001, LEXOFFICE_FAKE_RATE_LIMIT_BURST=3,
    USE_TZ=True,
)
django.setup()
from django_lexoffice.testing.state import FakeState
state = FakeState()
print("ready", flush=True)
sys.stdin.readline()  # start together
rotated = state.rotate(sys.argv[3], sys.argv[4]) is not None
allowed = sum(state.allow(sys.argv[4]) for _ in range(3))
print(json.dumps({"rotated": rotated, "allowed": allowed}))
"""


@pytest.mark.redis
def test_refresh_and_rate_limit_hold_across_processes(redis_url: str, settings: Any) -> None:
    prefix = f"fake-lexware-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        **settings.CACHES,
        "fake": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": prefix,
        },
    }
    settings.LEXOFFICE_FAKE_CACHE = "fake"
    settings.LEXOFFICE_FAKE_RATE_LIMIT = 0.001
    settings.LEXOFFICE_FAKE_RATE_LIMIT_BURST = 3
    fake = FakeLexware()
    fake.reset()
    try:
        fake.register_client(CLIENT_ID, secret=SECRET, redirect_uris=[REDIRECT_URI])
        tokens = fake.issue_tokens(CLIENT_ID, scopes=["profile.read"])
        args = [redis_url, prefix, tokens["refresh_token"], CLIENT_ID]
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        outputs = [worker.communicate("go\n", timeout=60)[0] for worker in workers]
        results = [json.loads(output) for output in outputs]
        assert sum(result["rotated"] for result in results) == 1
        assert fake.count("refresh") == 1
        assert not fake.is_refresh_token_valid(tokens["refresh_token"])
        # One bucket of 3 for all six processes (the rate refills ~nothing meanwhile).
        assert sum(result["allowed"] for result in results) == 3
        assert fake.count("rate_limited") == 6 * 3 - 3
    finally:
        fake.reset()
        server = redis.Redis.from_url(redis_url)
        for key in server.scan_iter(f"{prefix}:*"):
            server.delete(key)
