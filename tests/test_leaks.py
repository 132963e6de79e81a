"""No secret in any output (SECURITY.md 11, 12): logs at DEBUG for every logger,
Django's error reports, exception messages, reprs, templates."""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone
from django.views.debug import ExceptionReporter

from django_lexoffice import tokens
from django_lexoffice.exceptions import LexofficeError
from django_lexoffice.models import LexofficeConnection

from .conftest import run_command

pytestmark = pytest.mark.django_db

CLIENT_SECRET = "test-client-secret-0123456789"


def slices(secret: str, width: int = 16) -> list[str]:
    return [secret[i : i + width] for i in range(0, max(1, len(secret) - width + 1), 4)]


def assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        for piece in slices(secret):
            assert piece not in text, f"secret fragment {piece[:4]}… leaked"


@pytest.fixture
def debug_logs():
    """Capture every record of every logger at DEBUG, formatted with its arguments."""
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loggers = [
        logging.getLogger(n)
        for n in ("django", "requests", "urllib3", "social", "django_lexoffice", "django.request")
    ]
    old = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)
    for lg, level in old:
        lg.setLevel(level)


def test_sec12_whole_lifecycle_at_debug_logs_no_secret(client, fake_lexware, debug_logs, user):
    client.force_login(user)
    secrets = [CLIENT_SECRET]
    # Connect: collect state, verifier and code.
    location = client.post("/lexoffice/login/")["Location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    secrets.append(client.session[f"lexoffice_oauth2_state_{state}"]["code_verifier"])
    callback = fake_lexware.approve(location)
    secrets.append(parse_qs(urlsplit(callback).query)["code"][0])
    parts = urlsplit(callback)
    client.get(parts.path, parse_qs(parts.query))
    connection = LexofficeConnection.objects.get()
    secrets += [connection.access_token, connection.refresh_token]
    # Refresh (and a failing refresh), the command, the admin pages, revoke.
    tokens.refresh(connection, force=True)
    secrets += [connection.access_token, connection.refresh_token]
    fake_lexware.inject("refresh", "server_error", status=503)
    with pytest.raises(LexofficeError) as excinfo:
        tokens.refresh(connection, force=True)
    assert_clean(str(excinfo.value) + repr(excinfo.value), secrets)
    connection.expires_at = timezone.now()
    connection.next_attempt_at = None
    connection.save()
    out, err, _ = run_command("refresh_lexoffice_tokens", "-v", "3")
    connection.refresh_from_db()
    secrets += [connection.access_token, connection.refresh_token]
    page = client.get("/lexoffice/connections/").content.decode()
    fake_lexware.inject("revoke", "server_error")
    tokens.revoke(connection)
    connection.refresh_from_db()
    text = debug_logs.getvalue() + out + err + page
    text += connection.last_error + str(connection) + repr(connection)
    assert "lexoffice" in debug_logs.getvalue()  # the capture really captured something
    assert_clean(text, secrets)


def test_sec12_failed_callbacks_at_debug_log_no_code(client, fake_lexware, debug_logs):
    fake_lexware.inject("token", "server_error")
    location = client.post("/lexoffice/login/")["Location"]
    callback = fake_lexware.approve(location)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    parts = urlsplit(callback)
    response = client.get(parts.path, parse_qs(parts.query))
    assert response.status_code == 502
    assert_clean(debug_logs.getvalue() + response.content.decode(), [code, CLIENT_SECRET])


def test_sec12_error_report_hides_tokens_in_refresh_frames(make_connection, monkeypatch):
    """Django's technical 500 page / admin e-mail for an error inside a refresh."""
    connection = make_connection(expires_at=timezone.now())

    def explode(*args, **kwargs):  # a bug deep inside requests; its locals hold the form
        raise RuntimeError("boom")

    monkeypatch.setattr("requests.post", explode)
    try:
        tokens.refresh(connection)
    except LexofficeError:
        exc_info = sys.exc_info()
    request = RequestFactory().get("/admin/")
    html = ExceptionReporter(request, *exc_info).get_traceback_html()
    text = ExceptionReporter(request, *exc_info).get_traceback_text()
    assert "boom" in text and "in refresh" in text  # the frames are there...
    # Read only now: this test's own frame is part of the report too.
    assert_clean(html + text, [LexofficeConnection.objects.get().refresh_token])


def test_sec12_unexpected_error_in_callback_is_a_page_not_a_debug_report(
    client, fake_lexware, monkeypatch, settings, caplog
):
    settings.DEBUG = True
    location = client.post("/lexoffice/login/")["Location"]
    callback = fake_lexware.approve(location)
    code = parse_qs(urlsplit(callback).query)["code"][0]

    def explode(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(
        "django_lexoffice.pipeline.LexofficeConnection.objects.select_for_update", explode
    )
    parts = urlsplit(callback)
    response = client.get(parts.path, parse_qs(parts.query))
    assert response.status_code == 500
    assert b"Something went wrong on this site" in response.content
    # Nothing half-written: the user and the association were rolled back too.
    from django.contrib.auth import get_user_model
    from social_django.models import UserSocialAuth

    assert get_user_model().objects.count() == 0 and UserSocialAuth.objects.count() == 0
    assert_clean(response.content.decode() + caplog.text, [code, CLIENT_SECRET])
    assert "database went away" in caplog.text


def test_sec12_exception_messages_and_reprs_carry_no_token(fake_lexware, make_connection):
    connection = make_connection(expires_at=timezone.now() - timedelta(seconds=1))
    secrets = [connection.access_token, connection.refresh_token]
    fake_lexware.inject("refresh", "invalid_grant")
    with pytest.raises(LexofficeError) as excinfo:
        tokens.refresh(connection)
    exc = excinfo.value
    assert_clean(" ".join([str(exc), repr(exc), exc.body, str(vars(exc))]), secrets)


def test_sec11_sec16_database_dump_holds_no_token_and_no_client_secret(client, fake_lexware, user):
    client.force_login(user)
    location = client.post("/lexoffice/login/")["Location"]
    callback = urlsplit(fake_lexware.approve(location))
    client.get(callback.path, parse_qs(callback.query))
    connection = LexofficeConnection.objects.get()
    tokens.refresh(connection, force=True)
    out = StringIO()
    call_command("dumpdata", stdout=out)  # every table of every installed app
    dump = out.getvalue()
    assert connection.organization_id in dump  # the dump does hold the connection
    assert_clean(dump, [connection.access_token, connection.refresh_token, CLIENT_SECRET])
