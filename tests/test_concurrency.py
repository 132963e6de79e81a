"""Single-flight refresh proven on PostgreSQL with several OS processes (SECURITY.md 14).

SQLite ignores row locks, so these run only with LEXOFFICE_TEST_DB=postgres. The
fake Lexware answers over real HTTP from this process's live server; it rotates
refresh tokens and kills the old one, so a second refresh with the same token
would break the connection, exactly like Lexware.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from django_lexoffice.models import LexofficeConnection
from django_lexoffice.testing import FakeLexware

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        os.environ.get("LEXOFFICE_TEST_DB") != "postgres",
        reason="row locks need PostgreSQL: run with LEXOFFICE_TEST_DB=postgres",
    ),
]

WORKERS = 4
ROUNDS = 8
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake(live_server, settings):
    fake = FakeLexware()
    fake.reset()
    fake.register_client(
        settings.SOCIAL_AUTH_LEXOFFICE_KEY,
        secret=settings.SOCIAL_AUTH_LEXOFFICE_SECRET,
        redirect_uris=["http://testserver/lexoffice/callback/"],
    )
    yield fake
    fake.reset()


def worker_env(live_server) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_worker",
        "LEXOFFICE_TEST_DB": "postgres",
        "LEXOFFICE_WORKER_DB_NAME": db_connection.settings_dict["NAME"],
        "LEXOFFICE_WORKER_FAKE_URL": f"{live_server.url}/fake-lexware",
        "PYTHONPATH": str(ROOT),
    }


def granted_connection(fake, user):
    """``user``'s connection holding a live grant, due for a refresh (expiring in 10 s)."""
    return fake.connect(user, expires_in=10)


def wait_for(paths_glob: str, directory: Path, count: int, timeout: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(directory.glob(paths_glob))
        if len(found) >= count:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {count} x {paths_glob} in {directory}")


def start_workers(connection, live_server, tmp_path, mode, rounds=1, env=None):
    """WORKERS processes of ``tests.refresh_worker`` in ``mode`` (see its docstring)."""
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.refresh_worker",
                str(connection.pk),
                str(rounds),
                str(tmp_path),
                mode,
            ],
            env=env or worker_env(live_server),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]


def finish(processes):
    """Wait for the workers; each must exit 0."""
    for process in processes:
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert process.returncode == 0, err


def test_sec14_four_processes_refresh_one_connection_lexware_sees_one_refresh(
    transactional_db, live_server, fake, user, tmp_path
):
    connection = granted_connection(fake, user)
    processes = start_workers(connection, live_server, tmp_path, "due", rounds=ROUNDS)
    try:
        wait_for("ready-*", tmp_path, WORKERS)
        for round_number in range(ROUNDS):
            before = fake.count("refresh")
            # Make the connection due again, as time passing would.
            row = LexofficeConnection.objects.get(pk=connection.pk)
            row.expires_at = timezone.now() + timedelta(seconds=5)
            row.save(update_fields=["expires_at"])
            (tmp_path / f"go-{round_number}").write_text("go")
            done = wait_for(f"done-{round_number}-*", tmp_path, WORKERS)
            outcomes = sorted(path.read_text() for path in done)
            assert outcomes == ["refreshed"] + ["skipped"] * (WORKERS - 1), outcomes
            assert fake.count("refresh") == before + 1
            row.refresh_from_db()
            assert row.status == "active"
            assert fake.is_refresh_token_valid(row.refresh_token)
            assert fake.is_access_token_valid(row.access_token)
    finally:
        finish(processes)


def test_sec14_overlapping_command_runs_refresh_each_connection_once(
    transactional_db, live_server, fake, django_user_model
):
    users = [django_user_model.objects.create_user(f"u{i}") for i in range(30)]
    connections = [granted_connection(fake, u) for u in users]
    # A little latency per refresh so the two runs really overlap.
    fake.inject("refresh", "slow", times=1000, seconds=0.03)
    command = [sys.executable, "-m", "django", "refresh_lexoffice_tokens", "-v", "2"]
    runs = [
        subprocess.Popen(
            command,
            env=worker_env(live_server),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    refreshed_lines = [
        line
        for out, _ in results
        for line in out.splitlines()
        if line.startswith("Refreshed ") and "(#" in line
    ]
    assert len(refreshed_lines) == len(set(refreshed_lines)) == len(connections)
    assert fake.count("refresh") == len(connections)
    # Both runs did part of the work: they really overlapped.
    per_run = [
        sum(line.startswith("Refreshed ") and "(#" in line for line in out.splitlines())
        for out, _ in results
    ]
    assert all(count > 0 for count in per_run), per_run
    for connection in connections:
        connection.refresh_from_db()
        assert fake.is_refresh_token_valid(connection.refresh_token)


def test_overlapping_batch_workers_spend_one_rate_limit_slot_per_refresh(
    transactional_db, live_server, fake, django_user_model, tmp_path, redis_url
):
    """Four batch runs over the same due rows, sharing Redis as a deploy does: every slot
    they take goes to a refresh Lexware sees. (Without the refresh claim and the re-read,
    each worker took a slot for a row and all but one then skipped it under the row lock:
    four workers reached a quarter of the rate.)"""
    connections = [
        granted_connection(fake, django_user_model.objects.create_user(f"b{i}")) for i in range(24)
    ]
    env = {**worker_env(live_server), "LEXOFFICE_WORKER_REDIS_URL": redis_url}
    processes = start_workers(connections[0], live_server, tmp_path, "batch", env=env)
    try:
        wait_for("ready-*", tmp_path, WORKERS)
        (tmp_path / "go-0").write_text("go")
        done = [json.loads(path.read_text()) for path in wait_for("done-0-*", tmp_path, WORKERS)]
    finally:
        finish(processes)
    assert sum(run["refreshed"] for run in done) == len(connections) == fake.count("refresh")
    assert sum(run["slots"] for run in done) == len(connections), done
    for connection in connections:
        connection.refresh_from_db()
        assert fake.is_refresh_token_valid(connection.refresh_token)


def test_sec14_forced_refreshes_with_the_same_seen_token_make_one_refresh(
    transactional_db, live_server, fake, user, tmp_path
):
    """Eight workers got a 401 with the same token (or were told force=True): one refresh."""
    connection = granted_connection(fake, user)
    processes = start_workers(connection, live_server, tmp_path, "force", rounds=ROUNDS)
    try:
        wait_for("ready-*", tmp_path, WORKERS)
        for round_number in range(ROUNDS):
            before = fake.count("refresh")
            (tmp_path / f"load-{round_number}").write_text("load")
            wait_for(f"loaded-{round_number}-*", tmp_path, WORKERS)
            (tmp_path / f"go-{round_number}").write_text("go")
            done = wait_for(f"done-{round_number}-*", tmp_path, WORKERS)
            outcomes = sorted(path.read_text() for path in done)
            assert outcomes == ["refreshed"] + ["skipped"] * (WORKERS - 1), outcomes
            assert fake.count("refresh") == before + 1
        connection.refresh_from_db()
        assert fake.is_refresh_token_valid(connection.refresh_token)
        assert fake.is_access_token_valid(connection.access_token)
    finally:
        finish(processes)


def test_sec14_refresh_in_a_failing_atomic_request_keeps_the_rotated_tokens(
    transactional_db, live_server, fake, user, tmp_path
):
    """Views under ATOMIC_REQUESTS = True in four processes use the API and then fail: the
    refresh the first one made is committed, the others reuse it, the connection lives."""
    connection = granted_connection(fake, user)
    processes = start_workers(connection, live_server, tmp_path, "view")
    try:
        wait_for("ready-*", tmp_path, WORKERS)
        (tmp_path / "go-0").write_text("go")
        done = wait_for("done-0-*", tmp_path, WORKERS)
        assert sorted(path.read_text() for path in done) == ["500"] * WORKERS
    finally:
        finish(processes)
    assert fake.count("refresh") == 1
    connection.refresh_from_db()
    assert connection.status == "active"
    assert fake.is_refresh_token_valid(connection.refresh_token)
    assert fake.is_access_token_valid(connection.access_token)


def test_refresh_inside_the_callers_transaction_commits_on_its_own(
    transactional_db, live_server, fake, user
):
    from django.db import transaction
    from django.test import override_settings

    from django_lexoffice import tokens

    connection = granted_connection(fake, user)
    with override_settings(
        LEXOFFICE_AUTH_BASE_URL=f"{live_server.url}/fake-lexware",
        LEXOFFICE_API_BASE_URL=f"{live_server.url}/fake-lexware",
    ):
        with pytest.raises(RuntimeError), transaction.atomic():
            tokens.refresh(connection)
            raise RuntimeError("the caller's transaction fails after the refresh")
    row = LexofficeConnection.objects.get(pk=connection.pk)
    assert row.refresh_token == connection.refresh_token
    assert fake.is_refresh_token_valid(row.refresh_token)


def test_refresh_waiting_on_a_row_the_callers_transaction_locked_fails_clearly(
    transactional_db, user, fake, monkeypatch
):
    from django.db import transaction

    from django_lexoffice import isolation, tokens
    from django_lexoffice.exceptions import ConnectionBusy

    connection = granted_connection(fake, user)
    monkeypatch.setattr(isolation, "lock_timeout_seconds", lambda: 0.5)
    with transaction.atomic():
        LexofficeConnection.objects.select_for_update().get(pk=connection.pk)
        with pytest.raises(ConnectionBusy, match="caller's own transaction"):
            tokens.refresh(connection)


def test_a_contract_issue_noted_inside_the_callers_transaction_does_not_block_a_refresh(
    transactional_db, make_connection, monkeypatch
):
    """An API call's "402 contract issue" note is written after the caller's transaction: a
    row lock held until then made the refresh after a 401 wait for it, then fail."""
    import responses
    from django.db import transaction

    from django_lexoffice import isolation
    from django_lexoffice.client import LexofficeClient
    from django_lexoffice.exceptions import ContractIssue

    from .lexware_responses import NEW_REFRESH, add_refresh

    contacts = "https://api.lexware.io/v1/contacts"
    connection = make_connection()
    monkeypatch.setattr(isolation, "lock_timeout_seconds", lambda: 0.5)
    with responses.RequestsMock() as lexware:
        lexware.get(contacts, status=402, json={"message": "contract issue"})
        lexware.get(contacts, status=401, json={"message": "Unauthorized"})
        add_refresh(lexware)
        lexware.get(contacts, json={"content": []})
        with transaction.atomic(), LexofficeClient(connection) as client:  # ATOMIC_REQUESTS
            with pytest.raises(ContractIssue):
                client.get("/v1/contacts")
            assert client.get("/v1/contacts").status_code == 200  # refreshed, then retried
    row = LexofficeConnection.objects.get(pk=connection.pk)
    assert (row.last_error, row.refresh_token) == ("", NEW_REFRESH)
