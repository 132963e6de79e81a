"""Django's error reports (the technical 500 page, error e-mails to ADMINS) of every error the
client, refresh and revoke raise hold no token and no client secret (SECURITY.md 12; issue 13
item 7).

Real sockets on 127.0.0.1, so the reports hold the frames of ``requests`` and ``urllib3``
whose locals carry the ``Authorization`` header and the form data.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import RequestFactory
from django.utils import timezone
from django.views.debug import ExceptionReporter

from django_lexoffice import isolation, tokens
from django_lexoffice.client import LexofficeClient
from django_lexoffice.exceptions import (
    ClientConfigurationError,
    ConnectionBusy,
    LexofficeAPIError,
    LexofficeHTTPError,
    NoResponse,
    ReauthorizationRequired,
    TransientRefreshError,
)
from django_lexoffice.models import LexofficeConnection

from .conftest import ACCESS_TOKEN, REFRESH_TOKEN
from .test_client import ScriptedServer, unused_port
from .test_leaks import CLIENT_SECRET, assert_clean

pytestmark = pytest.mark.django_db

SECRETS = [ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET]


@pytest.fixture
def lexware(settings: Any) -> Iterator[ScriptedServer]:
    """One scripted server as both Lexware hosts (token endpoint and API)."""
    server = ScriptedServer()
    settings.LEXOFFICE_API_BASE_URL = server.url
    settings.LEXOFFICE_AUTH_BASE_URL = server.url
    yield server
    server.close()


def report(exc_info: Any) -> str:
    """The HTML page and the text e-mail Django makes of ``exc_info``, as sent to ADMINS."""
    request = RequestFactory().get("/some/view/")
    html = ExceptionReporter(request, *exc_info, is_email=True).get_traceback_html()
    text = ExceptionReporter(request, *exc_info, is_email=True).get_traceback_text()
    return html + text


def raised(call: Callable[[], object], expected: type[BaseException]) -> Any:
    with pytest.raises(expected):
        try:
            call()
        except expected:
            exc_info = sys.exc_info()
            raise
    return exc_info


def client_for(connection: LexofficeConnection, **kwargs: Any) -> LexofficeClient:
    return LexofficeClient(connection, max_retries=0, **kwargs)


def expired(make_connection: Callable[..., LexofficeConnection]) -> LexofficeConnection:
    return make_connection(expires_at=timezone.now() - timedelta(seconds=1))


# -- the API client ---------------------------------------------------------------------------


def test_sec12_report_of_an_api_500_holds_no_token(lexware, make_connection):
    lexware.reply(500, {"message": "boom"})
    api = client_for(make_connection())
    exc_info = raised(lambda: api.get("/v1/contacts"), LexofficeAPIError)
    text = report(exc_info)
    assert "in request" in text and "HTTP 500" in text  # the frames are there
    assert_clean(text, SECRETS)


def test_sec12_report_of_a_refused_connection_holds_no_token(settings, make_connection):
    settings.LEXOFFICE_API_BASE_URL = f"http://127.0.0.1:{unused_port()}"
    api = client_for(make_connection())
    exc_info = raised(lambda: api.get("/v1/contacts"), NoResponse)
    assert exc_info[1].__cause__ is None and exc_info[1].__suppress_context__
    assert_clean(report(exc_info), SECRETS)


def test_sec12_report_of_a_timeout_holds_no_token(lexware, make_connection):
    lexware.reply(200, {}, delay=0.5)
    api = client_for(make_connection(), timeout=(2, 0.1))
    exc_info = raised(lambda: api.get("/v1/contacts"), NoResponse)
    assert_clean(report(exc_info), SECRETS)


def test_sec12_report_of_a_failed_refresh_inside_the_client_holds_no_token(
    lexware, make_connection
):
    lexware.reply(503, {"message": "down"})  # the token endpoint
    api = client_for(expired(make_connection))
    exc_info = raised(lambda: api.get("/v1/contacts"), TransientRefreshError)
    assert_clean(report(exc_info), SECRETS)


def test_sec12_report_of_a_401_then_invalid_grant_holds_no_token(lexware, make_connection):
    lexware.reply(401, {"message": "Unauthorized"})  # the API call
    lexware.reply(400, {"error": "invalid_grant"})  # the refresh after it
    api = client_for(make_connection())
    exc_info = raised(lambda: api.get("/v1/contacts"), ReauthorizationRequired)
    assert "_refresh_after_401" in report(exc_info)
    assert_clean(report(exc_info), SECRETS)


# -- refresh and revoke -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((503, {"message": "down"}), TransientRefreshError),
        ((400, {"error": "invalid_grant"}), ReauthorizationRequired),
        ((401, {"error": "invalid_client"}), ClientConfigurationError),
    ],
    ids=["transient", "invalid_grant", "invalid_client"],
)
def test_sec12_report_of_a_failed_refresh_holds_no_token(
    lexware, make_connection, answer, expected
):
    lexware.reply(*answer)
    connection = expired(make_connection)
    exc_info = raised(lambda: tokens.refresh(connection), expected)
    assert_clean(report(exc_info), SECRETS)


def test_sec12_report_of_an_unreachable_token_endpoint_holds_no_token(settings, make_connection):
    settings.LEXOFFICE_AUTH_BASE_URL = f"http://127.0.0.1:{unused_port()}"
    connection = expired(make_connection)
    exc_info = raised(lambda: tokens.refresh(connection), TransientRefreshError)
    assert_clean(report(exc_info), SECRETS)


@pytest.fixture
def broken_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug deep below ``requests``, after the request was built (form, Basic auth)."""
    import http.client

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug below requests")

    monkeypatch.setattr(http.client.HTTPConnection, "getresponse", explode)


def test_sec12_report_of_an_unexpected_error_in_refresh_holds_no_token(
    lexware, make_connection, broken_http
):
    connection = expired(make_connection)
    exc_info = raised(lambda: tokens.refresh(connection), LexofficeHTTPError)
    assert exc_info[1].__cause__ is None and exc_info[1].__suppress_context__
    assert "in refresh" in report(exc_info)
    assert_clean(report(exc_info), SECRETS)


def test_an_unexpected_error_in_revoke_still_ends_the_connection_without_a_token(
    lexware, make_connection, broken_http
):
    # Revoking never fails locally: the bug is recorded (token-free) and the tokens go.
    connection = expired(make_connection)
    assert tokens.revoke(connection) is False
    row = LexofficeConnection.objects.get(pk=connection.pk)
    assert row.status == "revoked" and not row.has_refresh_token
    assert "bug below requests" in row.last_error
    assert_clean(row.last_error, SECRETS)


def test_sec12_report_of_an_error_after_a_failed_revoke_holds_no_token(lexware, make_connection):
    """Revoke itself never raises for Lexware's answer; a receiver that fails afterwards
    shows the frames of revoke in its report."""
    from django_lexoffice.signals import connection_revoked

    lexware.reply(503, {"message": "down"})

    def receiver(**kwargs: Any) -> None:
        raise RuntimeError("receiver failed")

    connection = make_connection()
    connection_revoked.connect(receiver, dispatch_uid="report-test")
    try:
        exc_info = raised(lambda: tokens.revoke(connection), RuntimeError)
    finally:
        connection_revoked.disconnect(dispatch_uid="report-test")
    assert LexofficeConnection.objects.get().status == "revoked"
    assert_clean(report(exc_info), SECRETS)


@pytest.mark.postgres
@pytest.mark.skipif(
    os.environ.get("LEXOFFICE_TEST_DB") != "postgres",
    reason="a refresh beside the caller's transaction needs PostgreSQL",
)
@pytest.mark.django_db(transaction=True)
def test_sec12_report_of_a_refresh_beside_the_callers_transaction_holds_no_token(
    make_connection, monkeypatch
):
    # The refresh runs in a thread of its own (isolation.run_committed): its frames lead
    # back to that thread's start, not to the caller's sensitive_variables.
    connection = make_connection(expires_at=timezone.now() + timedelta(seconds=30))
    monkeypatch.setattr(isolation, "lock_timeout_seconds", lambda: 0.5)

    def refresh_while_holding_the_row() -> None:
        with transaction.atomic():  # as ATOMIC_REQUESTS would
            LexofficeConnection.objects.filter(pk=connection.pk).update(company_name="x")
            tokens.refresh(connection)

    exc_info = raised(refresh_while_holding_the_row, ConnectionBusy)
    assert "in _refresh_locked" in report(exc_info)  # the thread's frames are in the report
    assert_clean(report(exc_info), SECRETS)
