"""Celery tasks: eager unit tests, and a real worker on Redis refreshing over PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from django_lexoffice import tasks, tokens
from django_lexoffice.models import LexofficeConnection

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def eager():
    from celery import current_app

    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = False


def granted(fake, user, seconds=10):
    """``user``'s connection holding a live grant, expiring in ``seconds``."""
    return fake.connect(user, expires_in=seconds)


@pytest.mark.django_db
def test_fan_out_refreshes_due_connections(eager, fake_lexware, user, django_user_model):
    due = granted(fake_lexware, user)
    fresh = granted(fake_lexware, django_user_model.objects.create_user("x"), seconds=3600)
    assert tasks.refresh_expiring_connections.delay().get() == 1
    due.refresh_from_db()
    fresh.refresh_from_db()
    assert due.expires_at > timezone.now() + timedelta(hours=3)
    assert fake_lexware.count("refresh") == 1


@pytest.mark.django_db
def test_refresh_connection_outcomes(eager, fake_lexware, user):
    connection = granted(fake_lexware, user)
    assert tasks.refresh_connection.delay(connection.pk).get() == "refreshed"
    assert tasks.refresh_connection.delay(connection.pk).get() == "skipped"
    fake_lexware.inject("refresh", "server_error", status=503)
    assert tasks.refresh_connection.delay(connection.pk, margin=10**6).get() == "transient_failure"
    connection.refresh_from_db()
    assert connection.consecutive_failures == 1


@pytest.fixture
def slots(monkeypatch):
    """The rate-limit slots tokens.refresh takes."""
    taken: list[int] = []
    monkeypatch.setattr(tokens, "take_slots", lambda count=1: taken.append(count) or 0.0)
    return taken


@pytest.mark.django_db
def test_a_task_for_a_row_that_is_not_due_takes_no_rate_limit_slot(
    eager, fake_lexware, user, slots
):
    connection = granted(fake_lexware, user, seconds=3600)
    assert tasks.refresh_connection.delay(connection.pk).get() == "skipped"
    assert slots == []
    assert fake_lexware.count("refresh") == 0


@pytest.mark.django_db
def test_a_task_queued_twice_spends_one_slot(eager, fake_lexware, user, slots):
    connection = granted(fake_lexware, user)
    assert tasks.refresh_connection.delay(connection.pk).get() == "refreshed"
    assert tasks.refresh_connection.delay(connection.pk).get() == "skipped"
    assert slots == [1]
    assert fake_lexware.count("refresh") == 1


@pytest.mark.django_db
def test_a_task_for_a_deleted_row_is_not_active_and_takes_no_slot(eager, fake_lexware, slots):
    assert slots == []


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.skipif(
    os.environ.get("LEXOFFICE_TEST_DB") != "postgres",
    reason="the worker shares the test database: needs LEXOFFICE_TEST_DB=postgres",
)
def test_real_workers_refresh_each_connection_once(
    transactional_db, live_server, redis_url, django_user_model, settings, tmp_path
):
    from celery import Celery
    from django.db import connection as db_connection

    from django_lexoffice.testing import FakeLexware

    fake = FakeLexware()
    fake.reset()
    fake.register_client(
        "test-client-id",
        secret=settings.SOCIAL_AUTH_LEXOFFICE_SECRET,
        redirect_uris=["http://testserver/lexoffice/callback/"],
    )
    connections = [granted(fake, django_user_model.objects.create_user(f"w{i}")) for i in range(12)]
    queue = f"lexoffice-tests-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_worker",
        "LEXOFFICE_WORKER_DB_NAME": db_connection.settings_dict["NAME"],
        "LEXOFFICE_WORKER_FAKE_URL": f"{live_server.url}/fake-lexware",
        "LEXOFFICE_CELERY_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "workers.log").open("w")
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.celery_app",
                "worker",
                "--pool=solo",
                "-Q",
                queue,
                "-n",
                f"w{i}-{queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    client = Celery(broker="redis://127.0.0.1:6379/14")
    try:
        # The beat task, twice, as two overlapping beat ticks would: 24 messages for 12 rows.
        for _ in range(2):
            client.send_task("django_lexoffice.tasks.refresh_expiring_connections", queue=queue)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if all(
                c.expires_at > timezone.now() + timedelta(hours=3)
                for c in LexofficeConnection.objects.all()
            ):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # let any duplicate task run, to prove it skips
        worker_log = (tmp_path / "workers.log").read_text()
        assert fake.count("refresh") == len(connections), worker_log
        for connection in connections:
            connection.refresh_from_db()
            assert fake.is_refresh_token_valid(connection.refresh_token)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
        log.close()
        client.close()
        fake.reset()
