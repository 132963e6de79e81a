"""What a user meets on the app's pages: headers that keep forms working, messages, error
pages that say the right thing, the 405 page, removing a dead connection, the wording.

The same pages in a real browser: ``tests/test_every_form_browser.py``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import polib
import pytest
from django.test import Client
from django.utils import translation
from social_django.models import UserSocialAuth

from django_lexoffice import signals, views
from django_lexoffice.models import LexofficeConnection

pytestmark = pytest.mark.django_db

REPO_DIR = Path(__file__).resolve().parent.parent
TEMPLATE_DIRS = [
    REPO_DIR / "django_lexoffice" / "templates",
    REPO_DIR / "example_project" / "templates",
]
CATALOGUES = [
    REPO_DIR / "django_lexoffice" / "locale" / "de" / "LC_MESSAGES" / "django.po",
    REPO_DIR / "example_project" / "locale" / "de" / "LC_MESSAGES" / "django.po",
]


@pytest.fixture(autouse=True)
def english_afterwards():
    """A German request leaves German active in this thread; later tests expect English."""
    yield
    translation.deactivate()


def begin(client: Client) -> str:
    response = client.post("/lexoffice/login/")
    assert response.status_code == 302, response.content
    return response["Location"]


def callback(client: Client, callback_url: str):
    parts = urlsplit(callback_url)
    return client.get(parts.path, parse_qs(parts.query))


class _FormsAndLinks(HTMLParser):
    """Every URL and value a page's links and form fields hold."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in {"href", "action", "value", "src"}:
                self.values.append(value)


def forms_and_links(html: str) -> list[str]:
    parser = _FormsAndLinks()
    parser.feed(html)
    return parser.values


# -- item 1: the referrer policy that keeps forms working (SECURITY.md 10) -----------------


def test_sec10_no_page_of_the_app_or_the_demo_sets_no_referrer():
    templates = [path for folder in TEMPLATE_DIRS for path in folder.rglob("*.html")]
    assert templates
    for template in templates:
        assert "no-referrer" not in template.read_text(encoding="utf-8"), template


def test_sec10_callback_success_sends_strict_origin(client, fake_lexware):
    response = callback(client, fake_lexware.approve(begin(client)))
    assert response.status_code == 302
    assert response["Referrer-Policy"] == "strict-origin"


@pytest.mark.parametrize("method", ["post", "put", "delete"], ids=["POST", "PUT", "DELETE"])
def test_sec10_callback_wrong_method_still_sends_strict_origin(client, method):
    response = getattr(client, method)("/lexoffice/callback/?code=c&state=s")
    assert response.status_code == 405
    assert response["Referrer-Policy"] == "strict-origin"


def test_sec10_callback_server_error_page_sends_strict_origin(client, fake_lexware, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(views, "do_complete", broken)
    url = fake_lexware.approve(begin(client))
    response = callback(client, url)
    assert response.status_code == 500
    assert response["Referrer-Policy"] == "strict-origin"


# -- item 15: the app's pages cannot be framed, whatever the site's middleware -------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/lexoffice/login/"),
        ("get", "/lexoffice/callback/?code=c&state=s"),
        ("get", "/lexoffice/connections/"),
        ("get", "/lexoffice/connections/1/disconnect/"),
        ("get", "/lexoffice/connections/1/remove/"),
    ],
)
def test_app_pages_deny_framing_without_the_middleware(client, user, method, path, settings):
    assert "django.middleware.clickjacking.XFrameOptionsMiddleware" not in settings.MIDDLEWARE
    client.force_login(user)
    response = getattr(client, method)(path)
    assert response["X-Frame-Options"] == "DENY"


# -- item 3: a wrong method on disconnect or remove gets a page, not an empty 405 ----------


@pytest.mark.parametrize("name", ["disconnect", "remove"])
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_wrong_method_on_disconnect_shows_a_page_linking_to_connections(
    client, user, make_connection, name, method
):
    connection = make_connection()
    client.force_login(user)
    response = getattr(client, method)(f"/lexoffice/connections/{connection.pk}/{name}/")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    html = response.content.decode()
    assert 'href="/lexoffice/connections/"' in html
    assert "only works through its button" in html
    assert LexofficeConnection.objects.get().status == "active"


def test_wrong_method_page_is_german_for_german_browsers(client, user, make_connection):
    connection = make_connection()
    client.force_login(user)
    response = client.get(
        f"/lexoffice/connections/{connection.pk}/disconnect/", HTTP_ACCEPT_LANGUAGE="de"
    )
    assert "Zurück zu Ihren Verbindungen" in response.content.decode()


# -- item 4: a message after a successful connect -------------------------------------------


def test_successful_connect_says_which_company_is_connected(client, fake_lexware):
    company = fake_lexware.companies()[0]
    response = callback(
        client, fake_lexware.approve(begin(client), company=company["organization_id"])
    )
    page = client.get(response["Location"])
    assert f"{company['company_name']} is connected." in page.content.decode()


def test_successful_connect_message_in_german(fake_lexware):
    client = Client(HTTP_ACCEPT_LANGUAGE="de")
    company = fake_lexware.companies()[0]
    response = callback(
        client, fake_lexware.approve(begin(client), company=company["organization_id"])
    )
    page = client.get(response["Location"])
    assert f"{company['company_name']} ist verbunden." in page.content.decode()


# -- item 5: never a code or state in a form or link -----------------------------------------


def test_error_page_points_forms_that_come_back_here_to_the_login_page(client, fake_lexware):
    url = fake_lexware.deny(begin(client))
    response = callback(client, url)
    assert response.status_code == 400
    assert response.context["page_url"] == "/lexoffice/login/"


@pytest.mark.parametrize("kind", ["deny", "forged-state", "token-refused"])
def test_error_pages_hold_no_code_or_state_in_any_form_or_link(client, fake_lexware, kind):
    url = begin(client)
    if kind == "deny":
        callback_url = fake_lexware.deny(url)
    elif kind == "forged-state":
        callback_url = "/lexoffice/callback/?code=the-code-value&state=the-state-value"
    else:
        fake_lexware.inject("token", "invalid_grant")
        callback_url = fake_lexware.approve(url)
    params = parse_qs(urlsplit(callback_url).query)
    secrets = [value[0] for key, value in params.items() if key in {"code", "state"}]
    assert secrets
    response = callback(client, callback_url)
    assert response.status_code == 400
    for value in forms_and_links(response.content.decode()):
        assert "code=" not in value and "state=" not in value
        for secret in secrets:
            assert secret not in value


# -- item 6: error pages say the right thing -------------------------------------------------


def test_access_denied_page_has_no_forgotten_password_tip(client, fake_lexware):
    response = callback(client, fake_lexware.deny(begin(client)))
    html = response.content.decode()
    assert "You declined access" in html
    assert "Passwort vergessen?" not in html


def test_sign_in_failure_page_offers_the_forgotten_password_tip(client, fake_lexware):
    fake_lexware.inject("token", "invalid_grant")
    response = callback(client, fake_lexware.approve(begin(client)))
    html = response.content.decode()
    assert "did not confirm the sign-in" in html
    assert "Passwort vergessen?" in html
    assert 'href="https://app.lexware.de/"' in html


# -- item 7: removing a revoked or re-authorization-required connection ---------------------


@pytest.mark.parametrize("status", ["revoked", "reauthorization_required"])
def test_user_removes_own_dead_connection_and_keeps_the_login(
    client, user, make_connection, status
):
    UserSocialAuth.objects.create(user=user, provider="lexoffice", uid="lexoffice-user")
    connection = make_connection(status=status)
    client.force_login(user)
    response = client.post(f"/lexoffice/connections/{connection.pk}/remove/", follow=True)
    assert response.redirect_chain == [("/lexoffice/connections/", 302)]
    assert "Testfirma GmbH is removed from your connections." in response.content.decode()
    assert not LexofficeConnection.objects.exists()
    assert UserSocialAuth.objects.filter(user=user, provider="lexoffice").exists()


def shown(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_remove_keeps_a_connection_that_is_active_again_and_says_so(client, user, make_connection):
    connection = make_connection()  # reconnected in another tab since the page was loaded
    client.force_login(user)
    response = client.post(f"/lexoffice/connections/{connection.pk}/remove/", follow=True)
    assert response.redirect_chain == [("/lexoffice/connections/", 302)]
    assert shown(response) == ["Testfirma GmbH is connected again and stays in your list."]
    assert LexofficeConnection.objects.get().status == "active"


@pytest.mark.parametrize("whose", ["removed in another tab", "another user's"])
def test_remove_of_a_connection_not_in_the_list_changes_nothing_and_says_so(
    client, user, make_connection, django_user_model, whose
):
    other = django_user_model.objects.create_user("other")
    theirs = make_connection(user=other, status="revoked")
    mine = make_connection(status="revoked", organization_id="mine")
    pk = theirs.pk if whose == "another user's" else mine.pk
    client.force_login(user)
    if whose == "removed in another tab":
        client.post(f"/lexoffice/connections/{pk}/remove/")
    response = client.post(f"/lexoffice/connections/{pk}/remove/", follow=True)
    assert response.redirect_chain == [("/lexoffice/connections/", 302)]
    assert shown(response)[-1] == "That connection is no longer in your list."
    assert LexofficeConnection.objects.filter(pk=theirs.pk).exists()


def test_disconnecting_an_already_disconnected_connection_sends_nothing(
    client, user, make_connection, capture_signal
):
    connection = make_connection(status="revoked", access_token="", refresh_token="")
    revoked = capture_signal(signals.connection_revoked)
    client.force_login(user)
    response = client.post(f"/lexoffice/connections/{connection.pk}/disconnect/", follow=True)
    assert shown(response) == ["Testfirma GmbH is already disconnected."]
    assert revoked == []  # no second connection_revoked, no call to Lexware (none is mocked)


@pytest.mark.parametrize("action", ["disconnect", "remove"])
def test_a_button_clicked_after_the_session_expired_leads_back_to_the_connections_page(
    user, make_connection, action
):
    connection = make_connection(status="revoked")
    response = Client().post(f"/lexoffice/connections/{connection.pk}/{action}/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/lexoffice/connections/"
    assert LexofficeConnection.objects.filter(pk=connection.pk).exists()


def test_remove_requires_login_and_csrf(user, make_connection):
    connection = make_connection(status="revoked")
    response = Client().post(f"/lexoffice/connections/{connection.pk}/remove/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.post(f"/lexoffice/connections/{connection.pk}/remove/").status_code == 403
    assert LexofficeConnection.objects.filter(pk=connection.pk).exists()


def test_connections_page_offers_remove_only_for_dead_connections(client, user, make_connection):
    active = make_connection(organization_id="active-org")
    revoked = make_connection(organization_id="revoked-org", status="revoked")
    client.force_login(user)
    html = client.get("/lexoffice/connections/").content.decode()
    assert f'action="/lexoffice/connections/{revoked.pk}/remove/"' in html
    assert f'action="/lexoffice/connections/{active.pk}/remove/"' not in html


# -- item 9: words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("Herr Max Schmidt", "Max Schmidt"),
        ("Frau Erika Musterfrau", "Erika Musterfrau"),
        ("Erika Musterfrau", "Erika Musterfrau"),
        ("Herrmann Huber", "Herrmann Huber"),
        ("Frau", "Frau"),
        ("", ""),
    ],
)
def test_granted_by_name_drops_the_salutation(stored, shown):
    assert views.without_salutation(stored) == shown


def test_connections_page_in_german_reads_freigegeben_von_without_salutation(
    client, user, make_connection
):
    make_connection(lexoffice_user_name="Herr Max Schmidt")
    client.force_login(user)
    html = client.get("/lexoffice/connections/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "freigegeben von Max Schmidt" in html
    assert "Herr Max" not in html


@pytest.mark.parametrize("catalogue", CATALOGUES, ids=["app", "demo"])
def test_german_catalogue_says_unternehmen_and_lexoffice_in_lower_case(catalogue):
    for entry in polib.pofile(str(catalogue)):
        texts = [entry.msgid, entry.msgid_plural, entry.msgstr, *entry.msgstr_plural.values()]
        for text in filter(None, texts):
            assert not re.search(r"\bFirm(a|en)\b", text), text
            assert not re.search(r"Lexoffice|LexOffice|LEXOFFICE(?!_)", text), text


@pytest.mark.parametrize("path", ["/admin/", "/admin/django_lexoffice/lexofficeconnection/"])
def test_german_admin_writes_lexoffice_in_lower_case(admin_client, path):
    html = admin_client.get(path, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Verbindungen zu lexoffice" in html
    assert "Lexoffice" not in html
