"""``manage.py refresh_lexoffice_tokens`` and ``reencrypt_lexoffice_tokens``:
stdout, stderr and exit status asserted together."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import responses
from django.utils import timezone

from django_lexoffice.models import LexofficeConnection

from .conftest import ACCESS_TOKEN, REFRESH_TOKEN, raw_token_columns, run_command
from .lexware_responses import TOKEN_URL, add_refresh, form, token_response

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str, int]:
    return run_command("refresh_lexoffice_tokens", *args)


def in_(seconds):
    return timezone.now() + timedelta(seconds=seconds)


def snapshot():
    return [
        (c.pk, c.access_token, c.refresh_token, c.expires_at, c.status, c.consecutive_failures)
        for c in LexofficeConnection.objects.order_by("pk")
    ]


def test_nothing_to_do_says_so(rsps, make_connection):
    make_connection(expires_at=in_(3600))
    assert run() == ("No connections need refreshing.\n", "", 0)


def test_refreshes_expiring_connections_soonest_first(rsps, make_connection):
    later = make_connection(organization_id="later", company_name="Later", expires_at=in_(200))
    sooner = make_connection(organization_id="sooner", company_name="Sooner", expires_at=in_(10))
    make_connection(organization_id="fresh", company_name="Fresh", expires_at=in_(3600))
    for i in range(2):
        add_refresh(rsps, json=token_response(access=f"a{i}", refresh=f"r{i}"))
    out, err, code = run("-v", "2")
    assert (err, code) == ("", 0)
    assert out == (
        f"Refreshed Sooner (#{sooner.pk})\n"
        f"Refreshed Later (#{later.pk})\n"
        "Refreshed 2, skipped 0, failed 0, re-authorization required 0.\n"
        '3 connections need 0.0002 req/s of 1000.0 (0 %) to refresh under "keep_fresh".\n'
    )
    assert LexofficeConnection.objects.get(pk=sooner.pk).refresh_token == "r0"
    assert LexofficeConnection.objects.get(pk=later.pk).refresh_token == "r1"


def test_dry_run_changes_nothing(rsps, make_connection):
    make_connection(expires_at=in_(10))
    make_connection(organization_id="o2", expires_at=None)
    before = snapshot()
    out, err, code = run("--dry-run")
    assert (out, err, code) == ("Would refresh 2 connections.\n", "", 0)
    assert snapshot() == before and len(rsps.calls) == 0
    out, _, _ = run("--dry-run", "-v", "2")
    assert out.count("Would refresh Testfirma GmbH") == 2


def test_failure_goes_to_stderr_and_exit_status_1(rsps, make_connection):
    ok = make_connection(organization_id="ok", company_name="Ok", expires_at=in_(10))
    bad = make_connection(organization_id="bad", company_name="Bad", expires_at=in_(5))
    gone = make_connection(organization_id="gone", company_name="Gone", expires_at=in_(20))
    add_refresh(rsps, status=503, json={"message": "Service Unavailable"})
    add_refresh(rsps)
    add_refresh(rsps, status=400, json={"error": "invalid_grant"})
    out, err, code = run()
    assert out == "Refreshed 1, skipped 0, failed 1, re-authorization required 1.\n"
    assert err.startswith(f"Failed to refresh Bad (#{bad.pk}): Lexware could not refresh")
    assert "HTTP 503" in err and err.endswith("CommandError: 1 refresh failed.\n")
    assert code == 1
    assert LexofficeConnection.objects.get(pk=ok.pk).access_token != ACCESS_TOKEN
    assert LexofficeConnection.objects.get(pk=bad.pk).refresh_token == REFRESH_TOKEN
    assert LexofficeConnection.objects.get(pk=gone.pk).status == "reauthorization_required"
    assert REFRESH_TOKEN[:16] not in out + err


def test_client_refused_stops_the_run(rsps, make_connection):
    make_connection(organization_id="a", expires_at=in_(5))
    make_connection(organization_id="b", expires_at=in_(10))
    add_refresh(rsps, status=400, json={"error": "unauthorized_client"})
    out, err, code = run()
    assert len(rsps.calls) == 1 and code == 1
    assert "Stopped: Lexware refused the client" in err
    assert out == "Refreshed 0, skipped 0, failed 1, re-authorization required 0.\n"


@pytest.fixture
def mine_and_theirs(make_connection, django_user_model):
    other = django_user_model.objects.create_user("other")
    make_connection(organization_id="mine", expires_at=in_(3600))
    make_connection(user=other, organization_id="theirs", expires_at=in_(3600))


def test_user_narrows_a_forced_run(rsps, mine_and_theirs):
    add_refresh(rsps)
    assert run("--force", "--user", "erika") == (
        "Refreshed 1, skipped 0, failed 0, re-authorization required 0.\n",
        "",
        0,
    )


def test_organization_narrows_a_forced_run(rsps, mine_and_theirs):
    add_refresh(rsps)
    out, err, code = run("--force", "--organization", "theirs")
    assert (out[: len("Refreshed 1,")], err, code) == ("Refreshed 1,", "", 0)


def test_limit_stops_a_forced_run(rsps, mine_and_theirs):
    add_refresh(rsps)
    out, err, code = run("--force", "--limit", "1")
    assert (out[: len("Refreshed 1,")], err, code) == ("Refreshed 1,", "", 0)
    assert len(rsps.calls) == 1


def test_unknown_organization_has_nothing_to_refresh(rsps, mine_and_theirs):
    assert run("--organization", "nobody") == ("No connections need refreshing.\n", "", 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--user", "nobody"), "No user with username 'nobody'."),
        (("--limit", "0"), "--limit must be at least 1."),
        (("--margin", "-1"), "--margin must be zero or positive."),
    ],
)
def test_bad_arguments(args, message):
    out, err, code = run(*args)
    assert (out, err, code) == ("", f"CommandError: {message}\n", 1)


def test_revoked_and_backing_off_connections_are_left_alone(rsps, make_connection):
    make_connection(organization_id="r", status="revoked", expires_at=in_(1))
    make_connection(organization_id="b", expires_at=in_(1), next_attempt_at=in_(600))
    out, err, code = run()
    assert (err, code) == ("", 0)
    assert out.startswith("1 waiting to retry after a failure; next attempt ")
    assert len(rsps.calls) == 0


def test_connections_waiting_to_retry_are_reported_never_hidden(rsps, make_connection):
    from django.utils.formats import date_format

    waiting = make_connection(organization_id="b", expires_at=in_(1), next_attempt_at=in_(600))
    clock = date_format(timezone.localtime(waiting.next_attempt_at), "H:i")
    out, err, code = run("-v", "2")
    assert (err, code) == ("", 0)
    assert out == (
        f"Waiting to retry Testfirma GmbH (#{waiting.pk}) after a failure; next attempt {clock}\n"
        f"1 waiting to retry after a failure; next attempt {clock} (--retry-now retries at once).\n"
        '1 connection needs 0.0001 req/s of 1000.0 (0 %) to refresh under "keep_fresh".\n'
    )


def test_retry_now_retries_connections_waiting_for_their_retry(rsps, make_connection):
    waiting = make_connection(organization_id="b", expires_at=in_(1), next_attempt_at=in_(600))
    add_refresh(rsps)
    out, err, code = run("--retry-now")
    assert (out, err, code) == (
        "Refreshed 1, skipped 0, failed 0, re-authorization required 0.\n",
        "",
        0,
    )
    waiting.refresh_from_db()
    assert waiting.next_attempt_at is None and waiting.expires_at > in_(3600)


def test_batches_visit_every_row_once(rsps, make_connection):
    from django_lexoffice.batch import refresh_due_connections

    for i in range(7):
        make_connection(organization_id=f"o{i}", expires_at=in_(i) if i % 3 else None)
    rsps.add_callback(
        responses.POST,
        TOKEN_URL,
        callback=lambda request: (200, {}, __import__("json").dumps(token_response())),
    )
    seen = []
    summary = refresh_due_connections(batch_size=2, report=lambda c, o, d: seen.append(c.pk))
    assert summary.refreshed == 7 and len(seen) == len(set(seen)) == 7
    assert len(rsps.calls) == 7


def test_queries_per_connection_stay_flat(rsps, make_connection, django_assert_max_num_queries):
    from django_lexoffice.batch import refresh_due_connections

    rsps.add_callback(
        responses.POST,
        TOKEN_URL,
        callback=lambda request: (200, {}, __import__("json").dumps(token_response())),
    )
    for i in range(20):
        make_connection(organization_id=f"o{i}", expires_at=in_(i))
    # Per refreshed row: the unlocked re-read before taking a slot, savepoint, SELECT ...
    # FOR UPDATE, UPDATE, release; plus a few page queries and one count of the connections
    # waiting for a retry for the run.
    with django_assert_max_num_queries(20 * 5 + 5):
        assert refresh_due_connections(batch_size=10).refreshed == 20


def test_progress_bar_only_on_a_terminal(rsps, make_connection, monkeypatch):
    from django_lexoffice.management.commands.refresh_lexoffice_tokens import Command

    command = Command()
    monkeypatch.setattr("sys.stdout.isatty", lambda: False, raising=False)
    assert command._progress_bar(1) is None


def run_reencrypt(*args: str) -> tuple[str, str, int]:
    return run_command("reencrypt_lexoffice_tokens", *args)


def test_reencrypt_rewrites_every_row_with_the_first_key(make_connection, settings):
    from cryptography.fernet import Fernet

    old_key = settings.FIELD_ENCRYPTION_KEY
    connection = make_connection()
    before = raw_token_columns(connection.pk)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = [new_key, old_key]  # a key-list deploy
    assert run_reencrypt("--dry-run") == (
        "Would re-encrypt 1 connection; every row decrypts.\n",
        "",
        0,
    )
    assert raw_token_columns(connection.pk) == before
    assert run_reencrypt() == ("Re-encrypted 1 connection with the newest key.\n", "", 0)
    after = raw_token_columns(connection.pk)
    assert after != before
    assert Fernet(new_key).decrypt(after[1].encode()).decode() == REFRESH_TOKEN
    settings.FIELD_ENCRYPTION_KEY = [new_key]  # old key removed
    assert LexofficeConnection.objects.get(pk=connection.pk).refresh_token == REFRESH_TOKEN


def test_reencrypt_reports_rows_it_cannot_decrypt(make_connection, settings):
    from cryptography.fernet import Fernet

    make_connection()
    settings.FIELD_ENCRYPTION_KEY = Fernet.generate_key().decode()
    _, err, code = run_reencrypt()
    assert code == 1 and "CommandError: Cannot decrypt LexofficeConnection" in err


def test_network_errors_are_reported_without_tokens(rsps, make_connection):
    make_connection(expires_at=in_(5))
    rsps.add(responses.POST, TOKEN_URL, body=requests.ReadTimeout("read timed out"))
    _, err, code = run()
    assert code == 1 and "ReadTimeout" in err and REFRESH_TOKEN[:16] not in err
    assert form(rsps.calls[0])["grant_type"] == "refresh_token"
