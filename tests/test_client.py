"""``LexofficeClient``: fresh tokens, the 401 path, retries and backoff, the shared rate limit,
pagination, and no token anywhere but the ``Authorization`` header.

Three kinds of Lexware stand-ins: the strict fake (``django_lexoffice.testing``) for the token
lifecycle and the paged API; ``responses`` for single answers the fake does not serve; and a
small real HTTP server on 127.0.0.1 where urllib3's ``Retry`` must really run (``responses``
never calls ``Retry.sleep`` and cannot time out), so backoff, timeouts and refused connections
are the real thing.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import responses
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.utils import timezone
from responses import matchers

from django_lexoffice import client as client_module
from django_lexoffice import tokens
from django_lexoffice.client import LexofficeClient
from django_lexoffice.conf import settings as lexoffice_settings
from django_lexoffice.exceptions import (
    ConnectionNotActive,
    ConnectionNotFound,
    LexofficeAPIError,
    MultipleConnections,
    NoResponse,
    RateLimitTimeout,
    ReauthorizationRequired,
    TransientRefreshError,
)
from django_lexoffice.models import LexofficeConnection
from django_lexoffice.ratelimit import SharedTokenBucket
from django_lexoffice.testing import FakeLexware
from django_lexoffice.testing import state as fake_state

from .conftest import ACCESS_TOKEN, REFRESH_TOKEN
from .lexware_responses import token_response

pytestmark = pytest.mark.django_db

API = "https://api.lexware.io"
PROFILE_URL = f"{API}/v1/profile"
TOKEN_RESPONSE = token_response()


class FakeClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class CountingBucket(SharedTokenBucket):
    """The real bucket, counting how often a token was taken."""

    def __init__(self) -> None:
        super().__init__("counting", rate=1000)
        self.taken = 0

    def acquire(self, max_wait: float | None = None, **kwargs: Any) -> float:
        self.taken += kwargs.get("count", 1)
        return super().acquire(max_wait, **kwargs)


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff waits the client asked for; nobody really sleeps them."""
    waited: list[float] = []
    monkeypatch.setattr(client_module, "_sleep", waited.append)
    return waited


# -- the fake Lexware --------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeLexware]:
    with FakeLexware.activate() as fake:
        fake.register_client(
            lexoffice_settings.CLIENT_ID,
            secret=lexoffice_settings.CLIENT_SECRET,
            redirect_uris=["http://testserver/lexoffice/callback/"],
        )
        yield fake


@pytest.fixture
def connect(
    fake: FakeLexware, make_connection: Callable[..., LexofficeConnection]
) -> Callable[..., LexofficeConnection]:
    """A connection holding tokens the fake really issued."""

    def connect(**fields: Any) -> LexofficeConnection:
        company = fake.companies()[0]
        issued = fake.issue_tokens(lexoffice_settings.CLIENT_ID)
        values = {
            "organization_id": company["organization_id"],
            "company_name": company["company_name"],
            "connection_id": fake.connection_id_for(issued["access_token"]),
            "access_token": issued["access_token"],
            "refresh_token": issued["refresh_token"],
            "expires_at": timezone.now() + timedelta(seconds=issued["expires_in"]),
            **fields,
        }
        return make_connection(**values)

    return connect


@pytest.fixture
def connection(connect: Callable[..., LexofficeConnection]) -> LexofficeConnection:
    return connect()


def reloaded(connection: LexofficeConnection) -> LexofficeConnection:
    return LexofficeConnection.objects.get(pk=connection.pk)


# -- a real HTTP server for urllib3's retries -------------------------------------------------


class ScriptedServer:
    """Answers each request with the next scripted reply; records what it received."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, Any, float, dict[str, str]]] = []
        self.received: list[dict[str, Any]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = False  # server_close() waits for slow answers to finish
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def reply(
        self,
        status: int,
        body: Any = None,
        *,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.replies.append((status, {} if body is None else body, delay, headers or {}))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                server.received.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                if server.replies:
                    status, data, delay, headers = server.replies.pop(0)
                else:
                    status, data, delay, headers = 500, {"message": "no reply scripted"}, 0, {}
                time.sleep(delay)
                payload = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped waiting (read timeout)

            do_GET = do_POST = do_PUT = do_DELETE = answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def hits(self) -> int:
        return len(self.received)


@pytest.fixture
def server(settings: Any) -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    settings.LEXOFFICE_API_BASE_URL = server.url
    yield server
    server.close()


@pytest.fixture
def api(
    server: ScriptedServer, make_connection: Callable[..., LexofficeConnection]
) -> Iterator[LexofficeClient]:
    """A client of the scripted server, with a fresh token and explicit backoff."""
    with LexofficeClient(
        make_connection(), max_retries=2, backoff_factor=0.5, backoff_jitter=0.5
    ) as client:
        yield client


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- requests: URL, header, timeout ------------------------------------------------------------


def test_sends_the_token_as_bearer_header_only(
    api: LexofficeClient, server: ScriptedServer
) -> None:
    server.reply(200, {"id": "1"})

    api.get("/v1/contacts", params={"page": 0})

    (request,) = server.received
    assert request["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request["path"] == "/v1/contacts?page=0"
    assert request["headers"]["Accept"] == "application/json"
    assert request["headers"]["User-Agent"].startswith("django-lexoffice/")


def test_uses_the_configured_base_url_and_timeout(
    settings: Any, make_connection: Callable[..., LexofficeConnection]
) -> None:
    settings.LEXOFFICE_API_BASE_URL = "https://api.lexware-sandbox.io/"
    settings.LEXOFFICE_TIMEOUT = (3, 7)
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        mock.get("https://api.lexware-sandbox.io/v1/profile", json={})
        client.get("v1/profile")

        assert mock.calls[0].request.req_kwargs["timeout"] == (3.0, 7.0)


def test_redirects_are_not_followed(make_connection: Callable[..., LexofficeConnection]) -> None:
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        mock.get(PROFILE_URL, status=302, headers={"Location": "https://evil.example/"})

        assert client.get("/v1/profile").status_code == 302
        assert len(mock.calls) == 1


def test_accepts_absolute_urls_on_the_api_host(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        mock.get(f"{API}/v1/contacts/42", json={"id": "42"})

        assert client.get(f"{API}/v1/contacts/42").json() == {"id": "42"}


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/v1/profile",
        "//evil.example/v1/profile",
        "http://api.lexware.io/v1/profile",
        "https://api.lexware.io.evil.example/v1/profile",
    ],
)
def test_refuses_absolute_urls_to_other_hosts(
    url: str, make_connection: Callable[..., LexofficeConnection]
) -> None:
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        with pytest.raises(ValueError, match=r"only calls https://api\.lexware\.io"):
            client.get(url)
        assert len(mock.calls) == 0


def test_refuses_urls_outside_a_base_path(
    settings: Any, make_connection: Callable[..., LexofficeConnection]
) -> None:
    settings.LEXOFFICE_API_BASE_URL = "http://127.0.0.1:8000/fake-lexware"
    with LexofficeClient(make_connection()) as client, pytest.raises(ValueError):
        client.get("http://127.0.0.1:8000/fake-lexware-other/v1/profile")


def test_refuses_other_authentication(make_connection: Callable[..., LexofficeConnection]) -> None:
    with LexofficeClient(make_connection()) as client, pytest.raises(TypeError, match="auth="):
        client.get("/v1/profile", auth=("user", "password"))


def test_closing_the_client_closes_its_session(
    make_connection: Callable[..., LexofficeConnection], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = []
    with LexofficeClient(make_connection()) as client:
        monkeypatch.setattr(client.session, "close", lambda: closed.append(True))
    assert closed == [True]


def test_repr_shows_no_token(make_connection: Callable[..., LexofficeConnection]) -> None:
    with LexofficeClient(make_connection()) as client:
        assert ACCESS_TOKEN not in repr(client)
        assert ACCESS_TOKEN not in repr(client.session.auth)


# -- freshness ---------------------------------------------------------------------------------


def test_refreshes_before_the_request_when_the_token_expires_within_the_margin(
    fake: FakeLexware, connect: Callable[..., LexofficeConnection]
) -> None:
    connection = connect(expires_at=timezone.now() + timedelta(seconds=60))
    old_token = connection.access_token

    with LexofficeClient(connection) as client:
        profile = client.profile()

    assert profile["organizationId"] == connection.organization_id
    assert fake.count("refresh") == 1
    assert connection.access_token != old_token
    assert reloaded(connection).access_token == connection.access_token
    assert not fake.is_access_token_valid(old_token)


def test_does_not_refresh_a_token_valid_beyond_the_margin(
    fake: FakeLexware, connection: LexofficeConnection
) -> None:
    with LexofficeClient(connection) as client:
        client.profile()

    assert fake.count("refresh") == 0
    assert fake.count("profile") == 1


def test_the_margin_comes_from_the_setting(
    settings: Any, fake: FakeLexware, connect: Callable[..., LexofficeConnection]
) -> None:
    settings.LEXOFFICE_REFRESH_MARGIN = 3600
    connection = connect(expires_at=timezone.now() + timedelta(minutes=50))

    with LexofficeClient(connection) as client:
        client.profile()

    assert fake.count("refresh") == 1


def test_a_failed_refresh_falls_back_to_the_still_valid_token_and_backs_off(
    fake: FakeLexware, connect: Callable[..., LexofficeConnection]
) -> None:
    connection = connect(expires_at=timezone.now() + timedelta(seconds=120))
    fake.inject("refresh", "server_error", times=None)

    with LexofficeClient(connection) as client:
        client.profile()
        client.profile()  # within the backoff: no second call to the token endpoint

    assert fake.count("profile") == 2
    assert reloaded(connection).consecutive_failures == 1


def test_a_failed_refresh_of_an_expired_token_raises(
    fake: FakeLexware, connect: Callable[..., LexofficeConnection]
) -> None:
    connection = connect(expires_at=timezone.now() - timedelta(seconds=1))
    fake.inject("refresh", "server_error", status=503)

    with LexofficeClient(connection) as client, pytest.raises(TransientRefreshError):
        client.profile()

    assert fake.count("profile") == 0


def test_an_inactive_connection_raises_before_sending_anything(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    connection = make_connection(status=LexofficeConnection.Status.REAUTHORIZATION_REQUIRED)

    with responses.RequestsMock() as mock, LexofficeClient(connection) as client:
        with pytest.raises(ConnectionNotActive, match="lexoffice:login"):
            client.profile()
        assert len(mock.calls) == 0


# -- the 401 path ------------------------------------------------------------------------------


def test_401_refreshes_once_and_retries_once(
    fake: FakeLexware, connection: LexofficeConnection
) -> None:
    old_token = connection.access_token
    fake.invalidate_access_token(old_token)  # e.g. the user changed their password

    with LexofficeClient(connection) as client:
        profile = client.profile()

    assert profile["companyName"] == connection.company_name
    assert fake.count("refresh") == 1
    assert fake.count("profile") == 1
    assert reloaded(connection).access_token not in ("", old_token)


def test_a_second_401_raises_and_refreshes_no_more(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    connection = make_connection()
    with responses.RequestsMock() as mock, LexofficeClient(connection) as client:
        api = mock.get(PROFILE_URL, status=401, json={"message": "Unauthorized"})
        token = mock.post(lexoffice_settings.TOKEN_URL, json=TOKEN_RESPONSE)

        with pytest.raises(LexofficeAPIError, match="even after a refresh") as caught:
            client.profile()

        assert caught.value.status == 401
        assert token.call_count == 1
        assert api.call_count == 2
        sent = [call.request.headers["Authorization"] for call in api.calls]
        assert sent == [f"Bearer {ACCESS_TOKEN}", f"Bearer {TOKEN_RESPONSE['access_token']}"]


def test_a_401_after_another_worker_refreshed_retries_without_refreshing_again(
    fake: FakeLexware, connection: LexofficeConnection
) -> None:
    with LexofficeClient(connection) as client:
        tokens.refresh(reloaded(connection), force=True)  # another worker; our copy is stale
        client.profile()

    assert fake.count("refresh") == 1
    assert fake.count("profile") == 1


def test_invalid_grant_on_refresh_means_reauthorization_required(
    fake: FakeLexware, connection: LexofficeConnection
) -> None:
    fake.revoke_connection(connection.refresh_token)  # the user disconnected in Lexware

    with LexofficeClient(connection) as client:
        with pytest.raises(ReauthorizationRequired):
            client.profile()
        with pytest.raises(ConnectionNotActive):
            client.profile()  # nothing is sent any more

    assert reloaded(connection).status == LexofficeConnection.Status.REAUTHORIZATION_REQUIRED
    assert fake.count("profile") == 0


def test_raise_for_status_false_hands_back_the_second_401(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        mock.get(PROFILE_URL, status=401, json={"message": "Unauthorized"})
        mock.post(lexoffice_settings.TOKEN_URL, json=TOKEN_RESPONSE)

        assert client.get("/v1/profile", raise_for_status=False).status_code == 401


# -- retries through urllib3 (real HTTP) -------------------------------------------------------


def test_429_backs_off_exponentially_with_jitter_then_succeeds(
    api: LexofficeClient, server: ScriptedServer, sleeps: list[float]
) -> None:
    server.reply(429, {"message": "Too Many Requests"})
    server.reply(429, {"message": "Too Many Requests"})
    server.reply(200, {"ok": True})

    assert api.get("/v1/contacts").json() == {"ok": True}

    assert server.hits() == 3
    first, second = sleeps
    assert 0.5 <= first <= 1.0
    assert 1.0 <= second <= 1.5


def test_a_post_that_got_429_is_retried_because_lexware_did_not_perform_it(
    api: LexofficeClient, server: ScriptedServer
) -> None:
    server.reply(429, {"message": "Too Many Requests"})
    server.reply(201, {"id": "new"})

    response = api.post("/v1/contacts", json={"company": {"name": "ACME"}})

    assert response.status_code == 201
    assert [request["method"] for request in server.received] == ["POST", "POST"]
    assert server.received[0]["body"] == server.received[1]["body"] != b""


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("status", [502, 503, 504])
def test_idempotent_calls_are_retried_after_gateway_errors(
    api: LexofficeClient, server: ScriptedServer, method: str, status: int
) -> None:
    server.reply(status, {"message": "Service Unavailable"})
    server.reply(200, {})

    assert api.request(method, "/v1/contacts/1").status_code == 200
    assert server.hits() == 2


def test_get_503_is_retried_a_bounded_number_of_times_then_raises(
    api: LexofficeClient, server: ScriptedServer, sleeps: list[float]
) -> None:
    for _ in range(5):
        server.reply(503, {"message": "Service Unavailable"}, headers={"x-request-id": "req-7"})

    with pytest.raises(LexofficeAPIError) as caught:
        api.get("/v1/contacts")

    assert server.hits() == 3  # the first try and max_retries=2
    assert len(sleeps) == 2
    assert caught.value.status == 503
    assert caught.value.body == '{"message": "Service Unavailable"}'
    assert caught.value.request_id == "req-7"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_post_is_never_retried_after_a_server_error(
    api: LexofficeClient, server: ScriptedServer, sleeps: list[float], status: int
) -> None:
    server.reply(status, {"message": "Endpoint request timed out"})
    server.reply(201, {})

    with pytest.raises(LexofficeAPIError) as caught:
        api.post("/v1/invoices", json={})

    assert caught.value.status == status
    assert server.hits() == 1
    assert sleeps == []


def test_a_post_is_never_retried_after_a_read_timeout(
    server: ScriptedServer, make_connection: Callable[..., LexofficeConnection]
) -> None:
    server.reply(201, {}, delay=0.5)
    server.reply(201, {})

    with LexofficeClient(make_connection(), timeout=(1, 0.2)) as client:
        with pytest.raises(NoResponse, match="may still have been processed") as caught:
            client.post("/v1/invoices", json={})

    assert caught.value.maybe_processed is True
    assert caught.value.status is None
    assert server.hits() == 1


def test_a_get_is_retried_after_a_read_timeout(
    server: ScriptedServer,
    make_connection: Callable[..., LexofficeConnection],
    sleeps: list[float],
) -> None:
    server.reply(200, {}, delay=0.5)
    server.reply(200, {"late": False})

    with LexofficeClient(make_connection(), timeout=(1, 0.2)) as client:
        assert client.get("/v1/contacts").json() == {"late": False}

    assert server.hits() == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_refused_connection_is_retried_then_raises_no_response(
    settings: Any,
    make_connection: Callable[..., LexofficeConnection],
    sleeps: list[float],
    method: str,
) -> None:
    settings.LEXOFFICE_API_BASE_URL = f"http://127.0.0.1:{unused_port()}"

    with LexofficeClient(make_connection(), max_retries=2) as client:
        with pytest.raises(NoResponse) as caught:
            client.request(method, "/v1/contacts")

    # Nothing reached Lexware, so even a POST may go again.
    assert caught.value.maybe_processed is False
    assert len(sleeps) == 2


def test_retry_after_is_honoured_but_capped(
    server: ScriptedServer,
    make_connection: Callable[..., LexofficeConnection],
    sleeps: list[float],
) -> None:
    server.reply(429, {}, headers={"Retry-After": "3600"})
    server.reply(200, {})

    with LexofficeClient(make_connection(), backoff_max=5) as client:
        client.get("/v1/contacts")

    assert sleeps == [5]


def test_every_attempt_takes_a_rate_limit_token(
    server: ScriptedServer, make_connection: Callable[..., LexofficeConnection]
) -> None:
    server.reply(429, {})
    server.reply(503, {})
    server.reply(200, {})
    bucket = CountingBucket()

    with LexofficeClient(make_connection(), bucket=bucket) as client:
        client.get("/v1/contacts")

    assert bucket.taken == server.hits() == 3


# -- the 500 "rate limit" hook -----------------------------------------------------------------


def test_a_500_that_says_rate_limit_backs_off_and_retries_a_get(
    fake: FakeLexware, connection: LexofficeConnection, sleeps: list[float]
) -> None:
    fake.inject("profile", "rate_limit_500", times=2)

    with LexofficeClient(connection, backoff_factor=0.5, backoff_jitter=0.5) as client:
        assert client.profile()["organizationId"] == connection.organization_id

    first, second = sleeps
    assert 0.5 <= first <= 1.0
    assert 1.0 <= second <= 1.5


def test_a_500_that_says_rate_limit_gives_up_after_max_retries(
    fake: FakeLexware, connection: LexofficeConnection, sleeps: list[float]
) -> None:
    fake.inject("profile", "rate_limit_500", times=None)

    with LexofficeClient(connection, max_retries=2) as client:
        with pytest.raises(LexofficeAPIError, match="rate limit") as caught:
            client.profile()

    assert caught.value.status == 500
    assert len(sleeps) == 2


def test_a_plain_500_is_not_retried(
    fake: FakeLexware, connection: LexofficeConnection, sleeps: list[float]
) -> None:
    fake.inject("profile", "server_error", times=1)

    with LexofficeClient(connection) as client, pytest.raises(LexofficeAPIError):
        client.profile()

    assert sleeps == []


def test_a_post_that_got_a_rate_limit_500_is_not_retried(
    make_connection: Callable[..., LexofficeConnection], sleeps: list[float]
) -> None:
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        invoices = mock.post(
            f"{API}/v1/invoices",
            status=500,
            json={"message": "Internal server error or rate limit exceeded"},
        )
        with pytest.raises(LexofficeAPIError):
            client.post("/v1/invoices", json={})

        assert invoices.call_count == 1
    assert sleeps == []


# -- errors ------------------------------------------------------------------------------------


def test_errors_carry_status_redacted_body_and_request_id_but_no_response(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    body = {
        "requestId": "75d4dad6-6ccb-40fd-8c22-797f2d421d98",
        "IssueList": [{"i18nKey": "missing_entity", "source": "company.name"}],
        "echo": ACCESS_TOKEN,
    }
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        mock.post(f"{API}/v1/contacts", status=400, json=body)
        with pytest.raises(LexofficeAPIError) as caught:
            client.post("/v1/contacts?finalize=true", json={})

    error = caught.value
    assert error.status == 400
    assert error.request_id == "75d4dad6-6ccb-40fd-8c22-797f2d421d98"
    assert "missing_entity" in error.body
    assert ACCESS_TOKEN not in error.body
    assert str(error).startswith("lexoffice POST /v1/contacts answered HTTP 400")
    assert "finalize" not in str(error)
    assert not hasattr(error, "response")


def test_an_error_body_nested_too_deep_to_parse_is_still_a_clear_error(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        mock.get(f"{API}/v1/contacts", status=400, body="[" * 100_000 + "]" * 100_000)
        with pytest.raises(LexofficeAPIError) as caught:
            client.get("/v1/contacts")
    assert caught.value.status == 400 and caught.value.request_id is None


def test_raise_for_status_false_returns_error_responses(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        mock.get(f"{API}/v1/contacts/unknown", status=404, json={"message": "Not Found"})

        response = client.get("/v1/contacts/unknown", raise_for_status=False)

    assert response.status_code == 404


# -- the shared rate limit ---------------------------------------------------------------------


def test_calls_are_spaced_by_one_over_the_rate(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    clock = FakeClock()
    bucket = SharedTokenBucket("spacing", rate=1.8, clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    def record(request: Any) -> tuple[int, dict[str, str], str]:
        sent.append(clock.now)
        return 200, {}, "{}"

    with responses.RequestsMock() as mock, LexofficeClient(make_connection(), bucket=bucket) as c:
        mock.add_callback("GET", PROFILE_URL, callback=record)
        for _ in range(4):
            c.get("/v1/profile")

    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert gaps == pytest.approx([1 / 1.8] * 3)


def test_a_caller_that_would_wait_too_long_gets_rate_limit_timeout(
    settings: Any, make_connection: Callable[..., LexofficeConnection]
) -> None:
    settings.LEXOFFICE_RATE_LIMIT = 0.1  # one call per 10 s
    settings.LEXOFFICE_RATE_LIMIT_MAX_WAIT = 2

    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        mock.get(PROFILE_URL, json={})
        client.get("/v1/profile")
        with pytest.raises(RateLimitTimeout):
            client.get("/v1/profile")

        assert len(mock.calls) == 1


def test_paced_calls_never_meet_lexwares_429(
    fake: FakeLexware, connection: LexofficeConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(fake_state, "now", clock)  # the fake's 2/s bucket runs on our clock
    fake.set_rate_limit(2.0)
    bucket = SharedTokenBucket("paced", rate=1.8, clock=clock, sleep=clock.sleep)

    with LexofficeClient(connection, bucket=bucket) as client:
        for _ in range(10):
            client.profile()

    assert fake.count("profile") == 10
    assert fake.count("rate_limited") == 0


def test_unpaced_calls_do_meet_lexwares_429(
    fake: FakeLexware, connection: LexofficeConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test above: too fast a bucket and the fake answers 429.
    clock = FakeClock()
    monkeypatch.setattr(fake_state, "now", clock)
    fake.set_rate_limit(2.0)
    bucket = SharedTokenBucket("unpaced", rate=20, clock=clock, sleep=clock.sleep)

    with LexofficeClient(connection, bucket=bucket) as client:
        with pytest.raises(LexofficeAPIError) as caught:
            for _ in range(10):
                client.profile()

    assert caught.value.status == 429
    assert fake.count("rate_limited") > 0


# -- pagination and profile --------------------------------------------------------------------


def test_paginate_yields_every_item_lazily_page_by_page(
    fake: FakeLexware, connection: LexofficeConnection
) -> None:
    with LexofficeClient(connection) as client:
        demo = len(list(client.paginate("/v1/contacts", size=250)))
    for number in range(5):
        fake.add_contact(connection.organization_id, f"Kunde {number}")
    baseline = fake.count("api")

    with LexofficeClient(connection) as client:
        items = client.paginate("/v1/contacts", size=2)
        assert fake.count("api") == baseline  # nothing fetched before iterating
        first = next(items)
        assert fake.count("api") == baseline + 1
        rest = list(items)

    names = [item["company"]["name"] for item in [first, *rest]]
    assert len(names) == demo + 5
    assert names[-5:] == [f"Kunde {number}" for number in range(5)]
    assert fake.count("api") == baseline + -(-(demo + 5) // 2)


def test_paginate_sends_params_and_stops_at_total_pages(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    url = f"{API}/v1/voucherlist"
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        for page in range(2):
            mock.get(
                url,
                match=[
                    matchers.query_param_matcher(
                        {"voucherType": "invoice", "page": str(page), "size": "1"}
                    )
                ],
                json={"content": [{"n": page}], "totalPages": 2},
            )

        items = list(client.paginate(url, size=1, params={"voucherType": "invoice"}))

    assert items == [{"n": 0}, {"n": 1}]


def test_paginate_stops_at_an_empty_page(
    make_connection: Callable[..., LexofficeConnection],
) -> None:
    with responses.RequestsMock() as mock, LexofficeClient(make_connection()) as client:
        mock.get(f"{API}/v1/articles", json={"content": []})

        assert list(client.paginate("/v1/articles")) == []
        assert len(mock.calls) == 1


def test_paginate_needs_a_positive_size(make_connection: Callable[..., Any]) -> None:
    with LexofficeClient(make_connection()) as client, pytest.raises(ValueError):
        client.paginate("/v1/contacts", size=0)  # at once, not at the first next()


# -- for_user ----------------------------------------------------------------------------------


def test_for_user_picks_the_single_active_connection(
    user: Any, make_connection: Callable[..., LexofficeConnection]
) -> None:
    make_connection(organization_id="old", status=LexofficeConnection.Status.REVOKED)
    active = make_connection(organization_id="current")

    with LexofficeClient.for_user(user, max_retries=1) as client:
        assert client.connection == active
        assert client.max_retries == 1


def test_for_user_with_several_active_connections_needs_the_organization(
    user: Any, make_connection: Callable[..., LexofficeConnection]
) -> None:
    make_connection(organization_id="first")
    second = make_connection(organization_id="second")

    with pytest.raises(MultipleConnections, match="organization_id"):
        LexofficeClient.for_user(user)
    with LexofficeClient.for_user(user, organization_id="second") as client:
        assert client.connection == second


def test_for_user_without_a_connection_raises_connection_not_found(
    user: Any, django_user_model: Any, make_connection: Callable[..., LexofficeConnection]
) -> None:
    other = django_user_model.objects.create_user(username="max", password="pw")
    make_connection(user=other)

    with pytest.raises(ConnectionNotFound, match="lexoffice:login"):
        LexofficeClient.for_user(user)
    with pytest.raises(ConnectionNotFound):
        LexofficeClient.for_user(other, organization_id="unknown")
    with pytest.raises(ConnectionNotFound):
        LexofficeClient.for_user(AnonymousUser())


@pytest.mark.parametrize("organization_id", [None, "gone"])
def test_for_user_with_only_inactive_connections_raises_connection_not_active(
    user: Any, make_connection: Callable[..., LexofficeConnection], organization_id: str | None
) -> None:
    make_connection(
        organization_id="gone", status=LexofficeConnection.Status.REAUTHORIZATION_REQUIRED
    )

    with pytest.raises(ConnectionNotActive):
        LexofficeClient.for_user(user, organization_id=organization_id)


# -- no token in any log -----------------------------------------------------------------------


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [
        secret[start : start + 16]
        for secret in secrets
        for start in range(len(secret) - 15)
        if secret[start : start + 16] in text
    ]


def _logged_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def test_no_token_appears_in_debug_logs_of_refresh_401_and_errors(
    fake: FakeLexware,
    connect: Callable[..., LexofficeConnection],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connection = connect(expires_at=timezone.now() + timedelta(seconds=10))
    secrets = [connection.access_token, connection.refresh_token]
    errors: list[Exception] = []

    with LexofficeClient(connection) as client:
        client.profile()  # refreshes first
        secrets += [connection.access_token, connection.refresh_token]
        fake.invalidate_access_token(connection.access_token)
        client.profile()  # 401, refresh, retry
        secrets += [connection.access_token, connection.refresh_token]
        fake.inject("profile", "rate_limit_500", times=None)
        try:
            client.profile()
        except LexofficeAPIError as error:
            errors.append(error)
        fake.revoke_connection(connection.refresh_token)
        fake.clear_faults()
        try:
            client.profile()
        except ReauthorizationRequired as error:
            errors.append(error)

    text = _logged_text(caplog) + "\n".join(str(error) for error in errors)
    assert "lexoffice GET /v1/profile -> HTTP 200" in text  # the log is not empty
    assert len(errors) == 2
    assert _leaks(text, secrets) == []


def test_no_token_appears_in_debug_logs_of_urllib3_retries_and_refresh(
    settings: Any,
    api: LexofficeClient,
    server: ScriptedServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.LEXOFFICE_AUTH_BASE_URL = server.url  # the refresh goes to the scripted server too
    caplog.set_level(logging.DEBUG)
    server.reply(429, {})
    server.reply(503, {})
    server.reply(200, {})
    server.reply(401, {"message": "Unauthorized"})
    server.reply(200, TOKEN_RESPONSE)  # POST /oauth2/token
    server.reply(400, {"message": f"Bad Request {TOKEN_RESPONSE['access_token']}"})

    api.get("/v1/contacts", params={"page": 1})
    with pytest.raises(LexofficeAPIError) as caught:
        api.get("/v1/contacts")

    assert [request["path"] for request in server.received][-2:] == [
        "/oauth2/token",
        "/v1/contacts",
    ]
    text = _logged_text(caplog) + str(caught.value)
    assert "retry 2" in text
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    secrets = [ACCESS_TOKEN, REFRESH_TOKEN, TOKEN_RESPONSE["access_token"]]
    assert _leaks(text, [*secrets, TOKEN_RESPONSE["refresh_token"]]) == []
