"""A rotated refresh token is never lost (issue "Reliability", SECURITY.md 14).

Each test here pins one way a connection used to be lost or a refresh to be repeated:
answers that fail validation, refreshes inside the caller's transaction, a database
error after Lexware rotated, a cache outage, a reconnect, a deletion. The PostgreSQL
multi-process proofs live in ``test_concurrency.py``.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.core.cache import caches
from django.db import DatabaseError, transaction
from django.test import override_settings
from django.utils import timezone

from django_lexoffice import batch, http, signals, tokens
from django_lexoffice.client import LexofficeClient
from django_lexoffice.exceptions import (
    ClientConfigurationError,
    ConnectionNotActive,
    OwnTransactionUnavailable,
    RateLimitTimeout,
    RateLimitUnavailable,
    ReauthorizationRequired,
    TransientRefreshError,
)
from django_lexoffice.models import LexofficeConnection
from django_lexoffice.pipeline import save_connection
from django_lexoffice.token_response import DEFAULT_EXPIRES_IN, parse_token_response
from django_lexoffice.tokens import RefreshOutcome

from .conftest import ACCESS_TOKEN, REFRESH_TOKEN
from .lexware_responses import (
    NEW_ACCESS,
    NEW_REFRESH,
    REVOKE_URL,
    TOKEN_URL,
    add_refresh,
    form,
    token_response,
)

pytestmark = pytest.mark.django_db

API = "https://api.lexware.io"
BROKEN_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "broken": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        # Port 1: nothing listens, the connection is refused at once.
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    },
}


@pytest.fixture
def expiring(make_connection):
    return make_connection(expires_at=timezone.now() + timedelta(seconds=30))


def reload(connection):
    return LexofficeConnection.objects.get(pk=connection.pk)


# -- one validation for refresh and code exchange ---------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (14399, 14399),
        ("14399", 14399),
        (None, DEFAULT_EXPIRES_IN),
        (0, DEFAULT_EXPIRES_IN),
        (-1, DEFAULT_EXPIRES_IN),
        (1e12, DEFAULT_EXPIRES_IN),
        (float("nan"), DEFAULT_EXPIRES_IN),
        (float("inf"), DEFAULT_EXPIRES_IN),
        (1e300, DEFAULT_EXPIRES_IN),
        (True, DEFAULT_EXPIRES_IN),
        ("soon", DEFAULT_EXPIRES_IN),
    ],
)
def test_odd_expiry_is_replaced_by_a_safe_default(expires_in, expected):
    grant = parse_token_response(token_response(expires_in=expires_in))
    assert grant.usable and grant.expires_in == expected


@pytest.mark.parametrize(
    "access_token",
    ["", "a b", "tok\r\nX-Injected: 1", "ä" * 10, "x" * 8193, 42, None],
    ids=["empty", "space", "crlf", "non-ascii", "too-long", "number", "missing"],
)
def test_access_token_must_be_b64token(access_token):
    grant = parse_token_response(token_response(access=access_token))
    assert grant.access_token is None and not grant.usable
    assert grant.refresh_token == NEW_REFRESH


@pytest.mark.parametrize(
    "refresh_token", ["r\nr", "\x00" * 128, "x" * 8193, 7], ids=["lf", "nul", "long", "number"]
)
def test_refresh_token_must_be_printable_ascii(refresh_token):
    grant = parse_token_response(token_response(refresh=refresh_token))
    assert grant.refresh_token is None and grant.refresh_token_refused and not grant.usable


def test_token_response_repr_shows_no_token():
    assert NEW_ACCESS not in repr(parse_token_response(token_response()))
    assert NEW_REFRESH not in repr(parse_token_response(token_response()))


@pytest.mark.parametrize("expires_in", ["14399", None, 0, -1, 1e12])
def test_refresh_with_odd_expiry_stores_the_new_pair(rsps, expiring, expires_in, caplog):
    add_refresh(rsps, json=token_response(expires_in=expires_in))
    assert tokens.refresh(expiring).refreshed
    row = reload(expiring)
    assert (row.access_token, row.refresh_token) == (NEW_ACCESS, NEW_REFRESH)
    lifetime = (row.expires_at - timezone.now()).total_seconds()
    assert 0 < lifetime <= 14399
    if expires_in != "14399":
        assert "expires_in unusable" in caplog.text


@pytest.mark.parametrize(
    "access_token", ["x" * 8193, "tok\r\nX-Injected: 1", ""], ids=["too-long", "crlf", "empty"]
)
def test_refresh_keeps_the_new_refresh_token_when_the_access_token_is_refused(
    rsps, expiring, access_token
):
    add_refresh(rsps, json=token_response(access=access_token))
    with pytest.raises(TransientRefreshError) as excinfo:
        tokens.refresh(expiring)
    row = reload(expiring)
    assert row.refresh_token == NEW_REFRESH  # the old one is dead at Lexware
    assert row.access_token == ACCESS_TOKEN and row.status == "active"
    assert "the new refresh token was stored" in str(excinfo.value)
    assert "tokens kept" not in str(excinfo.value)
    assert "\r" not in str(excinfo.value) and "Injected" not in row.last_error


def test_refresh_with_a_malformed_refresh_token_needs_reauthorization(rsps, expiring):
    add_refresh(rsps, json=token_response(refresh="bad\r\ntoken"))
    with pytest.raises(ReauthorizationRequired):
        tokens.refresh(expiring)
    row = reload(expiring)
    assert row.status == "reauthorization_required"
    assert "bad" not in row.last_error


def _callback_with_token_body(client, body):
    response = client.post("/lexoffice/login/")
    params = {k: v[0] for k, v in parse_qs(urlsplit(response["Location"]).query).items()}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, TOKEN_URL, body=body, content_type="application/json")
        rsps.add(responses.POST, REVOKE_URL, body="")
        profile = {
            "organizationId": "org-1",
            "companyName": "Testfirma GmbH",
            "connectionId": "con-1",
            "created": {"userId": "user-1", "userName": "Erika", "userEmail": "e@x.test"},
        }
        rsps.add(responses.GET, f"{API}/v1/profile", json=profile)
        answer = client.get("/lexoffice/callback/", {"state": params["state"], "code": "c0de"})
        revoked = [form(call)["token"] for call in rsps.calls if call.request.url == REVOKE_URL]
    return answer, revoked


@pytest.mark.parametrize("expires_in", ["NaN", "Infinity", "1e300", "-5", "0"])
def test_code_exchange_with_odd_expiry_connects_with_a_safe_default(client, expires_in):
    body = json.dumps(token_response()).replace("14399", expires_in)
    response, revoked = _callback_with_token_body(client, body)
    assert response.status_code == 302 and revoked == []
    connection = LexofficeConnection.objects.get()
    lifetime = (connection.expires_at - timezone.now()).total_seconds()
    assert 0 < lifetime <= DEFAULT_EXPIRES_IN


@pytest.mark.parametrize(
    "body",
    [
        token_response(access="x" * 5_000_000),
        token_response(access="a\r\nb"),
        token_response(refresh="r\nr"),
    ],
    ids=["5-mb-access-token", "crlf-access-token", "lf-refresh-token"],
)
def test_refused_code_exchange_revokes_the_grant_it_created(client, body):
    response, revoked = _callback_with_token_body(client, json.dumps(body))
    assert response.status_code == 502
    assert LexofficeConnection.objects.count() == 0
    expected = NEW_ACCESS if body["refresh_token"] == "r\nr" else body["refresh_token"]
    assert revoked == [expected]


# -- single-flight against the token the caller saw -------------------------------------------


def test_forced_refresh_with_a_stale_copy_does_not_refresh_again(rsps, expiring):
    stale = reload(expiring)
    add_refresh(rsps)
    tokens.refresh(expiring, force=True)
    result = tokens.refresh(stale, force=True)  # another worker's copy, loaded before
    assert result.outcome is RefreshOutcome.SKIPPED
    assert len(rsps.calls) == 1
    assert stale.access_token == NEW_ACCESS  # brought up to date


def test_after_a_401_the_client_retries_with_the_token_another_worker_stored(rsps, make_connection):
    connection = make_connection()
    worker_copy = reload(connection)
    add_refresh(rsps)
    tokens.refresh(worker_copy, force=True)  # another worker replaced the token meanwhile
    rsps.add(responses.GET, f"{API}/v1/contacts", status=401, json={"message": "Unauthorized"})
    rsps.add(responses.GET, f"{API}/v1/contacts", json={"content": []})
    with LexofficeClient(connection) as client:
        assert client.get("/v1/contacts").status_code == 200
    token_calls = [call for call in rsps.calls if call.request.url == TOKEN_URL]
    assert len(token_calls) == 1  # only the other worker's
    assert rsps.calls[-1].request.headers["Authorization"] == f"Bearer {NEW_ACCESS}"


def test_admin_style_forced_refresh_of_a_row_refreshed_meanwhile_is_skipped(rsps, expiring):
    copy = LexofficeConnection.objects.defer("access_token", "refresh_token").get(pk=expiring.pk)
    add_refresh(rsps)
    tokens.refresh(expiring, force=True)
    assert tokens.refresh(copy, force=True).outcome is RefreshOutcome.SKIPPED
    assert len(rsps.calls) == 1


# -- commits on its own ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_sqlite_refuses_a_refresh_inside_the_callers_transaction_before_calling_lexware(
    rsps, make_connection
):
    connection = make_connection(expires_at=timezone.now() + timedelta(seconds=30))
    if transaction.get_connection().vendor != "sqlite":
        pytest.skip("the PostgreSQL path is tested in test_concurrency.py")
    with pytest.raises(OwnTransactionUnavailable, match="non_atomic_requests"):
        with transaction.atomic():
            tokens.refresh(connection)
    assert len(rsps.calls) == 0
    assert reload(connection).refresh_token == REFRESH_TOKEN


def test_database_error_after_lexware_rotated_is_loud_and_recorded(
    rsps, expiring, monkeypatch, caplog
):
    add_refresh(rsps)
    original = LexofficeConnection.save

    def failing_save(self, *args, **kwargs):
        if kwargs.get("update_fields") is None and self.refresh_token == NEW_REFRESH:
            raise DatabaseError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LexofficeConnection, "save", failing_save)
    with caplog.at_level(logging.ERROR, logger="django_lexoffice.tokens"):
        with pytest.raises(ReauthorizationRequired, match="must reconnect"):
            tokens.refresh(expiring)
    assert f"lexoffice connection {expiring.pk}" in caplog.text
    assert "must reconnect" in caplog.text and NEW_REFRESH not in caplog.text
    row = reload(expiring)
    assert row.status == "reauthorization_required" and "storing them failed" in row.last_error


# -- the rate limit: before the lock, and a cache outage -------------------------------------


@override_settings(CACHES=BROKEN_CACHE, LEXOFFICE_RATE_LIMIT_CACHE="broken")
def test_cache_outage_raises_a_clear_error_and_sends_nothing(rsps, expiring):
    with pytest.raises(RateLimitUnavailable, match="LEXOFFICE_RATE_LIMIT_CACHE='broken'"):
        tokens.refresh(expiring)
    with pytest.raises(RateLimitUnavailable), LexofficeClient(reload(expiring)) as client:
        client.get("/v1/profile")
    assert len(rsps.calls) == 0
    assert reload(expiring).refresh_token == REFRESH_TOKEN


# -- batch workers: a slot only for a refresh that will be sent ------------------------------


def as_a_batch_run_reads_it(connection):
    """The row as ``batch.iter_due`` loads it: no tokens, the fields that decide "due"."""
    return LexofficeConnection.objects.only(*batch._ROW_FIELDS).get(pk=connection.pk)


@pytest.fixture
def slots(monkeypatch):
    """The rate-limit slots tokens.refresh takes."""
    taken = []
    monkeypatch.setattr(tokens, "take_slots", lambda count=1: taken.append(count) or 0.0)
    return taken


def test_a_batch_worker_skips_a_row_another_worker_is_refreshing_without_a_slot(
    rsps, expiring, slots
):
    with http.refresh_claim(expiring.pk) as claimed:  # another worker, mid-refresh
        assert claimed
        result = tokens.attempt_refresh(as_a_batch_run_reads_it(expiring), skip_locked=True)
    assert result.outcome is RefreshOutcome.SKIPPED
    assert slots == [] and len(rsps.calls) == 0
    assert reload(expiring).refresh_token == REFRESH_TOKEN


def test_a_batch_worker_skips_a_row_refreshed_since_it_read_it_without_a_slot(
    rsps, expiring, slots
):
    stale = as_a_batch_run_reads_it(expiring)
    add_refresh(rsps)
    assert tokens.refresh(reload(expiring), force=True).refreshed  # another worker, done
    result = tokens.attempt_refresh(stale, skip_locked=True)
    assert result.outcome is RefreshOutcome.SKIPPED
    assert slots == [1] and len(rsps.calls) == 1  # the other worker's slot and request only


def test_a_batch_worker_releases_its_claim_whatever_the_refresh_did(rsps, expiring, slots):
    add_refresh(rsps, status=503)
    failed = tokens.attempt_refresh(as_a_batch_run_reads_it(expiring), skip_locked=True)
    assert failed.outcome is RefreshOutcome.TRANSIENT_FAILURE
    add_refresh(rsps)
    refreshed = tokens.attempt_refresh(
        as_a_batch_run_reads_it(expiring), skip_locked=True, retry_now=True
    )
    assert refreshed.outcome is RefreshOutcome.REFRESHED
    with http.refresh_claim(expiring.pk) as claimed:
        assert claimed
    assert slots == [1, 1]


def test_a_claim_that_cannot_be_released_runs_out_and_the_refresh_stands(
    rsps, expiring, monkeypatch, caplog
):
    add_refresh(rsps)
    cache = caches["default"]
    original = cache.delete

    def failing_delete(key, *args, **kwargs):
        if key.startswith("lexoffice:refresh-claim:"):
            raise ConnectionError("redis went away")
        return original(key, *args, **kwargs)

    monkeypatch.setattr(cache, "delete", failing_delete)
    with caplog.at_level(logging.WARNING, logger="django_lexoffice.http"):
        result = tokens.attempt_refresh(as_a_batch_run_reads_it(expiring), skip_locked=True)
    assert result.outcome is RefreshOutcome.REFRESHED
    assert f"refresh claim of lexoffice connection {expiring.pk}" in caplog.text
    monkeypatch.undo()
    key = f"lexoffice:refresh-claim:{expiring.pk}"
    assert cache.get(key) is not None  # held until it runs out ...
    cache.delete(key)  # ... which later tests with the same pk must not wait for


@override_settings(CACHES=BROKEN_CACHE, LEXOFFICE_RATE_LIMIT_CACHE="broken")
def test_cache_outage_stops_a_batch_refresh_before_anything_is_sent(rsps, expiring):
    result = tokens.attempt_refresh(as_a_batch_run_reads_it(expiring), skip_locked=True)
    assert result.outcome is RefreshOutcome.RATE_LIMITED
    assert "LEXOFFICE_RATE_LIMIT_CACHE='broken'" in result.detail
    assert len(rsps.calls) == 0


@override_settings(CACHES=BROKEN_CACHE, LEXOFFICE_RATE_LIMIT_CACHE="broken")
def test_cache_outage_at_the_callback_happens_before_the_code_exchange(client, rsps):
    response = client.post("/lexoffice/login/")
    state = parse_qs(urlsplit(response["Location"]).query)["state"][0]
    response = client.get("/lexoffice/callback/", {"state": state, "code": "c0de"})
    assert response.status_code == 503
    assert len(rsps.calls) == 0  # no grant was issued that nobody would store
    assert LexofficeConnection.objects.count() == 0


@override_settings(CACHES=BROKEN_CACHE, LEXOFFICE_RATE_LIMIT_CACHE="broken")
def test_cache_outage_revoke_still_clears_the_tokens(rsps, make_connection):
    connection = make_connection()
    assert tokens.revoke(connection) is False
    row = reload(connection)
    assert row.status == "revoked" and row.refresh_token == ""
    assert "revoke not sent" in row.last_error and len(rsps.calls) == 0


def test_refresh_takes_its_slot_before_locking_the_row(rsps, expiring, monkeypatch):
    order = []
    monkeypatch.setattr(tokens, "take_slots", lambda *a, **k: order.append("slot"))
    original = tokens.lock_timeout

    def recording_lock_timeout(pk):
        order.append("lock")
        return original(pk)

    monkeypatch.setattr(tokens, "lock_timeout", recording_lock_timeout)
    add_refresh(rsps)
    tokens.refresh(expiring)
    assert order == ["slot", "lock"]


# -- one outcome vocabulary ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ReauthorizationRequired("x"), RefreshOutcome.REAUTHORIZATION_REQUIRED),
        (ConnectionNotActive("x"), RefreshOutcome.NOT_ACTIVE),
        (LexofficeConnection.DoesNotExist("x"), RefreshOutcome.NOT_ACTIVE),
        (ClientConfigurationError("x"), RefreshOutcome.CLIENT_REFUSED),
        (RateLimitTimeout("x"), RefreshOutcome.RATE_LIMITED),
        (RateLimitUnavailable("x"), RefreshOutcome.RATE_LIMITED),
        (TransientRefreshError("x"), RefreshOutcome.TRANSIENT_FAILURE),
    ],
)
def test_every_refresh_error_has_one_outcome(error, outcome):
    assert tokens.classify(error) is outcome


def test_attempt_refresh_reports_outcomes_instead_of_raising(rsps, make_connection):
    expiring = make_connection(expires_at=timezone.now() + timedelta(seconds=120))
    add_refresh(rsps, status=503, json={"message": "down"})
    result = tokens.attempt_refresh(expiring)
    assert result.outcome is RefreshOutcome.TRANSIENT_FAILURE and result.outcome.failed
    assert "HTTP 503" in result.detail
    assert tokens.attempt_refresh(expiring).outcome is RefreshOutcome.WAITING_FOR_RETRY
    gone = LexofficeConnection(pk=987654)
    assert tokens.attempt_refresh(gone).outcome is RefreshOutcome.NOT_ACTIVE
    revoked = make_connection(organization_id="other", status="revoked")
    assert tokens.attempt_refresh(revoked).outcome is RefreshOutcome.NOT_ACTIVE


def test_needs_refresh_honours_margin_and_backoff(make_connection):
    soon = timezone.now() + timedelta(seconds=120)
    assert make_connection(organization_id="a", expires_at=soon).needs_refresh()
    later = timezone.now() + timedelta(hours=3)
    assert not make_connection(organization_id="b", expires_at=later).needs_refresh()
    waiting = make_connection(
        organization_id="c", expires_at=soon, next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    assert not waiting.needs_refresh() and not waiting.needs_refresh(urgent=True)
    waiting.expires_at = timezone.now() + timedelta(seconds=5)
    assert not waiting.needs_refresh() and waiting.needs_refresh(urgent=True)
    due = set(LexofficeConnection.objects.due_for_refresh().values_list("organization_id", flat=1))
    assert due == {"a"}


# -- reconnect and deletion leave no live grant behind ------------------------------------------


class _Backend:
    name = "lexoffice"

    class strategy:
        request = None


def _profile(connection_id, refresh=NEW_REFRESH):
    return {
        **token_response(refresh=refresh),
        "organizationId": "aa93e8a8-2aa3-470b-b914-caad8a255dd8",
        "companyName": "Testfirma GmbH",
        "connectionId": connection_id,
        "created": {"userId": "u1", "userName": "Erika", "userEmail": "e@x.test"},
    }


def test_reconnect_with_a_new_connection_id_revokes_the_replaced_grant(
    rsps, make_connection, user, django_capture_on_commit_callbacks
):
    make_connection(connection_id="old-connection")
    rsps.add(responses.POST, REVOKE_URL, body="")
    with django_capture_on_commit_callbacks(execute=True):
        save_connection(_Backend(), user=user, response=_profile("new-connection"))
    assert [form(call)["token"] for call in rsps.calls] == [REFRESH_TOKEN]
    assert LexofficeConnection.objects.get().refresh_token == NEW_REFRESH


def test_reconnect_with_the_same_connection_id_revokes_nothing(
    rsps, make_connection, user, django_capture_on_commit_callbacks
):
    make_connection(connection_id="same")
    with django_capture_on_commit_callbacks(execute=True):
        save_connection(_Backend(), user=user, response=_profile("same"))
    assert len(rsps.calls) == 0


def test_deleting_a_connection_revokes_and_sends_connection_revoked(
    rsps, make_connection, capture_signal
):
    connection = make_connection()
    rsps.add(responses.POST, REVOKE_URL, body="")
    received = capture_signal(signals.connection_revoked)
    connection.user.delete()
    assert [form(call)["token"] for call in rsps.calls] == [REFRESH_TOKEN]
    assert len(received) == 1
    assert received[0]["deleted"] is True and received[0]["revoked_at_lexware"] is True
    assert received[0]["ended_in_lexoffice"] is False
    assert LexofficeConnection.objects.count() == 0


def test_deleting_revokes_the_token_stored_now_not_the_callers_stale_copy(rsps, make_connection):
    connection = make_connection()
    stale = reload(connection)
    add_refresh(rsps)
    tokens.refresh(connection, force=True)  # a refresh committed before the delete
    rsps.add(responses.POST, REVOKE_URL, body="")
    stale.delete()
    assert form(rsps.calls[-1])["token"] == NEW_REFRESH
