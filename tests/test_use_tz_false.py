"""A site with ``USE_TZ = False`` (naive local datetimes) can use every part of the app.

Lexware's dates carry an offset (``eventDate``); the site's database columns do not. Each
test here failed with ``localtime() cannot be applied to a naive datetime`` or a comparison
of naive and aware datetimes before the app converted at its edges.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_lexoffice import subscriptions
from django_lexoffice.models import LexofficeConnection, LexofficeWebhookEvent

from .conftest import run_command
from .lexware_responses import add_refresh
from .test_admin import CHANGELIST, change_url
from .webhook_helpers import deliver, event_body, private_key, public_pem

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def naive_datetimes(settings: Any) -> None:
    settings.USE_TZ = False
    assert timezone.is_naive(timezone.now())


def test_command_reports_a_connection_waiting_for_its_retry(rsps: Any, make_connection: Any):
    make_connection(expires_at=timezone.now() + timedelta(seconds=10))
    add_refresh(rsps, status=503, json={"message": "Service Unavailable"})
    assert run_command("refresh_lexoffice_tokens")[2] == 1
    out, err, code = run_command("refresh_lexoffice_tokens")  # the next cron run
    assert code == 0, err
    assert "1 waiting to retry after a failure; next attempt " in out


def test_admin_list_and_detail_show_expiry_and_authorization_end(
    admin_client: Client, make_connection: Any
):
    connection = make_connection(
        expires_at=timezone.now() + timedelta(hours=3, minutes=12, seconds=30)
    )
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "in 3\xa0hours, 12\xa0minutes" in html
    detail = admin_client.get(change_url(connection))
    assert detail.status_code == 200
    ends = connection.authorization_ends_at
    assert ends is not None and timezone.is_naive(ends)


def test_signed_token_revoked_ends_the_connection(client: Client, settings: Any, make_connection):
    key = private_key(2048)
    settings.LEXOFFICE_WEBHOOK_PUBLIC_KEY = public_pem(key)
    connection = make_connection(authorized_at=timezone.now() - timedelta(days=1))
    # An hour after the authorization, given in another zone than the site's.
    later = timezone.make_aware(connection.authorized_at + timedelta(hours=1))
    body = event_body(event_date=later.astimezone(timezone.get_fixed_timezone(-300)).isoformat())
    response = deliver(client, body, key)
    assert response.status_code == 200, response.content
    connection.refresh_from_db()
    assert connection.status == LexofficeConnection.Status.REVOKED
    (event,) = LexofficeWebhookEvent.objects.all()
    assert event.event_date == connection.authorized_at + timedelta(hours=1)


def test_fake_ends_a_connection_in_lexoffice(
    fake_lexware: Any, user: Any, settings: Any, django_capture_on_commit_callbacks: Any
):
    settings.LEXOFFICE_WEBHOOK_URL = "https://testserver/lexoffice/webhook/"
    settings.LEXOFFICE_WEBHOOK_PUBLIC_KEY = fake_lexware.webhook_public_key()
    connection = fake_lexware.connect(user)
    assert subscriptions.subscribe(connection) == []
    with django_capture_on_commit_callbacks(execute=True):
        assert fake_lexware.end_connection(connection.connection_id) == [200]
    connection.refresh_from_db()
    assert connection.status == LexofficeConnection.Status.REVOKED
