"""The ``lexoffice:webhook`` view and ``token.revoked`` (SECURITY.md 20-23)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from unittest import mock

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from django_lexoffice import signals, signature, webhooks
from django_lexoffice.conf import LEXWARE_WEBHOOK_PUBLIC_KEY
from django_lexoffice.models import (
    LexofficeConnection,
    LexofficeSubscription,
    LexofficeWebhookEvent,
)

from .webhook_helpers import (
    CONNECTION_ID,
    ORGANIZATION_ID,
    WEBHOOK_URL,
    deliver,
    event_body,
    needs_celery,
    private_key,
    public_pem,
    sign,
)

pytestmark = pytest.mark.django_db

LEXWARE_FINGERPRINT = "6a42debdf6c613137f8da76b231711c93c3b4fc2dc0e7a2998e08c7f479f80b1"


@pytest.fixture
def key():
    return private_key(2048)


@pytest.fixture(autouse=True)
def configured_key(key, settings):
    settings.LEXOFFICE_WEBHOOK_PUBLIC_KEY = public_pem(key)


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run on-commit callbacks of the request (the test's transaction never commits)."""

    def run(function, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return function(*args, **kwargs)

    return run


@pytest.fixture
def received():
    events = []

    def receiver(**kwargs):
        events.append(kwargs)

    signals.event_received.connect(receiver, dispatch_uid="test-received", weak=False)
    yield events
    signals.event_received.disconnect(dispatch_uid="test-received")


@pytest.fixture
def revoked():
    calls = []

    def receiver(**kwargs):
        calls.append(kwargs)

    signals.connection_revoked.connect(receiver, dispatch_uid="test-revoked", weak=False)
    yield calls
    signals.connection_revoked.disconnect(dispatch_uid="test-revoked")


def old_connection(make_connection, **fields):
    fields.setdefault("authorized_at", timezone.now() - timedelta(days=10))
    return make_connection(**fields)


# -- the bundled key and the signature module ---------------------------------------------


def test_lexware_key_is_bundled_as_default_and_matches_its_published_fingerprint(settings):
    del settings.LEXOFFICE_WEBHOOK_PUBLIC_KEY
    (key,) = signature.configured_keys()
    assert key.key_size == 4096
    assert signature.fingerprint(key) == LEXWARE_FINGERPRINT
    assert signature.load_public_key(LEXWARE_WEBHOOK_PUBLIC_KEY) is key


def test_keys_are_parsed_once_per_configured_value_not_per_request(client, key):
    signature.load_public_key.cache_clear()
    for _ in range(3):
        deliver(client, event_body("invoice.created"), key)
    info = signature.load_public_key.cache_info()
    assert info.misses == 1 and info.hits >= 2


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_signature_verifies_with_keys_of_several_sizes(bits):
    key = private_key(bits)
    body = event_body()
    public = signature.load_public_key(public_pem(key))
    assert signature.verify(body, sign(body, key), [public])
    assert not signature.verify(body + b" ", sign(body, key), [public])


def test_any_of_the_configured_keys_may_verify(client, settings):
    old, new = private_key(2048, "old"), private_key(2048, "new")
    settings.LEXOFFICE_WEBHOOK_PUBLIC_KEY = [public_pem(old), public_pem(new)]
    assert deliver(client, event_body("contact.created"), old).status_code == 200
    assert deliver(client, event_body("contact.changed"), new).status_code == 200
    assert deliver(client, event_body("contact.deleted"), private_key(2048, "x")).status_code == 403


def test_raw_bytes_with_whitespace_and_unicode_are_verified_not_reserialized(client, key):
    body = (
        '{ "organizationId" : "' + ORGANIZATION_ID + '",\n\t"eventType":"contact.changed",'
        ' "resourceId": "Müller-Lüdenscheidt-ß-€", "eventDate": "2023-04-11T08:25:07.000+02:00" }\n'
    ).encode("utf-8")
    response = deliver(client, body, key)
    assert response.status_code == 200
    assert LexofficeWebhookEvent.objects.get().resource_id == "Müller-Lüdenscheidt-ß-€"


def test_unparsable_configured_key_answers_503_not_500(client, key, settings):
    settings.LEXOFFICE_WEBHOOK_PUBLIC_KEY = (
        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"
    )
    response = deliver(client, event_body(), key)
    assert response.status_code == 503
    assert not LexofficeWebhookEvent.objects.exists()


# -- SECURITY.md 20: the signature ----------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["missing", "empty", "not_base64", "wrong_key", "tampered_body", "huge_header"]
)
def test_sec20_bad_signature_gets_403_changes_nothing_and_logs_no_body(
    case, client, key, make_connection, caplog
):
    connection = old_connection(make_connection)
    body = event_body()
    headers = {
        "missing": {},
        "empty": {"HTTP_X_LXO_SIGNATURE": ""},
        "not_base64": {"HTTP_X_LXO_SIGNATURE": "not*base64!"},
        "wrong_key": {"HTTP_X_LXO_SIGNATURE": sign(body, private_key(2048, "other"))},
        "tampered_body": {"HTTP_X_LXO_SIGNATURE": sign(body.replace(b"token", b"TOKEN"), key)},
        "huge_header": {"HTTP_X_LXO_SIGNATURE": "A" * 100_000},
    }[case]
    with caplog.at_level(logging.DEBUG):
        response = client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers)
    assert response.status_code == 403
    assert response.content == b"invalid signature"
    assert not LexofficeWebhookEvent.objects.exists()
    connection.refresh_from_db()
    assert connection.status == "active" and connection.has_refresh_token
    assert "invalid signature" in caplog.text
    assert CONNECTION_ID not in caplog.text and ORGANIZATION_ID not in caplog.text


def test_sec20_signature_is_checked_before_the_body_is_parsed(client):
    with mock.patch.object(webhooks, "parse_event") as parse:
        response = deliver(client, b"{not json", None)
    assert response.status_code == 403
    parse.assert_not_called()


# -- SECURITY.md 21: size, methods, no CSRF / session / login ------------------------------


def test_sec21_body_over_64_kib_is_refused_with_413_before_verification(client, key):
    body = event_body(padding="x" * (64 * 1024))
    with mock.patch.object(signature, "verify") as verify:
        response = deliver(client, body, key)
    assert response.status_code == 413
    verify.assert_not_called()
    assert not LexofficeWebhookEvent.objects.exists()


def test_sec21_body_read_stops_after_the_cap_even_when_content_length_lies(rf, key):
    request = rf.post(WEBHOOK_URL, data=b"x" * (200 * 1024), content_type="application/json")
    request.META["CONTENT_LENGTH"] = "10"
    with mock.patch.object(request, "read", wraps=request.read) as read:
        body = webhooks._read_body(request)
    read.assert_called_once_with(64 * 1024 + 1)
    assert body is None  # more than the cap arrived: refused, and no more was read


def test_sec21_head_answers_200_without_body_and_get_405(client):
    head = client.head(WEBHOOK_URL)
    assert head.status_code == 200 and head.content == b""
    assert client.get(WEBHOOK_URL).status_code == 405
    assert client.put(WEBHOOK_URL).status_code == 405


def test_sec21_no_csrf_token_no_session_no_login_needed_or_used(key, make_connection):
    strict = Client(enforce_csrf_checks=True)
    response = deliver(strict, event_body("invoice.created"), key)
    assert response.status_code == 200
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    assert "Cookie" not in response.get("Vary", "")


def test_sec21_view_is_not_wrapped_by_atomic_requests():
    assert getattr(webhooks.webhook, "_non_atomic_requests", None)
    assert reverse("lexoffice:webhook") == WEBHOOK_URL


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        event_body(extra="key"),
        b'{"organizationId": "o", "eventType": "t", "resourceId": "r"}',
        event_body(event_date="yesterday"),
        event_body(event_date="2023-04-11T08:25:07"),
        event_body(resource_id=""),
        event_body(resource_id="r" * 65),
        b"[" * 30_000 + b"]" * 30_000,  # json.loads: RecursionError, not ValueError
        event_body(resource_id="\ud800"),  # a lone surrogate no database can store
        event_body(resource_id="inv\u00001"),  # NUL: PostgreSQL refuses it
        event_body(event_date="9999-12-31T23:59:59-14:00"),  # year 10000 in UTC
        event_body(event_date="0001-01-01T00:00:00+14:00"),  # year 0 in UTC
    ],
)
def test_signed_body_that_is_no_event_gets_a_clear_400(client, key, body):
    response = deliver(client, body, key)
    assert response.status_code == 400
    assert response.content.startswith(b"invalid event: ")
    assert not LexofficeWebhookEvent.objects.exists()


# -- recording, deduplication, event_received ------------------------------------------------


def test_verified_event_is_recorded_and_sent_to_receivers_on_commit(
    client, key, make_connection, received, on_commit
):
    connection = make_connection()
    response = on_commit(deliver, client, event_body("invoice.created", resource_id="inv-1"), key)
    assert response.status_code == 200
    record = LexofficeWebhookEvent.objects.get()
    assert (record.status, record.event_type, record.resource_id) == (
        "verified",
        "invoice.created",
        "inv-1",
    )
    (kwargs,) = received
    assert kwargs["sender"] is LexofficeConnection
    assert kwargs["event_type"] == "invoice.created" and kwargs["resource_id"] == "inv-1"
    assert kwargs["organization_id"] == ORGANIZATION_ID
    assert kwargs["event_date"] == datetime.fromisoformat("2099-04-11T08:25:07+02:00")
    assert list(kwargs["connections"]) == [connection]


def test_receivers_run_only_after_the_commit(
    client, key, received, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        deliver(client, event_body("invoice.created"), key)
    assert received == [] and len(callbacks) == 1


def test_failing_receiver_does_not_turn_a_recorded_event_into_an_error(client, key, on_commit):
    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    signals.event_received.connect(broken, dispatch_uid="broken", weak=False)
    try:
        response = on_commit(deliver, client, event_body("invoice.created"), key)
    finally:
        signals.event_received.disconnect(dispatch_uid="broken")
    assert response.status_code == 200
    assert LexofficeWebhookEvent.objects.get().status == "verified"


def test_unknown_event_type_is_recorded_acknowledged_and_logged(
    client, key, caplog, received, on_commit
):
    response = on_commit(deliver, client, event_body("spaceship.landed"), key)
    assert response.status_code == 200
    record = LexofficeWebhookEvent.objects.get()
    assert record.status == "verified" and record.detail == "unknown event type"
    assert "spaceship.landed" in caplog.text
    assert [kw["event_type"] for kw in received] == ["spaceship.landed"]


@needs_celery
@override_settings(LEXOFFICE_WEBHOOK_USE_CELERY=True)
def test_receivers_are_queued_as_a_celery_task_when_configured(client, key, on_commit, received):
    from django_lexoffice import tasks

    with mock.patch.object(tasks.send_event_received, "delay") as delay:
        on_commit(deliver, client, event_body("invoice.created", resource_id="inv-9"), key)
    delay.assert_called_once_with(
        "invoice.created", "inv-9", ORGANIZATION_ID, "2099-04-11T08:25:07+02:00"
    )
    assert received == []
    tasks.send_event_received(*delay.call_args.args)  # what the worker runs
    assert [kw["resource_id"] for kw in received] == ["inv-9"]


def test_events_older_than_a_week_are_pruned(client, key):
    deliver(client, event_body("invoice.created"), key)
    LexofficeWebhookEvent.objects.update(received_at=timezone.now() - timedelta(days=8))
    deliver(client, event_body("invoice.changed"), key)
    assert webhooks.prune_events() == 1
    assert LexofficeWebhookEvent.objects.get().event_type == "invoice.changed"


# -- SECURITY.md 22: replays and stale events -----------------------------------------------


def test_sec22_replayed_event_has_one_effect(
    client, key, make_connection, revoked, received, on_commit
):
    old_connection(make_connection)
    body = event_body()
    first = on_commit(deliver, client, body, key)
    second = on_commit(deliver, client, body, key)
    assert (first.status_code, first.content) == (200, b"verified")
    assert (second.status_code, second.content) == (200, b"duplicate")
    assert len(revoked) == 1 and len(received) == 1
    assert sorted(LexofficeWebhookEvent.objects.values_list("status", flat=True)) == [
        "duplicate",
        "verified",
    ]


def test_sec22_stale_token_revoked_does_not_end_a_newer_grant(client, key, make_connection):
    connection = make_connection(authorized_at=timezone.now())
    stale = (timezone.now() - timedelta(hours=1)).isoformat()
    response = deliver(client, event_body(event_date=stale), key)
    assert response.status_code == 200
    connection.refresh_from_db()
    assert connection.status == "active" and connection.has_refresh_token
    assert not connection.ended_in_lexoffice


# -- SECURITY.md 23: token.revoked ends exactly that grant -----------------------------------


def test_sec23_token_revoked_ends_that_connection_and_sends_nothing_to_lexware(
    client, key, make_connection, revoked, on_commit, fake_lexware
):
    connection = old_connection(make_connection)
    LexofficeSubscription.objects.create(
        connection=connection,
        subscription_id="s-1",
        event_type="token.revoked",
        callback_url="https://example.com/lexoffice/webhook/",
    )
    response = on_commit(deliver, client, event_body(), key)
    assert response.status_code == 200
    connection.refresh_from_db()
    assert connection.status == "revoked" and connection.ended_in_lexoffice
    assert connection.access_token == "" and connection.refresh_token == ""
    assert connection.expires_at is None
    assert not LexofficeSubscription.objects.exists()
    assert fake_lexware.count("revoke") == 0
    (kwargs,) = revoked
    assert kwargs["connection"].pk == connection.pk
    assert kwargs["revoked_at_lexware"] is True and kwargs["ended_in_lexoffice"] is True


def test_sec23_only_the_connection_with_that_connection_id_ends(
    client, key, make_connection, django_user_model
):
    other_user = django_user_model.objects.create_user(username="max")
    ours = old_connection(make_connection)
    same_org = old_connection(make_connection, user=other_user, connection_id="other-grant")
    other_org = old_connection(
        make_connection, organization_id="other-org", connection_id="another-grant"
    )
    deliver(client, event_body(), key)
    statuses = {c.pk: c.status for c in LexofficeConnection.objects.all()}
    assert statuses == {ours.pk: "revoked", same_org.pk: "active", other_org.pk: "active"}


def test_sec23_connection_id_of_another_organization_ends_nothing(client, key, make_connection):
    connection = old_connection(make_connection)
    deliver(client, event_body(organization_id="someone-else"), key)
    connection.refresh_from_db()
    assert connection.status == "active"


def test_token_revoked_for_an_unknown_connection_is_acknowledged(client, key):
    response = deliver(client, event_body(resource_id="unknown"), key)
    assert response.status_code == 200


def test_site_revoke_says_not_ended_in_lexoffice(make_connection, revoked, fake_lexware):
    from django_lexoffice import tokens

    connection = make_connection()
    LexofficeSubscription.objects.create(
        connection=connection,
        subscription_id="s-1",
        event_type="token.revoked",
        callback_url="https://example.com/lexoffice/webhook/",
    )
    tokens.revoke(connection)
    assert revoked[0]["ended_in_lexoffice"] is False
    assert not LexofficeSubscription.objects.exists()


# -- failure inside the handler --------------------------------------------------------------


def test_failure_inside_the_handler_answers_500_keeps_nothing_and_the_retry_has_one_effect(
    client, key, make_connection, revoked, received, on_commit
):
    connection = old_connection(make_connection)
    body = event_body()
    real = webhooks.tokens.end_from_lexware
    with mock.patch.object(webhooks.tokens, "end_from_lexware", side_effect=RuntimeError("db")):
        failed = on_commit(deliver, client, body, key)
    assert failed.status_code == 500
    connection.refresh_from_db()
    assert connection.status == "active" and connection.has_refresh_token
    assert list(LexofficeWebhookEvent.objects.values_list("status", flat=True)) == ["failed"]
    assert revoked == [] and received == []
    assert webhooks.tokens.end_from_lexware is real
    retried = on_commit(deliver, client, body, key)
    again = on_commit(deliver, client, body, key)
    assert (retried.status_code, retried.content, again.content) == (200, b"verified", b"duplicate")
    connection.refresh_from_db()
    assert connection.status == "revoked"
    assert len(revoked) == 1 and len(received) == 1


# -- the user's page --------------------------------------------------------------------------


def test_connections_page_says_ended_in_lexoffice_and_offers_connect_again(
    client, key, user, make_connection
):
    old_connection(make_connection)
    deliver(client, event_body(), key)
    client.force_login(user)
    page = client.get(reverse("lexoffice:connections")).content.decode()
    assert "was ended in lexoffice" in page and "Connect again" in page


# -- PostgreSQL: token.revoked racing a refresh -------------------------------------------


@pytest.mark.postgres
@pytest.mark.skipif(
    __import__("os").environ.get("LEXOFFICE_TEST_DB") != "postgres",
    reason="row locks need PostgreSQL: run with LEXOFFICE_TEST_DB=postgres",
)
@pytest.mark.django_db(transaction=True)
def test_token_revoked_racing_a_refresh_ends_revoked_with_no_token(
    fake_lexware, user, key, settings
):
    import threading
    import time

    from django.db import connection as db_connection

    from django_lexoffice import tokens
    from django_lexoffice.exceptions import LexofficeError

    grant = fake_lexware.issue_tokens(settings.SOCIAL_AUTH_LEXOFFICE_KEY, scopes=["profile.read"])
    organization_id = fake_lexware.companies()[0]["organization_id"]
    connection_id = fake_lexware.connection_id_for(grant["refresh_token"])
    connection = LexofficeConnection.objects.create(
        user=user,
        organization_id=organization_id,
        connection_id=connection_id,
        access_token=grant["access_token"],
        refresh_token=grant["refresh_token"],
        expires_at=timezone.now() + timedelta(seconds=10),
        authorized_at=timezone.now() - timedelta(minutes=1),
    )
    # The refresh holds the row lock while Lexware is slow to answer.
    fake_lexware.inject("refresh", "slow", seconds=1.0)
    outcomes: list[str] = []

    def refresh() -> None:
        try:
            outcomes.append(tokens.refresh(LexofficeConnection(pk=connection.pk)).outcome.value)
        except LexofficeError as exc:
            outcomes.append(type(exc).__name__)
        finally:
            db_connection.close()

    worker = threading.Thread(target=refresh)
    worker.start()
    time.sleep(0.3)
    # Meanwhile the user ends the connection in lexoffice, and Lexware tells us.
    fake_lexware.revoke_connection(grant["refresh_token"])
    body = event_body(
        resource_id=connection_id,
        organization_id=organization_id,
        event_date=timezone.now().isoformat(),
    )
    response = deliver(Client(), body, key)  # waits for the refresh's row lock
    worker.join(timeout=30)
    assert response.status_code == 200
    assert outcomes and outcomes[0] in {"ReauthorizationRequired", "refreshed"}
    connection.refresh_from_db()
    assert connection.status == "revoked" and connection.ended_in_lexoffice
    assert connection.access_token == "" and connection.refresh_token == ""
    assert fake_lexware.get("grant", connection_id) is None  # no grant left alive


def test_unparsable_content_length_is_read_with_the_cap(rf, key):
    body = event_body("invoice.created")
    request = rf.post(WEBHOOK_URL, data=body, content_type="application/json")
    request.META["CONTENT_LENGTH"] = "lots"
    assert webhooks._read_body(request) == body


def test_concurrent_copy_that_wins_the_unique_index_makes_this_one_a_duplicate(client, key):
    body = event_body("invoice.created")
    deliver(client, body, key)
    # As if the other copy committed between our check and our insert.
    with mock.patch("django.db.models.query.QuerySet.exists", return_value=False):
        response = deliver(client, body, key)
    assert response.content == b"duplicate"
    assert sorted(LexofficeWebhookEvent.objects.values_list("status", flat=True)) == [
        "duplicate",
        "verified",
    ]


def test_replayed_token_revoked_for_a_connection_already_revoked_changes_nothing(
    client, key, make_connection, revoked, on_commit
):
    connection = old_connection(
        make_connection, status="revoked", access_token="", refresh_token=""
    )
    on_commit(deliver, client, event_body(), key)
    connection.refresh_from_db()
    assert not connection.ended_in_lexoffice and revoked == []


def test_failure_that_cannot_even_be_recorded_still_answers_500(client, key, caplog):
    with (
        mock.patch.object(webhooks, "record_and_apply", side_effect=RuntimeError("db down")),
        mock.patch.object(
            LexofficeWebhookEvent.objects, "create", side_effect=RuntimeError("db down")
        ),
    ):
        response = deliver(client, event_body(), key)
    assert response.status_code == 500
    assert "could not record the failure" in caplog.text
