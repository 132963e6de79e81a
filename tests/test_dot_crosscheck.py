"""Cross-check against a real OAuth 2 server: django-oauth-toolkit, configured like Lexware.

The fake Lexware is written by us; these tests keep it (and the app) honest against an
independent implementation. DOT runs in a subprocess (``tests/dot_server``) with PKCE required
and S256 only, rotating refresh tokens with reuse protection, and a confidential client using
client_secret_basic with one exact redirect URI. Only ``/v1/profile`` is a stub (behind DOT's
bearer-token validation). The app under test runs in this process and talks to DOT over real
HTTP: no ``responses`` mock is active here.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from django_lexoffice import tokens
from django_lexoffice.exceptions import ReauthorizationRequired
from django_lexoffice.models import LexofficeConnection
from tests.dot_server.constants import COMPANY_NAME, READY_PATH, USER_EMAIL
from tests.dot_server.live import child_env, free_port, run_checked, start_server

pytestmark = pytest.mark.django_db

#: The callback URL the Django test client's requests produce (host ``testserver``).
REDIRECT_URI = "http://testserver/lexoffice/callback/"
TIMEOUT = 10


@dataclass(frozen=True)
class DotServer:
    """The running DOT server and the credentials registered in it."""

    url: str
    client_id: str
    client_secret: str
    username: str
    password: str


@pytest.fixture(scope="module")
def dot_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DotServer]:
    """django-oauth-toolkit on a free port, with a user and a confidential client."""
    tmp = tmp_path_factory.mktemp("dot")
    port = free_port()
    server = DotServer(
        url=f"http://127.0.0.1:{port}",
        client_id="lexoffice-crosscheck-" + secrets.token_hex(8),
        client_secret=secrets.token_urlsafe(32),
        username="erika",
        password=secrets.token_urlsafe(16),
    )
    env = child_env(
        DJANGO_SETTINGS_MODULE="tests.dot_server.settings",
        DOT_SERVER_DB=str(tmp / "dot.sqlite3"),
        DOT_USERNAME=server.username,
        DOT_PASSWORD=server.password,
        DOT_CLIENT_ID=server.client_id,
        DOT_CLIENT_SECRET=server.client_secret,
        DOT_REDIRECT_URI=REDIRECT_URI,
    )
    run_checked(["-m", "tests.dot_server.bootstrap"], env=env, what="Preparing the DOT server")
    process = start_server(
        "The django-oauth-toolkit server",
        ["-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"],
        port=port,
        env=env,
        log_path=tmp / "runserver.log",
        ready_path=READY_PATH,
    )
    try:
        yield server
    finally:
        process.stop()


@pytest.fixture
def dot(settings: Any, dot_server: DotServer) -> DotServer:
    """Point the app at the DOT server (both hosts) with DOT's client credentials."""
    settings.LEXOFFICE_AUTH_BASE_URL = dot_server.url
    settings.LEXOFFICE_API_BASE_URL = dot_server.url
    settings.SOCIAL_AUTH_LEXOFFICE_KEY = dot_server.client_id
    settings.SOCIAL_AUTH_LEXOFFICE_SECRET = dot_server.client_secret
    return dot_server


@pytest.fixture
def resource_owner(dot_server: DotServer) -> Iterator[requests.Session]:
    """The Lexware user's browser: a session logged in at DOT."""
    login_url = dot_server.url + "/accounts/login/"
    with requests.Session() as browser:
        with browser.get(login_url, timeout=TIMEOUT) as page:
            assert page.status_code == 200
        data = {
            "username": dot_server.username,
            "password": dot_server.password,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            "next": READY_PATH,
        }
        with browser.post(login_url, data=data, allow_redirects=False, timeout=TIMEOUT) as login:
            assert login.status_code == 302, "could not log in at DOT"
        yield browser


# -- helpers -------------------------------------------------------------------------------


class _FormFields(HTMLParser):
    """The ``<input>`` names and values of the form with a given id."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.inside = attributes.get("id") == self.form_id
        elif tag == "input" and self.inside and attributes.get("name"):
            if attributes.get("type") != "submit":
                self.fields[str(attributes["name"])] = attributes.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def query(url: str) -> dict[str, str]:
    """A URL's query parameters (first value of each)."""
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def authorize(browser: requests.Session, authorize_url: str, *, allow: bool = True) -> str:
    """Open DOT's consent page as the logged-in user and answer it; return the redirect URL.

    A request DOT refuses before consent (e.g. no PKCE challenge) redirects at once.
    """
    with browser.get(authorize_url, allow_redirects=False, timeout=TIMEOUT) as page:
        if page.status_code == 302:
            return page.headers["Location"]
        assert page.status_code == 200, f"DOT answered {page.status_code}: {page.text[:500]}"
        parser = _FormFields("authorizationForm")
        parser.feed(page.text)
    assert "csrfmiddlewaretoken" in parser.fields, "DOT's consent form was not shown"
    fields = dict(parser.fields)
    if allow:
        fields["allow"] = "Authorize"
    with browser.post(authorize_url, data=fields, allow_redirects=False, timeout=TIMEOUT) as answer:
        assert answer.status_code == 302, f"DOT answered {answer.status_code}: {answer.text[:500]}"
        return answer.headers["Location"]


def connect(client: Any, dot: DotServer, browser: requests.Session) -> LexofficeConnection:
    """Run the whole flow: the app's login view, consent at DOT, the app's callback."""
    begin = client.post("/lexoffice/login/")
    assert begin.status_code == 302, begin.content[:500]
    location = authorize(browser, begin["Location"])
    assert location.startswith(REDIRECT_URI + "?"), location
    callback = client.get("/lexoffice/callback/", query(location))
    assert callback.status_code == 302, callback.content.decode()[:2000]
    assert callback["Location"] == "/lexoffice/connections/"
    return LexofficeConnection.objects.get()


def token_request(dot: DotServer, data: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST to DOT's token endpoint with client_secret_basic; return status and JSON body."""
    with requests.post(
        dot.url + "/oauth2/token",
        data=data,
        auth=(dot.client_id, dot.client_secret),
        timeout=TIMEOUT,
    ) as response:
        return response.status_code, response.json()


def profile_status(dot: DotServer, access_token: str) -> int:
    """The status ``/v1/profile`` answers for ``access_token``."""
    headers = {"Authorization": f"Bearer {access_token}"}
    with requests.get(dot.url + "/v1/profile", headers=headers, timeout=TIMEOUT) as response:
        return response.status_code


def authorize_url(dot: DotServer, **pkce: str) -> str:
    """An authorization request for DOT's client with the given PKCE parameters."""
    params = {
        "client_id": dot.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "state": secrets.token_urlsafe(16),
        "scope": "profile.read",
        **pkce,
    }
    return f"{dot.url}/oauth2/authorize?{urlencode(params)}"


# -- tests ---------------------------------------------------------------------------------


def test_dot_code_flow_with_pkce_and_basic_auth_stores_connection(
    client: Any, dot: DotServer, resource_owner: requests.Session
) -> None:
    begin = client.post("/lexoffice/login/")
    authorize_request = begin["Location"]
    assert authorize_request.startswith(dot.url + "/oauth2/authorize?")
    params = query(authorize_request)
    assert params["client_id"] == dot.client_id
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["code_challenge_method"] == "S256"

    location = authorize(resource_owner, authorize_request)
    redirect = query(location)
    assert redirect["state"] == params["state"] and redirect["code"]
    callback = client.get("/lexoffice/callback/", redirect)

    assert callback.status_code == 302 and callback["Location"] == "/lexoffice/connections/"
    connection = LexofficeConnection.objects.get()
    assert connection.status == LexofficeConnection.Status.ACTIVE
    assert connection.company_name == COMPANY_NAME
    assert connection.lexoffice_user_email == USER_EMAIL
    assert connection.expires_at is not None
    assert profile_status(dot, connection.access_token) == 200
    # DOT's code is single-use: the replayed callback stores nothing new.
    assert client.get("/lexoffice/callback/", redirect).status_code == 400
    assert LexofficeConnection.objects.count() == 1


def test_dot_refresh_rotates_twice_and_revoke_ends_the_grant(
    client: Any, dot: DotServer, resource_owner: requests.Session
) -> None:
    connection = connect(client, dot, resource_owner)
    seen_refresh = [connection.refresh_token]
    seen_access = [connection.access_token]

    for _ in range(2):  # the second refresh only works with the rotated token
        result = tokens.refresh(connection, force=True)
        assert result.refreshed
        connection.refresh_from_db()
        assert connection.refresh_token not in seen_refresh
        assert connection.access_token not in seen_access
        assert profile_status(dot, seen_access[-1]) == 401  # DOT dropped the old access token
        assert profile_status(dot, connection.access_token) == 200
        seen_refresh.append(connection.refresh_token)
        seen_access.append(connection.access_token)

    assert tokens.revoke(connection) is True
    connection.refresh_from_db()
    assert connection.status == LexofficeConnection.Status.REVOKED
    assert connection.refresh_token == "" and connection.access_token == ""
    status, body = token_request(
        dot, {"grant_type": "refresh_token", "refresh_token": seen_refresh[-1]}
    )
    assert (status, body.get("error")) == (400, "invalid_grant")
    assert profile_status(dot, seen_access[-1]) == 401


def test_dot_reused_refresh_token_is_refused_and_connection_needs_reauthorization(
    client: Any, dot: DotServer, resource_owner: requests.Session
) -> None:
    connection = connect(client, dot, resource_owner)
    old_refresh_token = connection.refresh_token
    tokens.refresh(connection, force=True)
    connection.refresh_from_db()
    assert connection.refresh_token != old_refresh_token

    status, body = token_request(
        dot, {"grant_type": "refresh_token", "refresh_token": old_refresh_token}
    )
    assert (status, body.get("error")) == (400, "invalid_grant")
    assert "access_token" not in body

    # Reuse protection revoked the whole token family, so the app's current token is dead too:
    # the app must ask the user to connect again instead of retrying.
    with pytest.raises(ReauthorizationRequired):
        tokens.refresh(connection, force=True)
    connection.refresh_from_db()
    assert connection.status == LexofficeConnection.Status.REAUTHORIZATION_REQUIRED


def test_dot_server_refuses_plain_and_missing_pkce_challenge(
    dot_server: DotServer, resource_owner: requests.Session
) -> None:
    verifier = secrets.token_urlsafe(48)
    s256 = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")

    accepted = query(
        authorize(
            resource_owner,
            authorize_url(dot_server, code_challenge=s256.decode(), code_challenge_method="S256"),
        )
    )
    assert accepted.get("code") and "error" not in accepted  # the control: S256 works

    plain = query(
        authorize(
            resource_owner,
            authorize_url(dot_server, code_challenge=verifier, code_challenge_method="plain"),
        )
    )
    assert "code" not in plain and plain.get("error") == "invalid_request"

    missing = query(authorize(resource_owner, authorize_url(dot_server)))
    assert "code" not in missing and missing.get("error") == "invalid_request"
