"""The refresh policy and the rate-limit lanes where they are used: the refresh command, the
API client, the Celery task, subscription sync, the admin and the system checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import responses
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from django_lexoffice import ratelimit
from django_lexoffice.checks import check_settings
from django_lexoffice.client import LexofficeClient
from django_lexoffice.models import LexofficeConnection
from django_lexoffice.ratelimit import Lane

from .conftest import run_command
from .lexware_responses import TOKEN_URL, add_refresh

pytestmark = pytest.mark.django_db
API = "https://api.lexware.io"


def run(*args: str) -> tuple[str, str, int]:
    return run_command("refresh_lexoffice_tokens", *args)


def ago(**kwargs: Any) -> Any:
    return timezone.now() - timedelta(**kwargs)


def soon(seconds: int = 60) -> Any:
    return timezone.now() + timedelta(seconds=seconds)


@pytest.fixture
def lanes(monkeypatch: pytest.MonkeyPatch) -> list[Lane]:
    """The lane of every rate-limit slot taken."""
    seen: list[Lane] = []
    original = ratelimit.acquire

    def recording(*args: Any, **kwargs: Any) -> float:
        seen.append(kwargs.get("lane") or ratelimit.current_lane())
        return original(*args, **kwargs)

    monkeypatch.setattr(ratelimit, "acquire", recording)
    return seen


@override_settings(LEXOFFICE_REFRESH_POLICY="on_use")
def test_on_use_command_keeps_used_connections_fresh_and_idle_ones_alive(rsps, make_connection):
    used = make_connection(organization_id="used", expires_at=soon(), last_used_at=ago(hours=3))
    unused = make_connection(organization_id="unused", expires_at=soon(), last_used_at=ago(days=9))
    idle = make_connection(
        organization_id="idle", expires_at=soon(3 * 3600), last_refreshed_at=ago(days=8)
    )
    add_refresh(rsps)
    add_refresh(rsps)
    out, err, code = run("-v", "2")
    assert (err, code) == ("", 0)
    assert f"Refreshed Testfirma GmbH (#{used.pk})" in out
    assert f"Refreshed Testfirma GmbH (#{idle.pk})" in out
    assert f"#{unused.pk}" not in out  # refreshed by the client when next used
    assert len(rsps.calls) == 2


def test_keep_fresh_command_refreshes_every_expiring_connection(rsps, make_connection):
    make_connection(organization_id="a", expires_at=soon(), last_used_at=ago(days=9))
    add_refresh(rsps)
    out, _, code = run()
    assert (out, code) == ("Refreshed 1, skipped 0, failed 0, re-authorization required 0.\n", 0)


def test_command_reports_capacity_at_verbosity_2(rsps, make_connection):
    make_connection(expires_at=soon(3 * 3600))
    out, err, code = run("-v", "2")
    assert (err, code) == ("", 0)
    assert out.endswith(
        '1 connection needs 0.0001 req/s of 1000.0 (0 %) to refresh under "keep_fresh".\n'
    )


@override_settings(LEXOFFICE_RATE_LIMIT=0.0003)
def test_command_warns_when_refresh_needs_too_much_of_the_budget(rsps, make_connection):
    for number in range(3):
        make_connection(organization_id=f"o{number}", expires_at=soon(3 * 3600))
    out, err, code = run()
    assert code == 0 and out == "No connections need refreshing.\n"
    assert err.startswith("Warning: 3 connections need")
    assert 'LEXOFFICE_REFRESH_POLICY = "on_use"' in err


def test_command_refreshes_in_the_background_lane(rsps, make_connection, lanes):
    make_connection(expires_at=soon())
    add_refresh(rsps)
    run()
    assert lanes == [Lane.BACKGROUND]


def test_celery_task_refreshes_in_the_background_lane(rsps, make_connection, lanes):
    pytest.importorskip("celery", reason="the Celery extra is not installed")
    from django_lexoffice import tasks

    connection = make_connection(expires_at=soon())
    add_refresh(rsps)
    assert tasks.refresh_connection(connection.pk) == "refreshed"
    assert lanes == [Lane.BACKGROUND]


def test_client_is_interactive_unless_told_otherwise(rsps, make_connection, lanes):
    connection = make_connection()
    rsps.add(responses.GET, f"{API}/v1/profile", json={})
    rsps.add(responses.GET, f"{API}/v1/profile", json={})
    with LexofficeClient(connection) as client:
        client.get("/v1/profile")
    with LexofficeClient(connection, background=True) as client:
        client.get("/v1/profile")
    assert lanes == [Lane.INTERACTIVE, Lane.BACKGROUND]
    assert ratelimit.current_lane() is Lane.INTERACTIVE  # nothing leaks out of the client


def test_background_client_refreshes_in_the_background_lane(rsps, make_connection, lanes):
    connection = make_connection(expires_at=soon())
    add_refresh(rsps)
    rsps.add(responses.GET, f"{API}/v1/profile", json={})
    with LexofficeClient(connection, background=True) as client:
        client.get("/v1/profile")
    assert rsps.calls[0].request.url == TOKEN_URL
    assert lanes == [Lane.BACKGROUND, Lane.BACKGROUND]


def test_client_records_use_at_most_once_an_hour(
    rsps, make_connection, django_capture_on_commit_callbacks
):
    connection = make_connection()
    for _ in range(3):
        rsps.add(responses.GET, f"{API}/v1/profile", json={})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with LexofficeClient(connection) as client:
            for _ in range(3):
                client.get("/v1/profile")
    assert len(callbacks) == 1
    assert LexofficeConnection.objects.get().last_used_at is not None


def test_subscription_sync_runs_in_the_background_lane(monkeypatch, make_connection):
    from django_lexoffice import subscriptions

    make_connection()
    seen = []
    monkeypatch.setattr(
        subscriptions, "sync_connection", lambda *a, **k: seen.append(ratelimit.current_lane())
    )
    with pytest.raises(AttributeError):  # the stand-in returns no result: only the lane matters
        subscriptions.sync_all()
    assert seen == [Lane.BACKGROUND]


def test_admin_list_says_what_refresh_needs(admin_client, make_connection):
    make_connection(expires_at=soon(3 * 3600))
    url = reverse("admin:django_lexoffice_lexofficeconnection_changelist")
    html = admin_client.get(url).content.decode()
    assert 'class="lexoffice-capacity"' in html
    assert "to refresh under &quot;keep_fresh&quot;." in html


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("LEXOFFICE_REFRESH_POLICY", "sometimes"),
        ("LEXOFFICE_REFRESH_ACTIVE_WINDOW", "soon"),
        ("LEXOFFICE_IDLE_REFRESH_INTERVAL", -3),
    ],
)
def test_e011_refresh_policy_settings(setting, value):
    with override_settings(**{setting: value}):
        (error,) = [message for message in check_settings() if message.id == "lexoffice.E011"]
    assert setting in error.msg
