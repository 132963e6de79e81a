"""Shared fixtures. Lexware is never contacted: tests use the fake in
``django_lexoffice.testing`` or ``responses`` at the HTTP boundary."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import responses
from django.core.management import CommandError, call_command
from django.db import connection as db_connection
from django.dispatch import Signal
from django.utils import timezone

from django_lexoffice.models import LexofficeConnection

pytest_plugins = ["django_lexoffice.testing.pytest_plugin"]

# The tox environment without optional extras has no Celery; these modules import it.
collect_ignore = [] if importlib.util.find_spec("celery") else ["test_tasks.py", "celery_app.py"]

ACCESS_TOKEN = "test-access-token-" + "A" * 40
REFRESH_TOKEN = "test-refresh-token-" + "R" * 109  # 128 characters, like Lexware's


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("LEXOFFICE_TEST_DB") == "postgres" and not _reachable("127.0.0.1", 5432):
        raise pytest.UsageError(
            "LEXOFFICE_TEST_DB=postgres but no PostgreSQL answers on 127.0.0.1:5432. "
            "Start it (pg_ctlcluster <version> main start) or unset LEXOFFICE_TEST_DB."
        )
    if os.environ.get("LEXOFFICE_TEST_BROWSER") == "required" and shutil.which("chromium") is None:
        raise pytest.UsageError(
            "LEXOFFICE_TEST_BROWSER=required but there is no `chromium` on PATH. Install "
            "Debian's: apt-get install -y chromium (the tests never download a browser)."
        )


@pytest.fixture
def redis_url() -> str:
    """The Redis server the multi-process tests share; fails clearly when it is down."""
    if not _reachable("127.0.0.1", 6379):
        pytest.fail("Redis is not reachable on 127.0.0.1:6379; start redis-server.")
    return "redis://127.0.0.1:6379/15"


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(
        username="erika", email="erika@example.com", password="pw"
    )


@pytest.fixture
def make_connection(user: Any) -> Callable[..., LexofficeConnection]:
    """Create a connection row directly (tokens stored encrypted through save())."""

    def make(**fields: Any) -> LexofficeConnection:
        values: dict[str, Any] = {
            "user": user,
            "organization_id": "aa93e8a8-2aa3-470b-b914-caad8a255dd8",
            "connection_id": "3dea098a-fae5-4458-a85c-f97965966c25",
            "company_name": "Testfirma GmbH",
            "lexoffice_user_id": "1aea5501-3f3e-403d-8492-2dad03016289",
            "lexoffice_user_name": "Frau Erika Musterfrau",
            "lexoffice_user_email": "erika.musterfrau@testfirma.de",
            "scopes": ["profile.read", "contacts.read"],
            "access_token": ACCESS_TOKEN,
            "refresh_token": REFRESH_TOKEN,
            "expires_at": timezone.now() + timedelta(hours=4),
        }
        values.update(fields)
        return LexofficeConnection.objects.create(**values)

    return make


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """Lexware at the HTTP boundary: every request must be answered by a registered reply."""
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def capture_signal() -> Iterator[Callable[[Signal], list[dict[str, Any]]]]:
    """``capture_signal(signal)`` returns a list that collects each sending's kwargs
    until the test ends."""
    connected: list[tuple[Signal, str]] = []

    def capture(signal: Signal) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        uid = f"capture-{id(received)}"
        signal.connect(lambda **kwargs: received.append(kwargs), weak=False, dispatch_uid=uid)
        connected.append((signal, uid))
        return received

    yield capture
    for signal, uid in connected:
        signal.disconnect(dispatch_uid=uid)


def raw_token_columns(pk: int) -> tuple[str, str] | None:
    """The stored (encrypted) ``access_token`` and ``refresh_token`` columns of a connection,
    read with SQL, past the model's decryption; ``None`` when the row is gone."""
    table = LexofficeConnection._meta.db_table
    with db_connection.cursor() as cursor:
        cursor.execute(f"SELECT access_token, refresh_token FROM {table} WHERE id = %s", [pk])
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1])


def run_command(name: str, *args: str) -> tuple[str, str, int]:
    """Run management command ``name``: its stdout, its stderr (with ``CommandError: ...``
    appended when it fails, as ``manage.py`` prints it) and its exit status."""
    out, err = StringIO(), StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue() + f"CommandError: {exc}\n", exc.returncode
    return out.getvalue(), err.getvalue(), 0


def assert_no_token(text: str, secrets: Iterable[str] = (), where: str = "text") -> None:
    """Neither a token nor any 16-character slice of one is in ``text``.

    ``secrets`` defaults to every token the tests issue (see ``lexware_responses``)."""
    from .lexware_responses import NEW_ACCESS, NEW_REFRESH

    for secret in secrets or (ACCESS_TOKEN, REFRESH_TOKEN, NEW_ACCESS, NEW_REFRESH):
        for start in range(max(1, len(secret) - 15)):
            piece = secret[start : start + 16]
            assert piece not in text, f"a token slice ({piece!r}) is in the {where}"
