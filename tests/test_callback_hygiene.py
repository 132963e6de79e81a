"""The callback's state stays spent and its URL stays out of logs and e-mails
(SECURITY.md 3, 12, 17; issue 13 items 8, 9, 11)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import django
import pytest
import requests
from django.core import mail
from django.utils.log import AdminEmailHandler

from django_lexoffice.models import LexofficeConnection

from .test_flow import assert_nothing_stored, begin, follow_callback, query

pytestmark = pytest.mark.django_db

CLIENT_SECRET = "test-client-secret-0123456789"
STATE_PAGE = b"invalid, expired or was already used"


def _crash_in_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(
        "django_lexoffice.pipeline.LexofficeConnection.objects.select_for_update", explode
    )


@pytest.mark.parametrize(
    ("failure", "status"),
    [("lexware_error_callback", 502), ("token_endpoint_down", 502), ("crash_in_pipeline", 500)],
)
def test_sec03_state_stays_spent_after_a_5xx_answer(
    client, fake_lexware, monkeypatch, failure, status
):
    url = begin(client)
    state = query(url)["state"]
    callback_url = fake_lexware.approve(url)
    if failure == "lexware_error_callback":
        first = client.get("/lexoffice/callback/", {"state": state, "error": "server_error"})
    else:
        if failure == "token_endpoint_down":
            fake_lexware.inject("token", "server_error")
        else:
            _crash_in_pipeline(monkeypatch)
        first = follow_callback(client, callback_url)
        monkeypatch.undo()
    assert first.status_code == status
    # The same state again, now with a code Lexware would accept: refused.
    replay = follow_callback(client, callback_url)
    assert replay.status_code == 400 and STATE_PAGE in replay.content
    assert_nothing_stored()


def test_sec03_a_fresh_flow_still_works_after_a_5xx_answer(client, fake_lexware):
    state = query(begin(client))["state"]
    client.get("/lexoffice/callback/", {"state": state, "error": "server_error"})
    response = follow_callback(client, fake_lexware.approve(begin(client)))
    assert response.status_code == 302
    assert LexofficeConnection.objects.count() == 1


# -- no callback URL in logs or e-mails ------------------------------------------------------


@pytest.fixture
def admin_mails(settings) -> Iterator[list]:
    """E-mail ADMINS on errors, from Django's request logger and from the app's loggers."""
    # Django 6.0 takes plain addresses and deprecates the (name, address) pairs 5.2 needs.
    admin = "ops@example.com"
    settings.ADMINS = [admin] if django.VERSION >= (6, 0) else [("Ops", admin)]
    handler = AdminEmailHandler(include_html=True)
    handler.setLevel(logging.ERROR)
    loggers = [logging.getLogger(name) for name in ("django.request", "django_lexoffice")]
    for logger in loggers:
        logger.addHandler(handler)
    yield mail.outbox
    for logger in loggers:
        logger.removeHandler(handler)


def _mail_text(messages: list) -> str:
    parts = []
    for message in messages:
        parts += [message.subject, message.body]
        parts += [content for content, _ in getattr(message, "alternatives", [])]
    return "\n".join(parts)


def _record_text(records: list[logging.LogRecord]) -> str:
    parts = []
    for record in records:
        parts += [record.getMessage(), repr(vars(record)), record.exc_text or ""]
        request = getattr(record, "request", None)
        if request is not None:
            parts += [request.get_full_path(), repr(dict(request.GET)), repr(request.META)]
    return "\n".join(parts)


def _record_token_responses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Collect the tokens of every token response the code exchange accepts."""
    from django_lexoffice.backends import LexofficeOAuth2

    issued: list[str] = []
    validate = LexofficeOAuth2.validate_token_response

    def record(backend: LexofficeOAuth2, response: dict) -> None:
        issued.extend(response[key] for key in ("access_token", "refresh_token") if key in response)
        validate(backend, response)

    monkeypatch.setattr(LexofficeOAuth2, "validate_token_response", record)
    return issued


def _secrets_of(callback_url: str) -> list[str]:
    params = parse_qs(urlsplit(callback_url).query)
    return [params["code"][0], params["state"][0], CLIENT_SECRET]


def _assert_absent(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize(
    "failure", ["token_endpoint_down", "profile_unreachable", "crash_in_pipeline"]
)
def test_sec12_5xx_callback_mails_and_logs_hold_no_code_or_state(
    client, fake_lexware, monkeypatch, caplog, admin_mails, failure
):
    caplog.set_level(logging.DEBUG)
    callback_url = fake_lexware.approve(begin(client))
    issued = _record_token_responses(monkeypatch)
    if failure == "token_endpoint_down":
        fake_lexware.inject("token", "server_error")
    elif failure == "profile_unreachable":
        fake_lexware.inject("profile", "connection_reset")
    else:
        _crash_in_pipeline(monkeypatch)
    response = follow_callback(client, callback_url)
    assert response.status_code >= 500
    assert admin_mails, "the failure was e-mailed to ADMINS"  # the path under test ran
    assert "/lexoffice/callback/" in _mail_text(admin_mails)
    text = _mail_text(admin_mails) + _record_text(caplog.records)
    _assert_absent(text, _secrets_of(callback_url) + issued)


def test_sec12_error_report_of_a_crash_inside_the_profile_call_holds_no_secret(
    client, fake_lexware, monkeypatch, admin_mails
):
    """The traceback's frames (code exchange, profile call) hide their locals."""
    callback_url = fake_lexware.approve(begin(client))
    real_send = requests.Session.send
    issued: list[str] = []

    def send(session, request, **kwargs):
        if "/v1/profile" in request.url:
            issued.append(request.headers["Authorization"].split()[1])
            raise RuntimeError("bug below the profile call")
        return real_send(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    response = follow_callback(client, callback_url)
    assert response.status_code == 500 and issued
    text = _mail_text(admin_mails)
    assert "bug below the profile call" in text and "user_data" in text  # frames are there
    _assert_absent(text, [*_secrets_of(callback_url), issued[0]])


def test_sec12_4xx_callback_logs_hold_no_code_or_state(client, fake_lexware, caplog):
    caplog.set_level(logging.DEBUG)
    callback_url = fake_lexware.approve(begin(client))
    client.logout()  # another browser: the state is not in this session
    response = follow_callback(client, callback_url)
    assert response.status_code == 400
    assert any(record.name == "django.request" for record in caplog.records)
    _assert_absent(_record_text(caplog.records), _secrets_of(callback_url))


def test_sec12_the_query_is_dropped_from_every_uri_the_server_passes_on(client, fake_lexware):
    callback_url = fake_lexware.approve(begin(client))
    parts = urlsplit(callback_url)
    uri = f"{parts.path}?{parts.query}"
    # uWSGI and mod_wsgi, gunicorn, a proxy passing the original URI on.
    uri_keys = {"REQUEST_URI": uri, "RAW_URI": uri, "HTTP_X_ORIGINAL_URI": uri}
    response = client.get(parts.path, QUERY_STRING=parts.query, **uri_keys)
    assert response.status_code == 302
    meta = response.wsgi_request.META
    assert {key: meta[key] for key in uri_keys} == dict.fromkeys(uri_keys, parts.path)
    assert meta["QUERY_STRING"] == "" and not response.wsgi_request.GET
    _assert_absent(repr(meta), _secrets_of(callback_url))


@pytest.mark.parametrize("query_string", ["e", "t", "1", "0", "/", "lexoffice", "state=s&code=c"])
def test_dropping_the_query_leaves_the_rest_of_the_request_alone(client, query_string):
    # A query that happens to occur in other values ("?e" in "testserver") mangled them.
    meta = {
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_USER_AGENT": "Mozilla/5.0 (lexoffice test)",
    }
    response = client.get("/lexoffice/callback/", QUERY_STRING=query_string, **meta)
    assert response.status_code == 400
    request = response.wsgi_request
    assert request.META["QUERY_STRING"] == ""
    assert {key: request.META[key] for key in meta} == meta
    assert request.META["SERVER_NAME"] == "testserver"
    assert request.path_info == request.META["PATH_INFO"] == "/lexoffice/callback/"


# -- too many parameters ---------------------------------------------------------------------


def test_sec17_callback_with_too_many_parameters_is_a_400_page(client, settings, caplog):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 20
    params = "&".join(f"p{i}=x" for i in range(21))
    response = client.get(f"/lexoffice/callback/?state=s&code=c&{params}")
    assert response.status_code == 400
    assert STATE_PAGE in response.content
    assert "Referrer-Policy" in response  # the callback's own answer, not Django's 500
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
