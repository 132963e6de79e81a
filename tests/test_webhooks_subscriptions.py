"""Event subscriptions, the sync command and the fake Lexware's webhooks (SECURITY.md 24)."""

from __future__ import annotations

from unittest import mock

import pytest
import requests
from django.contrib.admin.models import LogEntry

from django_lexoffice import subscriptions
from django_lexoffice.exceptions import NoResponse
from django_lexoffice.models import LexofficeConnection, LexofficeSubscription
from django_lexoffice.signals import connection_revoked
from django_lexoffice.testing import webhooks as fake_webhooks

from .conftest import assert_no_token, run_command
from .test_flow import connect
from .webhook_helpers import needs_celery

pytestmark = pytest.mark.django_db

CALLBACK_URL = "https://testserver/lexoffice/webhook/"
API = "https://api.lexware.io/v1/event-subscriptions"


@pytest.fixture(autouse=True)
def webhook_settings(settings, fake_lexware):
    settings.LEXOFFICE_WEBHOOK_URL = CALLBACK_URL
    settings.LEXOFFICE_WEBHOOK_PUBLIC_KEY = fake_lexware.webhook_public_key()


@pytest.fixture
def login(client, fake_lexware, django_capture_on_commit_callbacks):
    """Log in through the fake and run what the login queued on commit."""

    def run(**kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            response = connect(client, fake_lexware, **kwargs)
        assert response.status_code == 302
        return LexofficeConnection.objects.order_by("-pk").first()

    return run


def run(*args: str) -> tuple[str, str, int]:
    return run_command("sync_lexoffice_subscriptions", *args)


# -- subscribing at login --------------------------------------------------------------------


def test_login_subscribes_the_new_grant_to_the_configured_events(login, fake_lexware, settings):
    settings.LEXOFFICE_WEBHOOK_EVENTS = ["token.revoked", "invoice.created"]
    connection = login()
    at_lexware = fake_lexware.subscriptions()
    assert sorted(s["eventType"] for s in at_lexware) == ["invoice.created", "token.revoked"]
    assert {s["connectionId"] for s in at_lexware} == {connection.connection_id}
    assert {s["callbackUrl"] for s in at_lexware} == {CALLBACK_URL}
    records = {r.event_type: r.subscription_id for r in connection.subscriptions.all()}
    assert records == {s["eventType"]: s["subscriptionId"] for s in at_lexware}


def test_without_webhook_url_a_login_makes_no_subscription(login, fake_lexware, settings):
    del settings.LEXOFFICE_WEBHOOK_URL
    login()
    assert fake_lexware.subscriptions() == []
    assert not LexofficeSubscription.objects.exists()


def test_a_reconnect_gets_a_new_connection_id_and_subscribes_again(login, fake_lexware):
    first = login()
    first_id = first.connection_id
    second = login()
    assert second.pk == first.pk and second.connection_id != first_id
    record = LexofficeSubscription.objects.get()
    mine = [s for s in fake_lexware.subscriptions() if s["connectionId"] == second.connection_id]
    assert [s["subscriptionId"] for s in mine] == [record.subscription_id]


def test_sec24_failed_subscription_is_recorded_never_breaks_the_login_and_sync_repairs_it(
    login, fake_lexware, settings
):
    settings.LEXOFFICE_WEBHOOK_URL = "https://testserver/not-the-webhook/"  # HEAD check -> 406
    connection = login()
    assert connection.status == "active"
    record = LexofficeSubscription.objects.get()
    assert record.subscription_id == "" and "406" in record.last_error
    settings.LEXOFFICE_WEBHOOK_URL = CALLBACK_URL
    out, err, code = run()
    assert code == 0, err
    assert out == (
        "Created 1 and deleted 0 subscriptions for 1 connection; failed 0; "
        "pruned 0 old webhook events.\n"
    )
    record = LexofficeSubscription.objects.get()
    assert record.subscription_id and record.callback_url == CALLBACK_URL and not record.last_error


def test_sec24_lexware_unreachable_during_subscription_never_breaks_the_login(login, fake_lexware):
    with mock.patch.object(
        subscriptions.LexofficeClient,
        "post",
        side_effect=NoResponse("lexoffice POST: no answer", maybe_processed=False),
    ):
        connection = login()
    assert connection.status == "active"
    record = LexofficeSubscription.objects.get()
    assert record.subscription_id == "" and "NoResponse" in record.last_error


def test_sec24_subscription_calls_use_a_short_timeout_and_a_clean_https_url(login):
    seen = []
    real = subscriptions.LexofficeClient.__init__

    def spy(self, connection, **kwargs):
        seen.append(kwargs.get("timeout"))
        real(self, connection, **kwargs)

    with mock.patch.object(subscriptions.LexofficeClient, "__init__", spy):
        login()
    assert seen and all(t is not None and max(t) <= 5 for t in seen)
    assert subscriptions.callback_url_problem(CALLBACK_URL) is None
    assert subscriptions.callback_url_problem("http://example.com/lexoffice/webhook/")
    assert subscriptions.callback_url_problem("https://example.com/webhook/?secret=1")
    assert subscriptions.callback_url_problem("https://user:pw@example.com/webhook/")
    assert subscriptions.callback_url_problem("http://127.0.0.1:8000/lexoffice/webhook/") is None


def test_revoking_or_ending_a_connection_drops_its_subscription_records(login, fake_lexware):
    from django_lexoffice import tokens

    connection = login()
    assert LexofficeSubscription.objects.exists()
    tokens.revoke(connection)
    assert not LexofficeSubscription.objects.exists()


# -- the sync command ---------------------------------------------------------------------------


def test_sync_creates_missing_and_deletes_ours_no_longer_wanted(login, fake_lexware, settings):
    settings.LEXOFFICE_WEBHOOK_EVENTS = ["token.revoked", "contact.changed"]
    connection = login()
    settings.LEXOFFICE_WEBHOOK_EVENTS = ["token.revoked", "invoice.created"]
    out, err, code = run("--dry-run", "-v", "2")
    assert code == 0 and err == ""
    assert "would create invoice.created; would delete contact.changed" in out
    assert out.endswith("Would create 1 and delete 1 subscriptions for 1 connection.\n")
    assert sorted(s["eventType"] for s in fake_lexware.subscriptions()) == [
        "contact.changed",
        "token.revoked",
    ]
    out, err, code = run()
    assert code == 0, err
    assert out.startswith("Created 1 and deleted 1 subscriptions for 1 connection;")
    assert sorted(s["eventType"] for s in fake_lexware.subscriptions()) == [
        "invoice.created",
        "token.revoked",
    ]
    assert sorted(connection.subscriptions.values_list("event_type", flat=True)) == [
        "invoice.created",
        "token.revoked",
    ]
    out, err, code = run()
    assert out.startswith("Created 0 and deleted 0 subscriptions for 1 connection;")


def test_sync_moves_ours_to_a_new_callback_url(login, fake_lexware, settings):
    settings.LEXOFFICE_WEBHOOK_URL = "http://testserver/lexoffice/webhook/"
    login()
    settings.LEXOFFICE_WEBHOOK_URL = CALLBACK_URL
    _, err, code = run()
    assert code == 0, err
    assert [s["callbackUrl"] for s in fake_lexware.subscriptions()] == [CALLBACK_URL]


def test_sync_leaves_subscriptions_that_are_not_ours_alone(login, fake_lexware, settings):
    connection = login()
    with subscriptions._client(connection) as client:
        client.post(API, json={"eventType": "voucher.created", "callbackUrl": CALLBACK_URL})
    run()
    assert "voucher.created" in [s["eventType"] for s in fake_lexware.subscriptions()]


def test_sync_failure_goes_to_stderr_and_exits_non_zero(login, fake_lexware, settings):
    connection = login()
    fake_lexware.revoke_connection(connection.refresh_token)
    fake_lexware.invalidate_access_token(connection.access_token)
    out, err, code = run("--user", connection.user.username)
    assert code == 1
    assert "Failed to sync" in err and "1 connection failed." in err
    assert "failed 1" in out


def test_sync_filters_and_unknown_user(login):
    login()
    assert run("--organization", "nobody")[0].startswith("Created 0 and deleted 0")
    _, err, code = run("--user", "nobody")
    assert code == 1 and "No user with username 'nobody'" in err


# -- the fake's webhook surface ----------------------------------------------------------------


def test_fake_subscription_endpoints_answer_like_lexware(login, fake_lexware):
    connection = login()
    with subscriptions._client(connection) as client:
        body = {"eventType": "token.revoked", "callbackUrl": CALLBACK_URL}
        assert client.post(API, json=body, raise_for_status=False).status_code == 409
        bad = {"eventType": "invoice.created", "callbackUrl": "https://testserver/nope/"}
        assert client.post(API, json=bad, raise_for_status=False).status_code == 406
        plain = {"eventType": "invoice.created", "callbackUrl": "http://example.com/x"}
        assert client.post(API, json=plain, raise_for_status=False).status_code == 406
        (item,) = client.get(API).json()["content"]
        assert set(item) == {
            "subscriptionId",
            "organizationId",
            "createdDate",
            "eventType",
            "callbackUrl",
        }
        one = f"{API}/{item['subscriptionId']}"
        assert client.get(one).json()["eventType"] == "token.revoked"
        assert client.delete(one).status_code == 204
        assert client.delete(one, raise_for_status=False).status_code == 404
    assert requests.get(API).status_code == 401


def test_fake_end_connection_delivers_signed_token_revoked_and_the_site_ends_it(
    login, fake_lexware, django_capture_on_commit_callbacks
):
    connection = login()
    with django_capture_on_commit_callbacks(execute=True):
        statuses = fake_lexware.end_connection(connection.connection_id)
    assert statuses == [200]
    connection.refresh_from_db()
    assert connection.status == "revoked" and connection.ended_in_lexoffice
    assert connection.refresh_token == ""
    assert fake_lexware.subscriptions() == []
    assert not LexofficeSubscription.objects.exists()
    assert fake_lexware.count("revoke") == 0


def test_fake_redelivers_a_failed_delivery_until_it_succeeds_with_one_effect(
    login, fake_lexware, django_capture_on_commit_callbacks
):
    from django_lexoffice import webhooks

    connection = login()
    failures = [RuntimeError("db down")] * 2
    real = webhooks.tokens.end_from_lexware

    def flaky(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    revoked = []
    connection_revoked.connect(lambda **kw: revoked.append(kw), dispatch_uid="redo", weak=False)
    try:
        with mock.patch.object(webhooks.tokens, "end_from_lexware", flaky):
            with django_capture_on_commit_callbacks(execute=True):
                assert fake_lexware.end_connection(connection.connection_id) == [500]
                assert len(fake_lexware.failed_deliveries()) == 1
                assert fake_lexware.redeliver_failed(attempts=5) == [500, 200]
                assert fake_lexware.redeliver_failed() == []
    finally:
        connection_revoked.disconnect(dispatch_uid="redo")
    connection.refresh_from_db()
    assert connection.status == "revoked"
    assert len(revoked) == 1


def test_fake_delivers_other_events_to_subscribers(
    login, fake_lexware, settings, django_capture_on_commit_callbacks
):
    from django_lexoffice.signals import event_received

    settings.LEXOFFICE_WEBHOOK_EVENTS = ["invoice.created"]
    connection = login()
    received = []
    event_received.connect(lambda **kw: received.append(kw), dispatch_uid="fake", weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            statuses = fake_lexware.deliver_event(
                "invoice.created", "inv-1", organization_id=connection.organization_id
            )
    finally:
        event_received.disconnect(dispatch_uid="fake")
    assert statuses == [200]
    assert [(kw["event_type"], kw["resource_id"]) for kw in received] == [
        ("invoice.created", "inv-1")
    ]
    assert list(received[0]["connections"]) == [connection]


def test_fake_verbundene_apps_page_ends_a_connection(
    login, fake_lexware, client, django_capture_on_commit_callbacks
):
    connection = login()
    page = client.get("/fake-lexware/verbundene-apps")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Verbundene Apps" in html and "Verbindung trennen" in html
    assert connection.connection_id in html
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/fake-lexware/verbundene-apps", {"connection_id": connection.connection_id}
        )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.status == "revoked" and connection.ended_in_lexoffice
    assert "Keine Apps verbunden" in client.get("/fake-lexware/verbundene-apps").content.decode()


def test_fake_signing_key_is_made_once_and_verifies_with_its_public_pem(fake_lexware):
    from django_lexoffice import signature

    body = b'{"x": 1}'
    key = signature.load_public_key(fake_lexware.webhook_public_key())
    assert fake_webhooks.signing_key() is fake_webhooks.signing_key()
    assert signature.verify(body, fake_webhooks.sign(body), [key])


# -- HTTP 402: a contract issue, not an authorization failure ----------------------------------


def test_http_402_raises_contract_issue_keeps_the_connection_active_and_a_success_clears_it(
    make_connection, django_capture_on_commit_callbacks
):
    import responses

    from django_lexoffice.client import LexofficeClient
    from django_lexoffice.exceptions import ContractIssue, LexofficeAPIError

    connection = make_connection()
    with responses.RequestsMock() as rsps:
        rsps.add(
            "GET",
            "https://api.lexware.io/v1/contacts",
            status=402,
            json={"message": "Action not accessible due to a lexoffice contract issue"},
        )
        rsps.add("GET", "https://api.lexware.io/v1/profile", json={"companyName": "X"})
        with LexofficeClient(connection) as client:
            with (
                pytest.raises(ContractIssue) as excinfo,
                django_capture_on_commit_callbacks(execute=True),
            ):
                client.get("/v1/contacts")
            assert isinstance(excinfo.value, LexofficeAPIError) and excinfo.value.status == 402
            connection.refresh_from_db()
            assert connection.status == "active"
            assert "402 contract issue" in connection.last_error
            assert connection.access_token not in connection.last_error
            with django_capture_on_commit_callbacks(execute=True):
                client.get("/v1/profile")
    connection.refresh_from_db()
    assert connection.last_error == "" and connection.last_error_at is None


def test_a_refresh_clears_a_recorded_contract_issue(make_connection):
    connection = make_connection(last_error="HTTP 402 contract issue: GET /v1/contacts")
    connection.set_tokens("new-access", "new-refresh", 3600)
    assert connection.last_error == ""


# -- admin: events, subscriptions, sync action ------------------------------------------------


def test_admin_lists_received_events_read_only(admin_client, client, fake_lexware):
    from django.urls import reverse

    from .webhook_helpers import event_body

    body = event_body("invoice.created")
    client.post(
        "/lexoffice/webhook/",
        data=body,
        content_type="application/json",
        HTTP_X_LXO_SIGNATURE=fake_webhooks.sign(body),
    )
    url = reverse("admin:django_lexoffice_lexofficewebhookevent_changelist")
    page = admin_client.get(url).content.decode()
    assert "invoice.created" in page and "Verified" in page
    assert admin_client.get(url + "add/").status_code == 403


def test_admin_shows_subscriptions_and_syncs_them(admin_client, login, fake_lexware, settings):
    from django.urls import reverse

    connection = login()
    detail = admin_client.get(
        reverse("admin:django_lexoffice_lexofficeconnection_change", args=[connection.pk])
    ).content.decode()
    assert "token.revoked" in detail and CALLBACK_URL in detail
    settings.LEXOFFICE_WEBHOOK_EVENTS = ["token.revoked", "invoice.created"]
    response = admin_client.post(
        reverse("admin:django_lexoffice_lexofficeconnection_changelist"),
        {"action": "sync_subscriptions", "_selected_action": [connection.pk]},
        follow=True,
    )
    assert "Synced the subscriptions of 1 connection." in response.content.decode()
    assert sorted(s["eventType"] for s in fake_lexware.subscriptions()) == [
        "invoice.created",
        "token.revoked",
    ]
    # Like refresh and revoke, the sync goes into the connection's history.
    entry = LogEntry.objects.get(object_id=str(connection.pk))
    assert entry.get_change_message() == "Synced the subscriptions of 1 connection."


def test_admin_sync_action_leaves_inactive_connections_alone(admin_client, login, fake_lexware):
    from django.urls import reverse

    connection = login()
    connection.status = "revoked"
    connection.save(update_fields=["status"])
    response = admin_client.post(
        reverse("admin:django_lexoffice_lexofficeconnection_changelist"),
        {"action": "sync_subscriptions", "_selected_action": [connection.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "Synced the subscriptions" not in page and "failed" not in page
    assert not LogEntry.objects.exists()


def test_admin_sync_action_reports_a_failure(admin_client, login, fake_lexware):
    from django.urls import reverse

    connection = login()
    fake_lexware.revoke_connection(connection.refresh_token)
    fake_lexware.invalidate_access_token(connection.access_token)
    response = admin_client.post(
        reverse("admin:django_lexoffice_lexofficeconnection_changelist"),
        {"action": "sync_subscriptions", "_selected_action": [connection.pk]},
        follow=True,
    )
    assert "Syncing the subscriptions of 1 connection failed." in response.content.decode()


def test_an_unexpected_error_while_subscribing_never_breaks_the_login(login, caplog):
    with mock.patch.object(subscriptions, "subscribe", side_effect=RuntimeError("bug")):
        connection = login()
    assert connection.status == "active"
    assert "Subscribing lexoffice connection" in caplog.text


@needs_celery
def test_subscriptions_are_queued_as_celery_task_when_configured(login, settings, fake_lexware):
    from django_lexoffice import tasks

    settings.LEXOFFICE_WEBHOOK_USE_CELERY = True
    with mock.patch.object(tasks.subscribe_connection, "delay") as delay:
        connection = login()
    delay.assert_called_once_with(connection.pk)
    assert fake_lexware.subscriptions() == []
    tasks.subscribe_connection(connection.pk)  # what the worker runs
    assert len(fake_lexware.subscriptions()) == 1


@needs_celery
def test_sync_task_syncs_and_prunes(login, fake_lexware, settings):
    from django_lexoffice import tasks

    connection = login()
    settings.LEXOFFICE_WEBHOOK_EVENTS = ["token.revoked", "invoice.created"]
    result = tasks.sync_subscriptions()
    assert result == {"connections": 1, "created": 1, "deleted": 0, "failed": 0, "pruned": 0}
    assert connection.subscriptions.count() == 2


def test_subscribing_again_learns_the_id_of_an_existing_subscription(login, fake_lexware):
    connection = login()
    (at_lexware,) = fake_lexware.subscriptions()
    assert subscriptions.subscribe(connection) == []  # Lexware answers 409: already there
    assert connection.subscriptions.get().subscription_id == at_lexware["subscriptionId"]


def test_subscribing_a_connection_that_is_gone_or_inactive_does_nothing(make_connection):
    assert subscriptions.subscribe_connection(999999) == []
    revoked = make_connection(status="revoked")
    assert subscriptions.subscribe_connection(revoked.pk) == []


def test_sync_reports_a_refused_delete(login, fake_lexware, settings):
    settings.LEXOFFICE_WEBHOOK_EVENTS = ["token.revoked", "invoice.created"]
    login()
    settings.LEXOFFICE_WEBHOOK_EVENTS = ["token.revoked"]
    refused = mock.Mock(status_code=500)
    with mock.patch.object(subscriptions.LexofficeClient, "delete", return_value=refused):
        _, err, code = run()
    assert code == 1 and "answered HTTP 500" in err


def test_fake_deletes_the_subscriptions_of_a_revoked_grant(login, fake_lexware):
    from django_lexoffice import tokens

    connection = login()
    organization_id = connection.organization_id
    assert len(fake_lexware.subscriptions()) == 1
    tokens.revoke(connection)  # the site revokes: Lexware drops that grant's subscriptions
    assert fake_lexware.subscriptions() == []
    assert fake_lexware.deliver_event("token.revoked", "x", organization_id=organization_id) == []


# -- answers that are not what Lexware documents ---------------------------------------------


def answer(status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    return response


def lexware_answering(broken: LexofficeConnection, listed: bytes, created: bytes = b"{}"):
    """``LexofficeClient.request`` faked: ``broken``'s calls get ``listed`` (GET) and
    ``created`` (201 to POST); every other connection's get Lexware's documented answers."""

    def request(client, method, path, **kwargs):
        if client.connection.pk != broken.pk:
            listed_ok, created_ok = b'{"content": []}', b'{"id": "sub-ok"}'
            return answer(200, listed_ok) if method == "GET" else answer(201, created_ok)
        return answer(200, listed) if method == "GET" else answer(201, created)

    return mock.patch.object(
        subscriptions.LexofficeClient, "request", autospec=True, side_effect=request
    )


@pytest.mark.parametrize(
    ("listed", "created"),
    [
        (b"[]", b"{}"),
        (b"null", b"{}"),
        (b"<html>Bad gateway</html>", b"{}"),
        (b'{"content": {"eventType": "token.revoked"}}', b"{}"),
        (b'{"content": []}', b"[]"),
        (b'{"content": []}', b"null"),
    ],
)
def test_sync_counts_an_unexpected_answer_as_a_failure_and_syncs_the_other_connections(
    make_connection, listed, created
):
    broken = make_connection()
    healthy = make_connection(
        organization_id="0b6d1c5e-7a1f-4a52-9d0e-5f3c2e4b6a71",
        connection_id="9c1f4e2a-3b5d-4c6e-8f7a-1b2c3d4e5f60",
    )
    with lexware_answering(broken, listed, created):
        summary = subscriptions.sync_all()
    assert (summary.connections, summary.failed, summary.created) == (2, 1, 1)
    (error,) = summary.errors
    assert error.startswith("SubscriptionError: ") and "unexpected answer" in error
    assert_no_token(error)
    assert healthy.subscriptions.get().subscription_id == "sub-ok"


def test_admin_sync_action_reports_an_unexpected_answer(admin_client, make_connection):
    from django.urls import reverse

    connection = make_connection()
    with lexware_answering(connection, b"[]"):
        response = admin_client.post(
            reverse("admin:django_lexoffice_lexofficeconnection_changelist"),
            {"action": "sync_subscriptions", "_selected_action": [connection.pk]},
            follow=True,
        )
    assert response.status_code == 200
    assert "Syncing the subscriptions of 1 connection failed." in response.content.decode()
