"""The admin: every connection's health at a glance, never a token (SECURITY.md #12, #19)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses
from cryptography.fernet import Fernet
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import constants as levels
from django.core.cache import cache
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.html import escape
from django.utils.text import capfirst
from social_django.models import UserSocialAuth

from django_lexoffice.admin import expiry_in_words
from django_lexoffice.conf import settings as lexoffice_settings
from django_lexoffice.models import TOKEN_FIELDS, LexofficeConnection
from tests.conftest import ACCESS_TOKEN, REFRESH_TOKEN, assert_no_token, raw_token_columns
from tests.lexware_responses import NEW_ACCESS, NEW_REFRESH, token_response

pytestmark = pytest.mark.django_db

MakeConnection = Callable[..., LexofficeConnection]

CHANGELIST = "admin:django_lexoffice_lexofficeconnection_changelist"
LEXOFFICE_USER_ID = "1aea5501-3f3e-403d-8492-2dad03016289"  # as in make_connection


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_rate_limit_wait(settings: Any) -> None:
    """Actions refresh several connections; don't pace them at Lexware's 2/s in tests."""
    settings.LEXOFFICE_RATE_LIMIT = 1000
    cache.clear()


@pytest.fixture
def lexware() -> Iterable[responses.RequestsMock]:
    """Lexware's authorization server, faked at the HTTP boundary; anything unregistered fails."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(
        username="staff", email="staff@example.com", password="pw", is_staff=True
    )


@pytest.fixture
def staff_client(client: Client, staff: Any) -> Client:
    client.force_login(staff)
    return client


def grant(user: Any, *codenames: str) -> None:
    permissions = Permission.objects.filter(
        content_type__app_label="django_lexoffice", codename__in=codenames
    )
    assert permissions.count() == len(codenames)
    user.user_permissions.add(*permissions)


def change_url(obj: Any, view: str = "change") -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[obj.pk])


def token_secrets(*connections: LexofficeConnection) -> list[str]:
    """Every plaintext token the tests use, plus the rows' raw (encrypted) column values."""
    secrets = [ACCESS_TOKEN, REFRESH_TOKEN, NEW_ACCESS, NEW_REFRESH]
    for connection in connections:
        secrets.extend(value for value in raw_token_columns(connection.pk) or () if value)
    return secrets


def run_action(client: Client, action: str, *connections: LexofficeConnection) -> Any:
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [c.pk for c in connections]},
        follow=True,
    )


def shown_messages(response: Any) -> list[tuple[int, str]]:
    return [(message.level, str(message)) for message in response.context["messages"]]


def action_names(response: Any) -> set[str]:
    form = response.context["action_form"]  # None when no action is allowed
    return {name for name, _label in form.fields["action"].choices} if form else set()


def results(response: Any) -> list[LexofficeConnection]:
    return list(response.context["cl"].result_list)


# -- expiry in words ----------------------------------------------------------------------

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        (timedelta(hours=3, minutes=12, seconds=59), "in 3 hours, 12 minutes"),
        (timedelta(hours=3), "in 3 hours"),
        (timedelta(minutes=59, seconds=59), "in 59 minutes"),
        (timedelta(minutes=1), "in 1 minute"),
        (timedelta(seconds=30), "in 0 minutes"),
        (timedelta(days=2, hours=5, minutes=7), "in 2 days, 5 hours"),
        (timedelta(days=1, minutes=30), "in 1 day"),
        (timedelta(0), "expired 0 minutes ago"),
        (-timedelta(seconds=59), "expired 0 minutes ago"),
        (-timedelta(minutes=5, seconds=10), "expired 5 minutes ago"),
        (-timedelta(hours=1, minutes=1), "expired 1 hour, 1 minute ago"),
        (-timedelta(days=3, hours=2), "expired 3 days, 2 hours ago"),
    ],
)
def test_expiry_in_words(offset: timedelta, words: str) -> None:
    # Django's timeuntil/timesince (translated with Django's own catalogues).
    assert expiry_in_words(NOW + offset, now=NOW).replace("\xa0", " ") == words


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        (timedelta(days=2, hours=5), "in 2 Tagen, 5 Stunden"),
        (timedelta(days=1, minutes=30), "in 1 Tag"),
        (timedelta(days=400), "in 1 Jahr, 1 Monat"),
        (-timedelta(days=3, hours=2), "vor 3 Tagen, 2 Stunden abgelaufen"),
        (-timedelta(days=70), "vor 2 Monaten, 1 Woche abgelaufen"),
        (-timedelta(days=800), "vor 2 Jahren, 2 Monaten abgelaufen"),
    ],
)
def test_expiry_in_words_in_german_uses_the_dative(offset: timedelta, words: str) -> None:
    with translation.override("de"):
        assert expiry_in_words(NOW + offset, now=NOW).replace("\xa0", " ") == words


def test_expiry_in_words_defaults_to_now() -> None:
    soon = expiry_in_words(timezone.now() + timedelta(hours=1, seconds=30))
    assert soon.replace("\xa0", " ") == "in 1 hour"
    gone = expiry_in_words(timezone.now() - timedelta(minutes=2, seconds=5))
    assert gone.replace("\xa0", " ") == "expired 2 minutes ago"


# -- who may see what (SECURITY.md #19) -----------------------------------------------------


def test_sec19_anonymous_visitor_is_sent_to_the_admin_login(client: Client) -> None:
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_sec19_non_staff_user_is_sent_to_the_admin_login(
    client: Client, user: Any, make_connection: MakeConnection
) -> None:
    connection = make_connection()
    client.force_login(user)
    for url in (reverse(CHANGELIST), change_url(connection)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_sec19_staff_without_view_permission_is_refused(
    staff_client: Client, make_connection: MakeConnection
) -> None:
    connection = make_connection()
    assert staff_client.get(reverse(CHANGELIST)).status_code == 403
    assert staff_client.get(change_url(connection)).status_code == 403
    assert staff_client.get(change_url(connection, "history")).status_code == 403


def test_staff_with_view_permission_sees_connections_but_no_actions(
    staff_client: Client, staff: Any, make_connection: MakeConnection
) -> None:
    connection = make_connection()
    grant(staff, "view_lexofficeconnection")
    response = staff_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert results(response) == [connection]
    assert "refresh_tokens" not in action_names(response)
    assert "revoke_connections" not in action_names(response)
    assert "delete_selected" not in action_names(response)
    assert staff_client.get(change_url(connection)).status_code == 200


@pytest.mark.parametrize(
    ("codename", "action"),
    [
        ("refresh_lexofficeconnection", "refresh_tokens"),
        ("revoke_lexofficeconnection", "revoke_connections"),
        ("delete_lexofficeconnection", "delete_selected"),
    ],
)
def test_sec19_each_action_needs_its_own_permission(
    staff_client: Client, staff: Any, make_connection: MakeConnection, codename: str, action: str
) -> None:
    make_connection()
    grant(staff, "view_lexofficeconnection", codename)
    offered = action_names(staff_client.get(reverse(CHANGELIST)))
    assert offered & {"refresh_tokens", "revoke_connections", "delete_selected"} == {action}


def test_superuser_sees_every_users_connections_and_every_action(
    admin_client: Client, make_connection: MakeConnection, django_user_model: Any
) -> None:
    other = django_user_model.objects.create_user(username="max", email="max@example.com")
    mine = make_connection()
    theirs = make_connection(user=other, organization_id="other-org")
    response = admin_client.get(reverse(CHANGELIST))
    assert set(results(response)) == {mine, theirs}
    assert {"refresh_tokens", "revoke_connections", "delete_selected"} <= action_names(response)


def test_sec19_an_action_posted_without_its_permission_does_nothing(
    staff_client: Client,
    staff: Any,
    make_connection: MakeConnection,
    lexware: responses.RequestsMock,
) -> None:
    connection = make_connection()
    grant(staff, "view_lexofficeconnection")
    for action in ("refresh_tokens", "revoke_connections", "delete_selected"):
        run_action(staff_client, action, connection)
    assert len(lexware.calls) == 0
    connection.refresh_from_db()
    assert connection.status == LexofficeConnection.Status.ACTIVE
    assert connection.refresh_token == REFRESH_TOKEN
    assert connection.consecutive_failures == 0


def test_there_is_no_add_page(admin_client: Client) -> None:
    add_url = reverse("admin:django_lexoffice_lexofficeconnection_add")
    assert admin_client.get(add_url).status_code == 403
    assert add_url not in admin_client.get(reverse(CHANGELIST)).content.decode()


def test_detail_page_is_read_only_even_with_the_change_permission(
    staff_client: Client, staff: Any, make_connection: MakeConnection
) -> None:
    connection = make_connection()
    grant(staff, "change_lexofficeconnection")
    response = staff_client.get(change_url(connection))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="_save"' not in html
    assert list(response.context["adminform"].form.fields) == []
    assert staff_client.post(change_url(connection), {"company_name": "Evil"}).status_code == 403
    connection.refresh_from_db()
    assert connection.company_name == "Testfirma GmbH"


# -- the list -------------------------------------------------------------------------------


def test_changelist_shows_each_connections_health(
    admin_client: Client, make_connection: MakeConnection, user: Any
) -> None:
    last_refresh = timezone.now() - timedelta(minutes=30)
    connection = make_connection(
        expires_at=timezone.now() + timedelta(hours=3, minutes=12, seconds=30),
        last_refreshed_at=last_refresh,
        consecutive_failures=3,
    )
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert f'<a href="{change_url(user)}">erika</a>' in html
    assert "Testfirma GmbH" in html
    assert 'class="lexoffice-status lexoffice-status-active"' in html
    assert "in 3\xa0hours, 12\xa0minutes" in html
    assert '<td class="field-failures"><strong class="lexoffice-failures">3</strong></td>' in html
    # Narrow enough for 1280 px: the wide values are on the detail page only.
    assert "aa93e8a8-2aa3-470b-b914-caad8a255dd8" not in html
    assert "profile.read, contacts.read" not in html
    detail = admin_client.get(change_url(connection)).content.decode()
    assert "aa93e8a8-2aa3-470b-b914-caad8a255dd8" in detail
    assert "profile.read, contacts.read" in detail


def test_changelist_shows_status_as_coloured_badges(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    statuses = LexofficeConnection.Status
    for status in statuses:
        make_connection(organization_id=f"org-{status}", status=status)
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    for status in statuses:
        start = html.index(f"lexoffice-status-{status}")
        badge = html[start : html.index("</span>", start)]
        assert str(status.label) in badge
    # One colour per status, in the admin's stylesheet (the page links it).
    assert "django_lexoffice/admin.css" in html
    css = _admin_css()
    colours = {
        css.split(f".lexoffice-status-{status} {{ background: ")[1][:7] for status in statuses
    }
    assert len(colours) == len(statuses)


def test_changelist_shows_expired_tokens_as_expired(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    make_connection(expires_at=timezone.now() - timedelta(minutes=5, seconds=30))
    assert "expired 5\xa0minutes ago" in admin_client.get(reverse(CHANGELIST)).content.decode()


def test_changelist_filters_by_status(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    make_connection(organization_id="active-org")
    revoked = make_connection(organization_id="revoked-org", status="revoked")
    response = admin_client.get(reverse(CHANGELIST), {"status__exact": "revoked"})
    assert results(response) == [revoked]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("soon", "soon-org"), ("expired", "expired-org"), ("valid", "valid-org")],
)
def test_changelist_filters_by_expiry(
    admin_client: Client, make_connection: MakeConnection, choice: str, expected: str
) -> None:
    now = timezone.now()
    make_connection(organization_id="soon-org", expires_at=now + timedelta(minutes=2))
    make_connection(organization_id="expired-org", expires_at=now - timedelta(minutes=2))
    make_connection(organization_id="valid-org", expires_at=now + timedelta(hours=2))
    make_connection(organization_id="unknown-org", expires_at=None)
    response = admin_client.get(reverse(CHANGELIST), {"expiry": choice})
    assert [c.organization_id for c in results(response)] == [expected]


def test_expiry_filter_follows_the_refresh_margin(
    admin_client: Client, make_connection: MakeConnection, settings: Any
) -> None:
    settings.LEXOFFICE_REFRESH_MARGIN = 3600
    in_half_an_hour = make_connection(expires_at=timezone.now() + timedelta(minutes=30))
    assert results(admin_client.get(reverse(CHANGELIST), {"expiry": "soon"})) == [in_half_an_hour]
    assert results(admin_client.get(reverse(CHANGELIST), {"expiry": "valid"})) == []


def test_changelist_drills_down_by_creation_date(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    connection = make_connection()
    year = timezone.localtime(connection.created_at).year
    url = reverse(CHANGELIST)
    assert results(admin_client.get(url, {"created_at__year": year})) == [connection]
    assert results(admin_client.get(url, {"created_at__year": year - 1})) == []


@pytest.mark.parametrize(
    "query",
    [
        "erika",  # username
        "erika@example.com",  # user e-mail
        "Testfirma",  # company
        "aa93e8a8-2aa3",  # organization id
        "musterfrau@testfirma.de",  # the lexoffice user's e-mail
    ],
)
def test_search_finds_connections(
    admin_client: Client, make_connection: MakeConnection, django_user_model: Any, query: str
) -> None:
    connection = make_connection()
    other = django_user_model.objects.create_user(username="max", email="max@example.org")
    make_connection(
        user=other,
        organization_id="0000",
        company_name="Andere AG",
        lexoffice_user_email="max@andere.de",
    )
    assert results(admin_client.get(reverse(CHANGELIST), {"q": query})) == [connection]


@pytest.mark.parametrize(
    "query",
    [ACCESS_TOKEN, REFRESH_TOKEN, ACCESS_TOKEN[5:21], REFRESH_TOKEN[-16:], REFRESH_TOKEN[40:56]],
)
def test_sec12_search_by_token_finds_nothing(
    admin_client: Client, make_connection: MakeConnection, query: str
) -> None:
    make_connection()
    response = admin_client.get(reverse(CHANGELIST), {"q": query})
    assert response.status_code == 200
    assert results(response) == []


def test_changelist_query_count_does_not_grow_with_rows(
    admin_client: Client,
    make_connection: MakeConnection,
    django_user_model: Any,
    django_assert_num_queries: Any,
) -> None:
    url = reverse(CHANGELIST)
    make_connection()
    admin_client.get(url)  # warm up per-process caches (content types, permissions)
    with CaptureQueriesContext(db_connection) as one_row:
        assert len(results(admin_client.get(url))) == 1
    for number in range(49):
        other = django_user_model.objects.create_user(
            username=f"user{number}", email=f"user{number}@example.com"
        )
        make_connection(user=other, organization_id=f"org-{number}")
    with django_assert_num_queries(len(one_row)):
        response = admin_client.get(url)
    assert len(results(response)) == 50


# -- the detail page ------------------------------------------------------------------------


def test_detail_page_shows_every_field_but_the_tokens(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    connection = make_connection(
        last_error='refresh failed: HTTP 503: {"message": "Service Unavailable"}',
        last_error_at=timezone.now(),
        consecutive_failures=2,
        next_attempt_at=timezone.now() + timedelta(minutes=2),
    )
    response = admin_client.get(change_url(connection))
    html = response.content.decode()
    for field in LexofficeConnection._meta.concrete_fields:
        if field.name not in TOKEN_FIELDS and not field.primary_key:
            assert f">{capfirst(field.verbose_name)}:<" in html, field.name
    # the tokens: only whether they are set
    assert html.count('<div class="readonly">set</div>') == 2
    assert escape('refresh failed: HTTP 503: {"message": "Service Unavailable"}') in html
    # the lexoffice user who granted access
    assert "Frau Erika Musterfrau" in html
    assert "erika.musterfrau@testfirma.de" in html
    assert LEXOFFICE_USER_ID in html


def test_detail_page_says_when_tokens_are_not_set(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    connection = make_connection(
        access_token="", refresh_token="", expires_at=None, status="revoked"
    )
    html = admin_client.get(change_url(connection)).content.decode()
    assert html.count('<div class="readonly">not set</div>') == 2


def test_detail_page_links_the_user_and_the_social_auth_association(
    admin_client: Client, make_connection: MakeConnection, user: Any
) -> None:
    connection = make_connection()
    association = UserSocialAuth.objects.create(
        user=user, provider="lexoffice", uid=LEXOFFICE_USER_ID
    )
    html = admin_client.get(change_url(connection)).content.decode()
    assert f'<a href="{change_url(user)}">erika</a>' in html
    assert f'<a href="{change_url(association)}">lexoffice: {LEXOFFICE_USER_ID}</a>' in html


@pytest.fixture
def user_admin_unregistered() -> Iterable[None]:
    """A site whose user model has no admin page (common with custom user models)."""
    user_model = get_user_model()
    user_admin = admin.site.get_model_admin(user_model)
    admin.site.unregister(user_model)
    yield
    admin.site.register(user_model, type(user_admin))


@pytest.mark.usefixtures("user_admin_unregistered")
def test_user_without_admin_page_is_shown_unlinked(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    connection = make_connection()
    changelist = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert '<td class="field-user_link">erika</td>' in changelist
    detail = admin_client.get(change_url(connection)).content.decode()
    assert '<div class="readonly">erika</div>' in detail


@pytest.mark.parametrize("lexoffice_user_id", [LEXOFFICE_USER_ID, ""])
def test_detail_page_links_no_association_of_another_provider_or_user(
    admin_client: Client, make_connection: MakeConnection, user: Any, lexoffice_user_id: str
) -> None:
    connection = make_connection(lexoffice_user_id=lexoffice_user_id)
    other = UserSocialAuth.objects.create(user=user, provider="github", uid=LEXOFFICE_USER_ID)
    UserSocialAuth.objects.create(user=user, provider="lexoffice", uid="someone-else")
    response = admin_client.get(change_url(connection))
    html = response.content.decode()
    association_field = html.split("Social-auth association:")[1]
    assert association_field.split('<div class="readonly">')[1].startswith("-</div>")
    assert change_url(other) not in html
    assert "someone-else" not in html


# -- never a token (SECURITY.md #12) --------------------------------------------------------


def test_sec12_no_token_in_any_admin_page(
    admin_client: Client, make_connection: MakeConnection, lexware: responses.RequestsMock
) -> None:
    connection = make_connection()
    lexware.post(lexoffice_settings.TOKEN_URL, json=token_response())
    after_action = run_action(admin_client, "refresh_tokens", connection)
    assert shown_messages(after_action) == [(levels.SUCCESS, "1 connection refreshed.")]
    pages = {
        "page after the refresh action": after_action,
        "changelist": admin_client.get(reverse(CHANGELIST)),
        "search results": admin_client.get(reverse(CHANGELIST), {"q": "Testfirma"}),
        "detail page": admin_client.get(change_url(connection)),
        "history page": admin_client.get(change_url(connection, "history")),
        "delete confirmation": admin_client.get(change_url(connection, "delete")),
        "delete selected confirmation": run_action(admin_client, "delete_selected", connection),
    }
    secrets = token_secrets(connection)
    for page, response in pages.items():
        assert response.status_code == 200, page
        assert_no_token(response.content.decode(), secrets, page)
    assert "1 connection refreshed." in pages["history page"].content.decode()


# -- actions ----------------------------------------------------------------------------------


def test_refresh_action_stores_the_new_tokens(
    admin_client: Client, make_connection: MakeConnection, lexware: responses.RequestsMock
) -> None:
    connection = make_connection(expires_at=timezone.now() + timedelta(hours=4))
    lexware.post(lexoffice_settings.TOKEN_URL, json=token_response())
    response = run_action(admin_client, "refresh_tokens", connection)
    # forced: the token was valid for hours, Lexware was asked anyway
    assert parse_qs(lexware.calls[0].request.body) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [REFRESH_TOKEN],
    }
    connection.refresh_from_db()
    assert connection.access_token == NEW_ACCESS
    assert connection.refresh_token == NEW_REFRESH
    assert shown_messages(response) == [(levels.SUCCESS, "1 connection refreshed.")]
    assert_no_token(response.content.decode(), token_secrets(connection))
    entry = LogEntry.objects.get(object_id=str(connection.pk))
    assert entry.get_change_message() == "1 connection refreshed."


def test_refresh_action_marks_a_revoked_grant_for_reauthorization(
    admin_client: Client, make_connection: MakeConnection, lexware: responses.RequestsMock
) -> None:
    connection = make_connection()
    lexware.post(lexoffice_settings.TOKEN_URL, status=400, json={"error": "invalid_grant"})
    response = run_action(admin_client, "refresh_tokens", connection)
    connection.refresh_from_db()
    assert connection.status == LexofficeConnection.Status.REAUTHORIZATION_REQUIRED
    assert shown_messages(response) == [
        (levels.WARNING, "1 connection needs re-authorization: its user must connect again.")
    ]
    assert_no_token(response.content.decode(), token_secrets(connection))


@pytest.mark.parametrize(
    "lexware_answer",
    [
        {"status": 503, "body": "Service Unavailable"},
        {"body": requests.ConnectionError("connection reset")},
    ],
    ids=["503", "connection-error"],
)
def test_refresh_action_keeps_the_tokens_when_lexware_is_unavailable(
    admin_client: Client,
    make_connection: MakeConnection,
    lexware: responses.RequestsMock,
    lexware_answer: dict[str, Any],
) -> None:
    connection = make_connection()
    lexware.post(lexoffice_settings.TOKEN_URL, **lexware_answer)
    response = run_action(admin_client, "refresh_tokens", connection)
    connection.refresh_from_db()
    assert connection.status == LexofficeConnection.Status.ACTIVE
    assert connection.access_token == ACCESS_TOKEN
    assert connection.refresh_token == REFRESH_TOKEN
    assert connection.consecutive_failures == 1
    assert shown_messages(response) == [
        (
            levels.ERROR,
            "1 refresh failed: Lexware unavailable. The tokens were kept and the refresh "
            "will be retried.",
        )
    ]
    detail = admin_client.get(change_url(connection)).content.decode()
    assert escape(connection.last_error) in detail
    assert_no_token(response.content.decode() + detail, token_secrets(connection))


def test_refresh_action_reports_a_refused_client(
    admin_client: Client, make_connection: MakeConnection, lexware: responses.RequestsMock
) -> None:
    connection = make_connection()
    lexware.post(lexoffice_settings.TOKEN_URL, status=401, json={"error": "invalid_client"})
    response = run_action(admin_client, "refresh_tokens", connection)
    [(level, text)] = shown_messages(response)
    assert level == levels.ERROR
    assert "Lexware refused the client" in text
    assert "SOCIAL_AUTH_LEXOFFICE_SECRET" in text
    connection.refresh_from_db()
    assert connection.status == LexofficeConnection.Status.ACTIVE
    assert connection.refresh_token == REFRESH_TOKEN


def test_refresh_action_sums_up_each_outcome_once(
    admin_client: Client,
    make_connection: MakeConnection,
    lexware: responses.RequestsMock,
) -> None:
    answers = {
        "rt-ok-1": (200, token_response("at-1", "rt-new-1")),
        "rt-ok-2": (200, token_response("at-2", "rt-new-2")),
        "rt-gone": (400, {"error": "invalid_grant"}),
        "rt-down": (503, {"message": "Service Unavailable"}),
    }

    def token_endpoint(request: Any) -> tuple[int, dict[str, str], str]:
        status, body = answers[parse_qs(request.body)["refresh_token"][0]]
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    lexware.add_callback(responses.POST, lexoffice_settings.TOKEN_URL, callback=token_endpoint)
    connections = [make_connection(organization_id=token, refresh_token=token) for token in answers]
    connections.append(make_connection(organization_id="revoked", status="revoked"))
    response = run_action(admin_client, "refresh_tokens", *connections)
    assert shown_messages(response) == [
        (levels.SUCCESS, "2 connections refreshed."),
        (levels.WARNING, "1 connection needs re-authorization: its user must connect again."),
        (levels.WARNING, "1 connection skipped: it is revoked or waits for re-authorization."),
        (
            levels.ERROR,
            "1 refresh failed: Lexware unavailable. The tokens were kept and the refresh "
            "will be retried.",
        ),
    ]
    assert len(lexware.calls) == 4
    statuses = dict(LexofficeConnection.objects.values_list("organization_id", "status"))
    assert statuses == {
        "rt-ok-1": "active",
        "rt-ok-2": "active",
        "rt-gone": "reauthorization_required",
        "rt-down": "active",
        "revoked": "revoked",
    }


def test_refresh_action_reports_connections_the_rate_limit_held_back(
    admin_client: Client,
    make_connection: MakeConnection,
    lexware: responses.RequestsMock,
    settings: Any,
) -> None:
    settings.LEXOFFICE_RATE_LIMIT = 0.01  # one call per 100 s: the second must wait
    settings.LEXOFFICE_RATE_LIMIT_MAX_WAIT = 1
    lexware.post(lexoffice_settings.TOKEN_URL, json=token_response())
    first = make_connection(organization_id="first")
    second = make_connection(organization_id="second")
    response = run_action(admin_client, "refresh_tokens", first, second)
    assert len(lexware.calls) == 1
    assert shown_messages(response) == [
        (levels.SUCCESS, "1 connection refreshed."),
        (
            levels.ERROR,
            "1 refresh not attempted: the shared rate limit stayed busy. Try again later.",
        ),
    ]


def test_revoke_action_revokes_at_lexware_and_clears_the_tokens(
    admin_client: Client, make_connection: MakeConnection, lexware: responses.RequestsMock
) -> None:
    connection = make_connection()
    lexware.post(lexoffice_settings.REVOKE_URL, status=200)
    response = run_action(admin_client, "revoke_connections", connection)
    assert parse_qs(lexware.calls[0].request.body) == {"token": [REFRESH_TOKEN]}
    connection.refresh_from_db()
    assert connection.status == LexofficeConnection.Status.REVOKED
    assert connection.access_token == connection.refresh_token == ""
    assert shown_messages(response) == [
        (levels.SUCCESS, "1 connection revoked at Lexware and disconnected.")
    ]
    assert_no_token(response.content.decode(), token_secrets(connection))
    entry = LogEntry.objects.get(object_id=str(connection.pk))
    assert entry.get_change_message() == "1 connection revoked at Lexware and disconnected."


def test_revoke_action_disconnects_even_when_lexware_is_unavailable(
    admin_client: Client, make_connection: MakeConnection, lexware: responses.RequestsMock
) -> None:
    connection = make_connection()
    lexware.post(lexoffice_settings.REVOKE_URL, status=503)
    response = run_action(admin_client, "revoke_connections", connection)
    connection.refresh_from_db()
    assert connection.status == LexofficeConnection.Status.REVOKED
    assert connection.access_token == connection.refresh_token == ""
    [(level, text)] = shown_messages(response)
    assert level == levels.WARNING
    assert text.startswith("1 connection disconnected, but Lexware did not confirm")


def test_revoke_action_leaves_revoked_connections_alone(
    admin_client: Client, make_connection: MakeConnection, lexware: responses.RequestsMock
) -> None:
    connection = make_connection(access_token="", refresh_token="", status="revoked")
    response = run_action(admin_client, "revoke_connections", connection)
    assert len(lexware.calls) == 0
    assert shown_messages(response) == [(levels.INFO, "1 connection was already revoked.")]
    assert not LogEntry.objects.exists()


# -- deleting revokes first -------------------------------------------------------------------


def test_deleting_a_connection_revokes_it_at_lexware_first(
    admin_client: Client, make_connection: MakeConnection, lexware: responses.RequestsMock
) -> None:
    connection = make_connection()
    lexware.post(lexoffice_settings.REVOKE_URL, status=200)
    confirmation = admin_client.get(change_url(connection, "delete")).content.decode()
    assert "revoked at Lexware first" in confirmation
    response = admin_client.post(change_url(connection, "delete"), {"post": "yes"})
    assert response.status_code == 302
    assert parse_qs(lexware.calls[0].request.body) == {"token": [REFRESH_TOKEN]}
    assert not LexofficeConnection.objects.exists()


def test_deleting_selected_connections_revokes_each(
    admin_client: Client, make_connection: MakeConnection, lexware: responses.RequestsMock
) -> None:
    connections = [
        make_connection(organization_id="one", refresh_token="rt-one"),
        make_connection(organization_id="two", refresh_token="rt-two"),
    ]
    lexware.post(lexoffice_settings.REVOKE_URL, status=200)
    changelist = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "Revoke at Lexware and delete selected lexoffice connections" in changelist
    confirmation = run_action(admin_client, "delete_selected", *connections).content.decode()
    assert "revoked at Lexware first" in confirmation
    admin_client.post(
        reverse(CHANGELIST),
        {
            "action": "delete_selected",
            "_selected_action": [c.pk for c in connections],
            "post": "yes",
        },
    )
    revoked = sorted(parse_qs(call.request.body)["token"][0] for call in lexware.calls)
    assert revoked == ["rt-one", "rt-two"]
    assert not LexofficeConnection.objects.exists()


# -- social_django's UserSocialAuth admin -----------------------------------------------------


@pytest.fixture
def legacy_association(user: Any) -> UserSocialAuth:
    """A row written before the pipeline scrubbed tokens from ``extra_data``."""
    return UserSocialAuth.objects.create(
        user=user,
        provider="lexoffice",
        uid=LEXOFFICE_USER_ID,
        extra_data={
            "auth_time": 1740830400,
            "access_token": ACCESS_TOKEN,
            "refresh_token": REFRESH_TOKEN,
            "nested": {"id_token": NEW_ACCESS, "Token": NEW_REFRESH},
        },
    )


def test_sec12_social_auth_admin_never_shows_a_token(
    admin_client: Client, legacy_association: UserSocialAuth
) -> None:
    changelist = admin_client.get(reverse("admin:social_django_usersocialauth_changelist"))
    detail = admin_client.get(change_url(legacy_association))
    assert changelist.status_code == detail.status_code == 200
    secrets = [ACCESS_TOKEN, REFRESH_TOKEN, NEW_ACCESS, NEW_REFRESH]
    assert_no_token(changelist.content.decode(), secrets, "association list")
    assert_no_token(detail.content.decode(), secrets, "association detail page")
    html = detail.content.decode()
    assert "auth_time" in html
    assert "1740830400" in html
    assert html.count("[redacted]") == 4


def test_saving_an_association_keeps_its_extra_data(
    admin_client: Client, legacy_association: UserSocialAuth, user: Any
) -> None:
    form = admin_client.get(change_url(legacy_association)).context["adminform"].form
    assert "extra_data" not in form.fields
    before = legacy_association.extra_data
    response = admin_client.post(
        change_url(legacy_association),
        {"user": user.pk, "provider": "lexoffice", "uid": LEXOFFICE_USER_ID},
    )
    assert response.status_code == 302
    legacy_association.refresh_from_db()
    assert legacy_association.extra_data == before


def _admin_css() -> str:
    from pathlib import Path

    import django_lexoffice

    path = Path(django_lexoffice.__file__).parent / "static/django_lexoffice/admin.css"
    return path.read_text()


# -- a key that cannot decrypt the tokens, and ATOMIC_REQUESTS --------------------------------


@pytest.fixture
def atomic_requests() -> Iterable[None]:
    """Run the test's requests as a site with ``ATOMIC_REQUESTS = True`` does."""
    settings_dict = db_connection.settings_dict
    before = settings_dict["ATOMIC_REQUESTS"]
    settings_dict["ATOMIC_REQUESTS"] = True
    yield
    settings_dict["ATOMIC_REQUESTS"] = before


def swap_in_a_wrong_key(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEY = Fernet.generate_key().decode()


def test_revoke_action_leaves_a_row_it_cannot_decrypt_unchanged_and_says_why(
    admin_client: Client, make_connection: MakeConnection, lexware: Any, settings: Any
) -> None:
    unreadable = make_connection(organization_id="unreadable")
    columns = raw_token_columns(unreadable.pk)
    swap_in_a_wrong_key(settings)
    readable = make_connection(organization_id="readable")
    lexware.post(lexoffice_settings.REVOKE_URL, status=200)
    response = run_action(admin_client, "revoke_connections", unreadable, readable)
    assert response.status_code == 200
    assert shown_messages(response) == [
        (levels.SUCCESS, "1 connection revoked at Lexware and disconnected."),
        (
            levels.ERROR,
            "1 connection not revoked: FIELD_ENCRYPTION_KEY cannot decrypt its tokens. "
            "Nothing was changed.",
        ),
    ]
    assert LexofficeConnection.objects.without_tokens().get(pk=readable.pk).status == "revoked"
    assert LexofficeConnection.objects.without_tokens().get(pk=unreadable.pk).status == "active"
    assert raw_token_columns(unreadable.pk) == columns  # a fixed key can still revoke it


@pytest.mark.parametrize("action", ["revoke_connections", "refresh_tokens"])
def test_actions_work_under_atomic_requests(
    admin_client: Client,
    make_connection: MakeConnection,
    lexware: Any,
    atomic_requests: None,
    action: str,
) -> None:
    connection = make_connection()
    lexware.post(lexoffice_settings.REVOKE_URL, status=200)
    lexware.post(lexoffice_settings.TOKEN_URL, json=token_response())
    response = run_action(admin_client, action, connection)
    assert [level for level, _ in shown_messages(response)] == [levels.SUCCESS]


def test_deleting_a_connection_the_key_cannot_decrypt_deletes_it_and_logs_why(
    admin_client: Client,
    make_connection: MakeConnection,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection = make_connection()
    swap_in_a_wrong_key(settings)
    response = admin_client.post(change_url(connection, "delete"), {"post": "yes"})
    assert response.status_code == 302
    assert not LexofficeConnection.objects.filter(pk=connection.pk).exists()
    assert "FIELD_ENCRYPTION_KEY cannot decrypt its tokens to revoke them" in caplog.text


def test_deleting_a_user_whose_connection_the_key_cannot_decrypt_erases_both(
    admin_client: Client, make_connection: MakeConnection, settings: Any, user: Any
) -> None:
    connection = make_connection()
    swap_in_a_wrong_key(settings)
    confirmation = admin_client.get(change_url(user, "delete"))
    assert confirmation.status_code == 200
    assert "Testfirma GmbH" in confirmation.content.decode()  # listed among what goes
    assert admin_client.post(change_url(user, "delete"), {"post": "yes"}).status_code == 302
    assert not LexofficeConnection.objects.filter(pk=connection.pk).exists()
    assert not get_user_model().objects.filter(pk=user.pk).exists()
