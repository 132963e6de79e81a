"""The whole login / connect flow against the strict fake Lexware (SECURITY.md 1-12)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError
from django.db import connection as db_connection
from social_django.models import UserSocialAuth

from django_lexoffice import signals
from django_lexoffice.models import LexofficeConnection

from .conftest import REFRESH_TOKEN

pytestmark = pytest.mark.django_db


def begin(client, **data):
    response = client.post("/lexoffice/login/", data)
    assert response.status_code == 302, response.content
    return response["Location"]


def query(url):
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def follow_callback(client, callback_url):
    parts = urlsplit(callback_url)
    return client.get(parts.path, parse_qs(parts.query))


def connect(client, fake, company=None, **data):
    callback_url = fake.approve(begin(client, **data), company=company)
    return follow_callback(client, callback_url)


def assert_nothing_stored():
    assert LexofficeConnection.objects.count() == 0
    assert UserSocialAuth.objects.count() == 0


def test_login_creates_user_connection_and_lands_on_clean_url(client, fake_lexware, capture_signal):
    created = capture_signal(signals.connection_created)
    response = connect(client, fake_lexware)
    received = [kw["connection"].pk for kw in created]
    assert response.status_code == 302
    assert response["Location"] == "/lexoffice/connections/"
    assert response["Referrer-Policy"] == "strict-origin"
    connection = LexofficeConnection.objects.get()
    assert received == [connection.pk]
    assert connection.status == "active" and connection.scopes == ["profile.read", "contacts.read"]
    assert fake_lexware.is_refresh_token_valid(connection.refresh_token)
    assert fake_lexware.is_access_token_valid(connection.access_token)
    assert connection.expires_at is not None and connection.company_name
    user = get_user_model().objects.get()
    assert connection.user == user and int(client.session["_auth_user_id"]) == user.pk
    social = UserSocialAuth.objects.get()
    assert social.uid == connection.lexoffice_user_id and social.provider == "lexoffice"
    page = client.get("/lexoffice/connections/")
    assert connection.company_name in page.content.decode()


def test_sec11_no_plaintext_token_in_any_raw_row(client, fake_lexware):
    connect(client, fake_lexware)
    connection = LexofficeConnection.objects.get()
    secrets = [connection.access_token, connection.refresh_token]
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT extra_data FROM social_auth_usersocialauth")
        extra = cursor.fetchone()[0]
        cursor.execute(
            "SELECT access_token, refresh_token FROM django_lexoffice_lexofficeconnection"
        )
        columns = " ".join(cursor.fetchone())
        cursor.execute("SELECT COUNT(*) FROM social_auth_partial")
        assert cursor.fetchone()[0] == 0
    extra_data = json.loads(extra) if isinstance(extra, str) else extra
    assert not {"access_token", "refresh_token", "token_type"} & set(extra_data)
    assert extra_data["organization_id"] == connection.organization_id
    for secret in secrets:
        assert secret[:16] not in extra and secret[:16] not in columns


def test_a_logged_in_user_connects_without_a_second_account(client, fake_lexware, user):
    user.first_name = "Eigene"
    user.save()
    client.force_login(user)
    response = connect(client, fake_lexware)
    assert response["Location"] == "/lexoffice/connections/"
    assert get_user_model().objects.count() == 1
    assert LexofficeConnection.objects.get().user == user
    user.refresh_from_db()
    assert user.first_name == "Eigene"  # never overwritten by the Lexware user's name


def test_two_companies_and_reconnecting_updates_the_same_row(client, fake_lexware, user):
    client.force_login(user)
    companies = fake_lexware.companies()
    connect(client, fake_lexware, company=companies[0]["organization_id"])
    connect(client, fake_lexware, company=companies[1]["organization_id"])
    assert LexofficeConnection.objects.filter(user=user).count() == 2
    first = LexofficeConnection.objects.get(organization_id=companies[0]["organization_id"])
    old_refresh = first.refresh_token
    connect(client, fake_lexware, company=companies[0]["organization_id"])
    first.refresh_from_db()
    assert LexofficeConnection.objects.filter(user=user).count() == 2
    assert first.refresh_token != old_refresh


def test_sec09_accounts_are_never_matched_by_email(client, fake_lexware, django_user_model):
    company = fake_lexware.companies()[0]
    django_user_model.objects.create_user("victim", email=company["user_email"])
    connect(client, fake_lexware, company=company["organization_id"])
    connection = LexofficeConnection.objects.get()
    assert connection.user.username != "victim"
    assert django_user_model.objects.count() == 2


def test_sec09_uid_is_compared_exactly(client, fake_lexware, django_user_model):
    company = fake_lexware.companies()[0]
    other = django_user_model.objects.create_user("other")
    UserSocialAuth.objects.create(user=other, provider="lexoffice", uid=company["user_id"].upper())
    connect(client, fake_lexware, company=company["organization_id"])
    assert LexofficeConnection.objects.get().user != other


def test_sec06_access_denied_is_friendly_and_stores_nothing(client, fake_lexware):
    callback_url = fake_lexware.deny(begin(client))
    response = follow_callback(client, callback_url)
    assert response.status_code == 400
    assert response["Referrer-Policy"] == "strict-origin"
    assert b"You declined access" in response.content
    assert_nothing_stored()


def test_sec03_sec06_state_is_checked_before_error_and_spent(client, fake_lexware):
    url = begin(client)
    state = query(url)["state"]
    # An error callback with a forged state is a state failure, not "declined".
    response = client.get("/lexoffice/callback/", {"state": "forged", "error": "access_denied"})
    assert (
        response.status_code == 400 and b"invalid, expired or was already used" in response.content
    )
    # The real state is spent by an error callback: it cannot be used afterwards.
    client.get("/lexoffice/callback/", {"state": state, "error": "access_denied"})
    code_url = fake_lexware.approve(url)
    response = follow_callback(client, code_url)
    assert b"invalid, expired or was already used" in response.content
    assert_nothing_stored()


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"code": "abc"},
        {"state": "", "code": "abc"},
        {"state": "x" * 5000, "code": "abc"},
        {"state": ["a", "b"], "code": "abc"},
    ],
    ids=["nothing", "missing-state", "empty-state", "huge-state", "repeated-state"],
)
def test_sec03_bad_or_missing_state_stores_nothing(client, fake_lexware, params):
    begin(client)
    response = client.get("/lexoffice/callback/", params)
    assert response.status_code == 400
    assert response["Referrer-Policy"] == "strict-origin"
    assert b"invalid, expired or was already used" in response.content
    assert_nothing_stored()
    assert fake_lexware.count("token") == 0


def test_sec03_replayed_callback_stores_nothing_more(client, fake_lexware):
    callback_url = fake_lexware.approve(begin(client))
    assert follow_callback(client, callback_url).status_code == 302
    client.logout()
    response = follow_callback(client, callback_url)
    assert response.status_code == 400
    assert LexofficeConnection.objects.count() == 1


def test_sec03_state_is_bound_to_the_browser_session(client, fake_lexware):
    from django.test import Client

    callback_url = fake_lexware.approve(begin(client))
    response = follow_callback(Client(), callback_url)  # an attacker's browser
    assert response.status_code == 400
    assert_nothing_stored()


def test_sec06_valid_state_without_code(client, fake_lexware):
    state = query(begin(client))["state"]
    response = client.get("/lexoffice/callback/", {"state": state})
    assert response.status_code == 400 and b"did not confirm the sign-in" in response.content
    assert_nothing_stored()


def test_sec06_error_description_is_escaped(client, fake_lexware):
    state = query(begin(client))["state"]
    response = client.get(
        "/lexoffice/callback/",
        {
            "state": state,
            "error": "access_denied",
            "error_description": "<script>alert(1)</script>",
            "error_uri": "https://evil.test/",
        },
    )
    assert b"<script>alert(1)</script>" not in response.content
    assert b"evil.test" not in response.content


def test_sec07_two_tabs_two_flows_both_work(client, fake_lexware, user):
    client.force_login(user)
    companies = fake_lexware.companies()
    first = begin(client)
    second = begin(client)
    second_cb = fake_lexware.approve(second, company=companies[1]["organization_id"])
    first_cb = fake_lexware.approve(first, company=companies[0]["organization_id"])
    assert follow_callback(client, second_cb).status_code == 302
    assert follow_callback(client, first_cb).status_code == 302
    assert LexofficeConnection.objects.count() == 2


def test_sec07_sec08_two_tabs_each_land_on_their_own_next(client, fake_lexware, user):
    client.force_login(user)
    companies = fake_lexware.companies()
    first = begin(client, next="/first/")
    second = begin(client, next="/second/")
    first_cb = fake_lexware.approve(first, company=companies[0]["organization_id"])
    second_cb = fake_lexware.approve(second, company=companies[1]["organization_id"])
    assert follow_callback(client, first_cb)["Location"] == "/first/"
    assert follow_callback(client, second_cb)["Location"] == "/second/"


def test_sec05_code_exchange_uses_the_flows_verifier(client, fake_lexware):
    # The fake checks S256(verifier) == challenge and Basic auth; a mixed-up verifier fails.
    url = begin(client)
    state = query(url)["state"]
    key = f"lexoffice_oauth2_state_{state}"
    session = client.session
    transaction_data = session[key]
    transaction_data["code_verifier"] = "x" * 64
    session[key] = transaction_data
    session.save()
    response = follow_callback(client, fake_lexware.approve(url))
    assert response.status_code == 400 and b"did not confirm" in response.content
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("next_value", "expected"),
    [
        ("/after/", "/after/"),
        ("/after/?tab=1", "/after/?tab=1"),
        ("//evil.test", "/lexoffice/connections/"),
        ("https://evil.test", "/lexoffice/connections/"),
        ("/\\evil.test", "/lexoffice/connections/"),
        ("javascript:alert(1)", "/lexoffice/connections/"),
        ("http://localhost:80@evil.test/", "/lexoffice/connections/"),
        ("http://testserver/ok/", "http://testserver/ok/"),
    ],
)
def test_sec08_next_is_checked_and_kept_server_side(client, fake_lexware, next_value, expected):
    response = connect(client, fake_lexware, next=next_value)
    assert response.status_code == 302
    assert response["Location"] == expected


def test_sec03_sec08_a_forged_callback_keeps_the_pending_next(client, fake_lexware):
    url = begin(client, next="/after/")
    # e.g. <img src="https://site/lexoffice/callback/?state=x"> on a page the user visits
    assert client.get("/lexoffice/callback/", {"state": "forged"}).status_code == 400
    response = follow_callback(client, fake_lexware.approve(url))
    assert response["Location"] == "/after/"


def test_sec08_a_flow_without_next_neither_takes_nor_drops_another_flows(client, fake_lexware):
    with_next = begin(client, next="/after/")
    without_next = begin(client)
    response = follow_callback(client, fake_lexware.approve(without_next))
    assert response["Location"] == "/lexoffice/connections/"
    assert follow_callback(client, fake_lexware.approve(with_next))["Location"] == "/after/"


def test_sec08_next_on_the_callback_query_is_ignored(client, fake_lexware):
    callback_url = fake_lexware.approve(begin(client))
    parts = urlsplit(callback_url)
    params = parse_qs(parts.query)
    params["next"] = ["https://evil.test/"]
    response = client.get(parts.path, params)
    assert response["Location"] == "/lexoffice/connections/"


@pytest.mark.parametrize(
    ("endpoint", "kind", "reason"),
    [
        ("token", "server_error", b"could not be reached or answered with an error"),
        ("token", "non_json", b"could not be reached or answered with an error"),
        ("token", "invalid_grant", b"did not confirm the sign-in"),
        ("token", "connection_reset", b"could not be reached"),
        ("token", "unauthorized_client", b"not set up correctly"),
        ("profile", "server_error", b"could not be reached or answered with an error"),
        ("profile", "non_json", b"could not be reached or answered with an error"),
        ("profile", "rate_limit", b"could not be reached or answered with an error"),
        ("profile", "connection_reset", b"could not be reached"),
    ],
)
def test_sec18_lexware_failures_give_a_clear_page_and_store_nothing(
    client, fake_lexware, endpoint, kind, reason
):
    fake_lexware.inject(endpoint, kind)
    response = connect(client, fake_lexware)
    assert response.status_code in (400, 502, 503)
    assert response["Referrer-Policy"] == "strict-origin"
    assert reason in response.content
    assert_nothing_stored()


def test_sec10_success_redirect_has_no_code_or_state(client, fake_lexware):
    response = connect(client, fake_lexware, next="/after/")
    assert "code=" not in response["Location"] and "state=" not in response["Location"]


def test_already_connected_to_another_user(client, fake_lexware, django_user_model):
    company = fake_lexware.companies()[0]
    connect(client, fake_lexware, company=company["organization_id"])
    client.logout()
    someone = django_user_model.objects.create_user("someone")
    client.force_login(someone)
    response = connect(client, fake_lexware, company=company["organization_id"])
    assert response.status_code == 409
    assert not LexofficeConnection.objects.filter(user=someone).exists()


@pytest.mark.parametrize("kind", ["server_error", "non_json", "rate_limit", "connection_reset"])
def test_sec18_a_failed_profile_call_revokes_the_grant_of_the_code_exchange(
    client, fake_lexware, kind
):
    fake_lexware.inject("profile", kind)
    response = connect(client, fake_lexware)
    assert response.status_code == 502
    assert fake_lexware.count("token") == 1 and fake_lexware.count("revoke") == 1
    assert fake_lexware.live_grants() == []
    assert_nothing_stored()


def test_already_connected_to_another_user_revokes_the_new_grant(
    client, fake_lexware, django_user_model
):
    company = fake_lexware.companies()[0]["organization_id"]
    connect(client, fake_lexware, company=company)
    connection = LexofficeConnection.objects.get()
    client.logout()
    client.force_login(django_user_model.objects.create_user("someone"))
    assert connect(client, fake_lexware, company=company).status_code == 409
    assert len(fake_lexware.live_grants()) == 1
    assert fake_lexware.is_refresh_token_valid(connection.refresh_token)  # the stored one lives


def test_a_database_error_in_the_pipeline_revokes_the_new_grant(client, fake_lexware, monkeypatch):
    def explode(*args, **kwargs):
        raise DatabaseError("database went away")

    monkeypatch.setattr(
        "django_lexoffice.pipeline.LexofficeConnection.objects.select_for_update", explode
    )
    response = connect(client, fake_lexware)
    assert response.status_code == 500
    assert fake_lexware.count("token") == 1 and fake_lexware.live_grants() == []
    assert_nothing_stored()


def test_an_inactive_user_gets_no_connection_and_the_new_grant_is_revoked(client, fake_lexware):
    company = fake_lexware.companies()[0]["organization_id"]
    connect(client, fake_lexware, company=company)
    client.logout()
    before = LexofficeConnection.objects.get()
    get_user_model().objects.update(is_active=False)
    response = connect(client, fake_lexware, company=company)
    assert response.status_code == 403 and response["Referrer-Policy"] == "strict-origin"
    assert b"not allowed to sign in here" in response.content
    assert "_auth_user_id" not in client.session
    after = LexofficeConnection.objects.get()
    assert after.refresh_token == before.refresh_token  # the stored connection is untouched
    assert after.authorized_at == before.authorized_at
    assert len(fake_lexware.live_grants()) == 1
    assert fake_lexware.is_refresh_token_valid(before.refresh_token)


def test_an_inactive_user_without_a_connection_gets_none(client, fake_lexware):
    connect(client, fake_lexware)
    client.logout()
    LexofficeConnection.objects.all().delete()
    get_user_model().objects.update(is_active=False)
    assert connect(client, fake_lexware).status_code == 403
    assert not LexofficeConnection.objects.exists()


def test_allow_inactive_users_login_lets_an_inactive_user_connect(client, fake_lexware, settings):
    settings.SOCIAL_AUTH_ALLOW_INACTIVE_USERS_LOGIN = True  # social-core's own switch
    connect(client, fake_lexware)
    client.logout()
    LexofficeConnection.objects.all().delete()
    get_user_model().objects.update(is_active=False)
    assert connect(client, fake_lexware).status_code == 302
    assert LexofficeConnection.objects.get().user.is_active is False


def test_custom_pipeline_with_the_save_step(client, fake_lexware, settings):
    from social_core.pipeline import DEFAULT_AUTH_PIPELINE

    settings.SOCIAL_AUTH_PIPELINE = [
        *DEFAULT_AUTH_PIPELINE,
        "django_lexoffice.pipeline.save_connection",
    ]
    connect(client, fake_lexware)
    assert LexofficeConnection.objects.count() == 1
    assert "access_token" not in UserSocialAuth.objects.get().extra_data


def test_custom_pipeline_without_the_save_step_still_leaks_no_token(client, fake_lexware, settings):
    from social_core.pipeline import DEFAULT_AUTH_PIPELINE

    settings.SOCIAL_AUTH_PIPELINE = list(DEFAULT_AUTH_PIPELINE)
    response = connect(client, fake_lexware)
    assert response.status_code == 400  # "incomplete": no connection was made
    extra = UserSocialAuth.objects.get().extra_data
    assert "access_token" not in extra and "refresh_token" not in extra


def test_public_client_flow(client, fake_lexware, settings):
    settings.SOCIAL_AUTH_LEXOFFICE_SECRET = ""
    fake_lexware.register_client(
        "test-client-id", secret="", redirect_uris=["http://testserver/lexoffice/callback/"]
    )
    response = connect(client, fake_lexware)
    assert response.status_code == 302
    assert LexofficeConnection.objects.count() == 1


def test_sec15_sec19_disconnect_own_connection_only_post_only(
    client, fake_lexware, user, django_user_model
):
    client.force_login(user)
    connect(client, fake_lexware)
    connection = LexofficeConnection.objects.get()
    refresh_token = connection.refresh_token
    assert client.get(f"/lexoffice/connections/{connection.pk}/disconnect/").status_code == 405
    other = django_user_model.objects.create_user("other")
    client.force_login(other)
    assert client.post(f"/lexoffice/connections/{connection.pk}/disconnect/").status_code == 404
    client.force_login(user)
    response = client.post(f"/lexoffice/connections/{connection.pk}/disconnect/", follow=True)
    assert b"is disconnected" in response.content
    connection.refresh_from_db()
    assert connection.status == "revoked" and not connection.refresh_token
    assert not fake_lexware.is_refresh_token_valid(refresh_token)


def test_sec19_disconnect_requires_csrf(fake_lexware, user, make_connection):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    connection = make_connection()
    assert browser.post(f"/lexoffice/connections/{connection.pk}/disconnect/").status_code == 403
    assert LexofficeConnection.objects.get().status == "active"


def test_sec19_connections_page_requires_login_and_shows_only_own(
    client, user, make_connection, django_user_model
):
    assert client.get("/lexoffice/connections/").status_code == 302
    other = django_user_model.objects.create_user("other")
    make_connection(company_name="Meine Firma")
    make_connection(user=other, company_name="Fremde Firma")
    client.force_login(user)
    html = client.get("/lexoffice/connections/").content.decode()
    assert "Meine Firma" in html and "Fremde Firma" not in html


def test_relogin_without_a_refresh_token_keeps_the_stored_one(client):
    import responses

    profile = {
        "organizationId": "aa93e8a8-2aa3-470b-b914-caad8a255dd8",
        "companyName": "Testfirma GmbH",
        "connectionId": "c",
        "created": {"userId": "1aea5501", "userName": "Erika", "userEmail": "e@x.de"},
    }

    def login_with(token_response):
        state = query(client.post("/lexoffice/login/")["Location"])["state"]
        with responses.RequestsMock() as rsps:
            rsps.add(responses.POST, "https://app.lexware.de/oauth2/token", json=token_response)
            rsps.add(responses.GET, "https://api.lexware.io/v1/profile", json=profile)
            return client.get("/lexoffice/callback/", {"state": state, "code": "abc"})

    first = {"access_token": "a1-" + "x" * 30, "refresh_token": REFRESH_TOKEN, "expires_in": 60}
    assert login_with(first).status_code == 302
    client.logout()
    assert login_with({"access_token": "a2-" + "x" * 30, "expires_in": 14399}).status_code == 302
    stored = LexofficeConnection.objects.get()
    assert stored.access_token.startswith("a2-")
    assert stored.refresh_token == REFRESH_TOKEN
    assert "refresh_token" not in UserSocialAuth.objects.get().extra_data
