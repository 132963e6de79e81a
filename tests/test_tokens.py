"""tokens.refresh / revoke against Lexware faked at the HTTP boundary (SECURITY.md 14, 15)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import responses
from django.utils import timezone

from django_lexoffice import signals, tokens
from django_lexoffice.exceptions import (
    ClientConfigurationError,
    ConnectionNotActive,
    ReauthorizationRequired,
    TransientRefreshError,
)
from django_lexoffice.models import LexofficeConnection

from .conftest import ACCESS_TOKEN, REFRESH_TOKEN, assert_no_token
from .lexware_responses import (
    BASIC,
    NEW_ACCESS,
    NEW_REFRESH,
    REVOKE_URL,
    TOKEN_URL,
    add_refresh,
    form,
    token_response,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def expiring(make_connection):
    return make_connection(expires_at=timezone.now() + timedelta(seconds=30))


def reload(connection):
    return LexofficeConnection.objects.get(pk=connection.pk)


def test_sec14_refresh_stores_the_new_rotated_pair(rsps, expiring, capture_signal):
    add_refresh(rsps)
    received = capture_signal(signals.tokens_refreshed)
    result = tokens.refresh(expiring)
    assert result.refreshed and [kw["connection"].pk for kw in received] == [expiring.pk]
    call = rsps.calls[0]
    assert call.request.headers["Authorization"] == BASIC
    assert form(call) == {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN}
    row = reload(expiring)
    assert (row.access_token, row.refresh_token) == (NEW_ACCESS, NEW_REFRESH)
    assert timedelta(seconds=14390) < row.expires_at - timezone.now() <= timedelta(seconds=14399)
    assert row.consecutive_failures == 0 and row.last_error == ""
    assert expiring.access_token == NEW_ACCESS  # the caller's instance is brought up to date


def test_refresh_keeps_the_old_refresh_token_when_none_comes_back(rsps, expiring):
    add_refresh(rsps, json=token_response(refresh=None))
    tokens.refresh(expiring)
    row = reload(expiring)
    assert (row.access_token, row.refresh_token) == (NEW_ACCESS, REFRESH_TOKEN)


def test_sec14_refresh_skips_a_connection_another_worker_refreshed(rsps, expiring):
    stale = LexofficeConnection.objects.get(pk=expiring.pk)
    fresh_until = timezone.now() + timedelta(hours=4)
    expiring.expires_at = fresh_until
    expiring.save()  # "another worker" refreshed meanwhile
    result = tokens.refresh(stale)
    assert not result.refreshed and len(rsps.calls) == 0
    assert stale.expires_at == fresh_until


def test_force_refreshes_a_fresh_connection(rsps, make_connection):
    add_refresh(rsps)
    assert tokens.refresh(make_connection(), force=True).refreshed


def test_sec14_invalid_grant_marks_reauthorization_required(rsps, expiring, capture_signal):
    add_refresh(rsps, status=400, json={"error": "invalid_grant", "error_description": "gone"})
    received = capture_signal(signals.reauthorization_required)
    with pytest.raises(ReauthorizationRequired) as excinfo:
        tokens.refresh(expiring)
    row = reload(expiring)
    assert row.status == LexofficeConnection.Status.REAUTHORIZATION_REQUIRED
    assert "invalid_grant" in row.last_error and "HTTP 400" in row.last_error
    assert received and excinfo.value.status == 400
    with pytest.raises(ConnectionNotActive):
        tokens.refresh(row)


@pytest.mark.parametrize(
    ("status", "body", "json_body"),
    [
        (500, None, {"message": "Internal server error or rate limit exceeded"}),
        (502, "<html><body>Bad Gateway</body></html>", None),
        (503, None, {"error": "temporarily_unavailable"}),
        (429, None, {"message": "Too Many Requests"}),
        (200, "not json at all", None),
        (200, None, {"access_token": "", "expires_in": 1}),
        (400, None, {"error": "server_error"}),
        (200, "[" * 100_000 + "]" * 100_000, None),  # json: RecursionError, not ValueError
        (502, "[" * 100_000 + "]" * 100_000, None),
    ],
    ids=[
        "500-rate-limit",
        "502-html",
        "503",
        "429",
        "200-non-json",
        "200-empty-token",
        "400-server-error",
        "200-nested-too-deep",
        "502-nested-too-deep",
    ],
)
def test_sec14_transient_failures_keep_both_tokens(rsps, expiring, status, body, json_body):
    add_refresh(rsps, status=status, body=body, json=json_body)
    with pytest.raises(TransientRefreshError) as excinfo:
        tokens.refresh(expiring)
    row = reload(expiring)
    assert (row.access_token, row.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)
    assert row.status == LexofficeConnection.Status.ACTIVE
    assert row.consecutive_failures == 1
    assert f"HTTP {status}" in row.last_error
    assert row.next_attempt_at > timezone.now()
    assert_no_token(row.last_error + str(excinfo.value) + excinfo.value.body)


# A refresh token in standard base64: "+" and "/" split it into pieces too short to look
# like a token, so only knowing what was sent finds it in an answer that echoes it.
BASE64_REFRESH_TOKEN = "KCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/" * 4


def test_an_error_answer_echoing_the_sent_tokens_is_recorded_without_them(rsps, make_connection):
    connection = make_connection(
        refresh_token=BASE64_REFRESH_TOKEN, expires_at=timezone.now() + timedelta(seconds=30)
    )
    echo = f"malformed refresh token {BASE64_REFRESH_TOKEN} for {ACCESS_TOKEN}"
    add_refresh(rsps, status=400, json={"error": "invalid_request", "error_description": echo})
    with pytest.raises(TransientRefreshError) as excinfo:
        tokens.refresh(connection)
    row = reload(connection)
    secrets = [BASE64_REFRESH_TOKEN, ACCESS_TOKEN]
    assert_no_token(row.last_error + str(excinfo.value) + excinfo.value.body, secrets)


def test_a_revoke_answer_echoing_the_token_is_recorded_without_it(rsps, make_connection):
    connection = make_connection(refresh_token=BASE64_REFRESH_TOKEN)
    rsps.add(responses.POST, REVOKE_URL, status=400, body=f"bad token {BASE64_REFRESH_TOKEN}")
    assert tokens.revoke(connection) is False
    assert_no_token(reload(connection).last_error, [BASE64_REFRESH_TOKEN])


def test_revoking_a_connection_deleted_meanwhile_leaves_it_deleted(
    rsps, make_connection, capture_signal
):
    stale = make_connection()  # e.g. the user's "Disconnect" page, open in another tab
    rsps.add(responses.POST, REVOKE_URL, status=200)
    LexofficeConnection.objects.get(pk=stale.pk).delete()  # revokes at Lexware first
    revoked = capture_signal(signals.connection_revoked)
    assert tokens.revoke(stale) is True
    assert not LexofficeConnection.objects.filter(pk=stale.pk).exists()
    assert revoked == [] and len(rsps.calls) == 1


@pytest.mark.parametrize(
    "exc",
    [
        requests.ConnectTimeout("t"),
        requests.ReadTimeout("t"),
        requests.ConnectionError("reset"),
        requests.exceptions.SSLError("bad cert"),
    ],
    ids=["connect-timeout", "read-timeout", "connection-reset", "tls-error"],
)
def test_sec14_network_failures_keep_both_tokens(rsps, expiring, exc):
    rsps.add(responses.POST, TOKEN_URL, body=exc)
    with pytest.raises(TransientRefreshError):
        tokens.refresh(expiring)
    row = reload(expiring)
    assert (row.access_token, row.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)
    assert row.consecutive_failures == 1 and type(exc).__name__ in row.last_error


def test_backoff_grows_and_is_recorded(rsps, expiring):
    for _ in range(3):
        add_refresh(rsps, status=503, json={"message": "unavailable"})
    delays = []
    for _ in range(3):
        with pytest.raises(TransientRefreshError):
            tokens.refresh(expiring, force=True)
        row = reload(expiring)
        delays.append((row.next_attempt_at - timezone.now()).total_seconds())
    assert delays[0] < delays[1] < delays[2] <= 3600
    assert reload(expiring).consecutive_failures == 3
    assert tokens.backoff_delay(20) == timedelta(hours=1)
    # A connection in backoff is not due for the batch refresh.
    assert not LexofficeConnection.objects.due_for_refresh().filter(pk=expiring.pk).exists()


@pytest.mark.parametrize("error", ["invalid_client", "unauthorized_client"])
def test_client_errors_are_loud_and_leave_the_connection(rsps, expiring, error):
    add_refresh(rsps, status=401 if error == "invalid_client" else 400, json={"error": error})
    with pytest.raises(ClientConfigurationError, match="SOCIAL_AUTH_LEXOFFICE_SECRET"):
        tokens.refresh(expiring)
    row = reload(expiring)
    assert row.status == LexofficeConnection.Status.ACTIVE
    assert (row.access_token, row.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)
    assert row.consecutive_failures == 0 and error in row.last_error


def test_no_refresh_token_means_reauthorization(rsps, make_connection):
    connection = make_connection(refresh_token="", expires_at=None)
    with pytest.raises(ReauthorizationRequired):
        tokens.refresh(connection)
    assert reload(connection).status == LexofficeConnection.Status.REAUTHORIZATION_REQUIRED


def test_public_client_sends_client_id_in_body_and_no_basic_auth(rsps, expiring, settings):
    settings.SOCIAL_AUTH_LEXOFFICE_SECRET = ""
    add_refresh(rsps)
    tokens.refresh(expiring)
    call = rsps.calls[0]
    assert "Authorization" not in call.request.headers
    assert form(call)["client_id"] == "test-client-id"
    assert "client_secret" not in form(call)


def test_sec15_revoke_posts_the_refresh_token_and_clears_tokens(
    rsps, make_connection, capture_signal
):
    connection = make_connection()
    rsps.add(responses.POST, REVOKE_URL, status=200)
    received = capture_signal(signals.connection_revoked)
    assert tokens.revoke(connection) is True
    call = rsps.calls[0]
    assert call.request.headers["Authorization"] == BASIC
    assert form(call) == {"token": REFRESH_TOKEN}
    row = reload(connection)
    assert row.status == LexofficeConnection.Status.REVOKED
    assert row.access_token == "" and row.refresh_token == "" and row.last_error == ""
    assert [kw["revoked_at_lexware"] for kw in received] == [True]


@pytest.mark.parametrize(
    "kwargs",
    [{"status": 503, "json": {"message": "down"}}, {"body": requests.ConnectionError("reset")}],
    ids=["503", "unreachable"],
)
def test_sec15_revoke_clears_local_tokens_even_when_lexware_fails(rsps, make_connection, kwargs):
    connection = make_connection()
    rsps.add(responses.POST, REVOKE_URL, **kwargs)
    assert tokens.revoke(connection) is False
    row = reload(connection)
    assert row.status == LexofficeConnection.Status.REVOKED
    assert row.access_token == "" and row.refresh_token == ""
    assert row.last_error.startswith("revoke")
    assert_no_token(row.last_error)


def test_deleting_a_user_revokes_at_lexware_first(rsps, make_connection, user):
    make_connection()
    rsps.add(responses.POST, REVOKE_URL, status=200)
    user.delete()
    assert form(rsps.calls[0]) == {"token": REFRESH_TOKEN}
    assert LexofficeConnection.objects.count() == 0


def test_deleting_a_connection_when_lexware_is_down_still_deletes(rsps, make_connection, caplog):
    connection = make_connection()
    rsps.add(responses.POST, REVOKE_URL, body=requests.ConnectionError("down"))
    connection.delete()
    assert LexofficeConnection.objects.count() == 0
    assert "could not confirm the revocation" in caplog.text
    assert_no_token(caplog.text)


def test_deleting_a_revoked_connection_calls_nobody(rsps, make_connection):
    make_connection(
        status=LexofficeConnection.Status.REVOKED, access_token="", refresh_token=""
    ).delete()
    assert len(rsps.calls) == 0


def test_a_redirect_from_the_token_endpoint_is_not_followed(rsps, expiring):
    rsps.add(
        responses.POST,
        TOKEN_URL,
        status=302,
        headers={"Location": "https://evil.test/steal"},
    )
    with pytest.raises(TransientRefreshError):
        tokens.refresh(expiring)
    assert len(rsps.calls) == 1  # evil.test was never asked
    assert reload(expiring).refresh_token == REFRESH_TOKEN


def test_what_refresh_remembers_of_the_callers_row_shows_no_token(make_connection):
    seen = tokens._seen_state(make_connection())
    assert seen is not None and seen.access_token == ACCESS_TOKEN
    assert_no_token(repr(seen) + str(seen), [ACCESS_TOKEN])
