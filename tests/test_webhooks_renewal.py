"""The two-year renewal: the date on the pages, ``reauthorization_due`` once per authorization."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from django_lexoffice import renewal, signals
from django_lexoffice.models import LexofficeConnection

from .conftest import run_command
from .webhook_helpers import needs_celery

pytestmark = pytest.mark.django_db


@pytest.fixture
def reminders():
    calls = []
    signals.reauthorization_due.connect(
        lambda **kw: calls.append(kw), dispatch_uid="renewal-test", weak=False
    )
    yield calls
    signals.reauthorization_due.disconnect(dispatch_uid="renewal-test")


def aged(make_connection, days, **fields):
    return make_connection(authorized_at=timezone.now() - timedelta(days=days), **fields)


def test_authorization_ends_two_years_after_the_last_code_exchange(make_connection, settings):
    connection = aged(make_connection, 0)
    assert connection.authorization_ends_at == connection.authorized_at + timedelta(days=730)
    settings.LEXOFFICE_AUTHORIZATION_LIFETIME = 365
    assert connection.authorization_ends_at == connection.authorized_at + timedelta(days=365)
    settings.LEXOFFICE_AUTHORIZATION_LIFETIME = timedelta(days=10)
    assert connection.authorization_ends_at == connection.authorized_at + timedelta(days=10)
    settings.LEXOFFICE_AUTHORIZATION_LIFETIME = None
    assert connection.authorization_ends_at is None and not connection.reauthorization_due


def test_reauthorization_due_is_sent_once_per_authorization(make_connection, reminders):
    due = aged(make_connection, 710)
    aged(make_connection, 100, organization_id="fresh-org")
    assert renewal.send_reauthorization_due() == [due]
    assert [(kw["connection"].pk, kw["ends_at"]) for kw in reminders] == [
        (due.pk, due.authorized_at + timedelta(days=730))
    ]
    assert renewal.send_reauthorization_due() == []
    # A reconnect is a new authorization; when it nears its end, it is reminded again.
    LexofficeConnection.objects.filter(pk=due.pk).update(
        authorized_at=timezone.now() - timedelta(days=729)
    )
    assert renewal.send_reauthorization_due() == [due]
    assert len(reminders) == 2


def test_no_reminders_when_the_lifetime_is_off_or_the_connection_is_not_active(
    make_connection, reminders, settings
):
    aged(make_connection, 800, status="revoked")
    assert renewal.send_reauthorization_due() == []
    settings.LEXOFFICE_AUTHORIZATION_LIFETIME = None
    aged(make_connection, 800, organization_id="other")
    assert renewal.send_reauthorization_due() == [] and reminders == []


def test_refresh_command_sends_and_reports_the_reminders(make_connection, reminders):
    aged(make_connection, 720, expires_at=timezone.now() + timedelta(hours=4))
    out, _, _ = run_command("refresh_lexoffice_tokens", "-v", "2")
    assert "authorization ends on" in out
    assert "1 connection must be connected again soon" in out
    assert len(reminders) == 1
    out, _, code = run_command("refresh_lexoffice_tokens")
    assert (out, code) == ("No connections need refreshing.\n", 0) and len(reminders) == 1


def test_dry_run_sends_no_reminder(make_connection, reminders):
    aged(make_connection, 720)
    assert run_command("refresh_lexoffice_tokens", "--dry-run")[2] == 0
    assert reminders == []


@needs_celery
def test_celery_refresh_task_sends_the_reminders_too(make_connection, reminders):
    from django_lexoffice import tasks

    aged(make_connection, 720)
    tasks.refresh_expiring_connections.apply()
    assert len(reminders) == 1


def test_connections_page_shows_the_end_date_and_asks_to_reconnect_when_due(
    client, user, make_connection
):
    client.force_login(user)
    fresh = aged(make_connection, 0)
    page = client.get(reverse("lexoffice:connections")).content.decode()
    assert "Authorization ends on" in page and "lxo-renewal-due" not in page
    LexofficeConnection.objects.filter(pk=fresh.pk).update(
        authorized_at=timezone.now() - timedelta(days=710)
    )
    page = client.get(reverse("lexoffice:connections")).content.decode()
    assert "lxo-renewal-due" in page and "Please connect again" in page


def test_admin_shows_the_end_date_and_filters_those_ending_within_30_days(
    admin_client, make_connection, django_user_model
):
    other = django_user_model.objects.create_user("max")
    due = aged(make_connection, 720, company_name="Soon GmbH")
    aged(make_connection, 10, user=other, company_name="Later GmbH")
    url = reverse("admin:django_lexoffice_lexofficeconnection_changelist")
    page = admin_client.get(url, {"authorization_ends": "30d"}).content.decode()
    assert "Soon GmbH" in page and "Later GmbH" not in page
    detail = admin_client.get(
        reverse("admin:django_lexoffice_lexofficeconnection_change", args=[due.pk])
    ).content.decode()
    assert "Authorization ends" in detail
