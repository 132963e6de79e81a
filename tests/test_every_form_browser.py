"""Every POST form of every user-facing page, submitted in a real Chromium, in English and German.

For each page below, the test finds the POST forms in the rendered page, looks each one up
in ``FORMS`` (where it should lead) and submits it, every submit button separately (DE/EN
has two; the admin's action form counts once per action). It asserts: no 403, no 5xx, no
CSRF failure page, and the landing page from the table. A form that is not in the table
fails the suite until someone says where it should lead. Each page's links are followed
too (each must answer below 400), and no form or link may hold a code or a state.

Two sites, one browser:

* the app's own templates on pytest-django's ``live_server`` (``tests.settings``): the
  login page, the connections page with an active, a revoked and a re-authorization-required
  connection, every kind of callback error page, the 405 page, the lexoffice admin's
  changelist actions and delete confirmations;
* the example project (``example_project``, its own ``runserver`` process, its own look with
  a DE/EN switch and "Log out"): its pages, the app's pages in its layout, the fake
  Lexware's consent page.

The app-site error pages come from a stand-in for social-core's ``do_complete`` raising what
each failure raises; the demo reaches its error pages the real way (a declined consent, a
forged state) and checks the callback's ``Referrer-Policy`` on the browser's own responses.

Runs in tox's ``browser`` environment (part of ``tox -m ci``); the other environments
deselect the ``browser`` marker, so CI runs it once. Needs Debian's Chromium
(``apt-get install chromium``); Playwright never downloads a browser.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DEMO_ADMIN, Demo, running_demo

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (apt-get install -y chromium); "
        "these tests never download a browser.",
    ),
]

LANGUAGES = {"en": "en-US", "de": "de-DE"}
#: What Django's CSRF failure page says, in both languages.
CSRF_FAILURE = re.compile(r"CSRF verification failed|CSRF-Verifizierung fehlgeschlagen|CSRF")
#: Stand-ins for the code and state on callback URLs; never in a form or link.
CODE = "code-from-lexware-0123456789"
STATE = "state-from-lexware-0123456789"
ADMIN_PASSWORD = "browser-admin-password"
CHANGELIST = "/admin/django_lexoffice/lexofficeconnection/"


# -- where each form leads -------------------------------------------------------------------

Fill = Callable[["Page", "Locator", "Site"], None]


@dataclass(frozen=True)
class Expect:
    """Where a form should land, and what submitting it needs or does."""

    #: Regex for the landing URL's path and query; ``{here}`` is the page's own clean path.
    path: str
    #: A CSS selector the landing page must contain.
    marker: str | None = None
    #: Status of the landing page (an error page after "Ablehnen" answers 400).
    status: int = 200
    #: Fills what the form needs before its button is clicked.
    fill: Fill | None = None
    #: Submitting changes data: the site's data is restored afterwards.
    changes_data: bool = False
    #: Submitting ends the session: the next submission logs in again.
    logs_out: bool = False


def fill_login(page: Page, form: Locator, site: Site) -> None:
    form.locator("input[name=username]").fill(site.admin_username)
    form.locator("input[name=password]").fill(site.admin_password)


def select_every_row(page: Page, form: Locator, site: Site) -> None:
    for checkbox in form.locator("input.action-select").all():
        checkbox.check()


def choose_company(page: Page, form: Locator, site: Site) -> None:
    if not form.locator("input[name=company]:checked").count():
        form.locator("input[name=company]").first.check()


MESSAGE = "li.success, li.warning"
ADMIN_MESSAGE = "ul.messagelist li"
CONSENT = r"/fake-lexware/oauth2/authorize\?.*code_challenge_method=S256.*"

#: Every POST form a user can meet, keyed by ``form_key()``, and where it must lead.
FORMS: dict[str, Expect] = {
    # The app's pages.
    "POST /lexoffice/login/": Expect(CONSENT, "text=Mit Lexware Office verbinden"),
    "POST /lexoffice/connections/<pk>/disconnect/": Expect(
        "/lexoffice/connections/", MESSAGE, changes_data=True
    ),
    "POST /lexoffice/connections/<pk>/remove/": Expect(
        "/lexoffice/connections/", MESSAGE, changes_data=True
    ),
    # The demo's layout: the DE/EN switch and "Log out".
    "POST /i18n/setlang/ language=de": Expect("{here}", "html[lang=de]"),
    "POST /i18n/setlang/ language=en": Expect("{here}", "html[lang=en]"),
    "POST /accounts/logout/": Expect("/", "a[href='/accounts/login/']", logs_out=True),
    "POST /accounts/login/": Expect("/", "form[action='/accounts/logout/']", fill=fill_login),
    # The fake Lexware's consent page.
    "POST /fake-lexware/oauth2/authorize decision=allow": Expect(
        "/lexoffice/connections/", MESSAGE, fill=choose_company, changes_data=True
    ),
    "POST /fake-lexware/oauth2/authorize decision=deny": Expect(
        r"/lexoffice/callback/\?.*", "[data-reason=access_denied]", status=400
    ),
    # The lexoffice admin.
    f"POST {CHANGELIST} index=0 action=refresh_tokens": Expect(
        CHANGELIST, ADMIN_MESSAGE, fill=select_every_row, changes_data=True
    ),
    f"POST {CHANGELIST} index=0 action=revoke_connections": Expect(
        CHANGELIST, ADMIN_MESSAGE, fill=select_every_row, changes_data=True
    ),
    f"POST {CHANGELIST} index=0 action=sync_subscriptions": Expect(
        CHANGELIST, ADMIN_MESSAGE, fill=select_every_row, changes_data=True
    ),
    f"POST {CHANGELIST} index=0 action=delete_selected": Expect(
        CHANGELIST, "input[name=post][value=yes]", fill=select_every_row
    ),
    f"POST {CHANGELIST} action=delete_selected": Expect(  # "Yes, I'm sure"
        CHANGELIST, ADMIN_MESSAGE, changes_data=True
    ),
    # Django sends a user without the change permission (nobody has it here: the admin
    # is read-only) to the admin's index after a delete.
    f"POST {CHANGELIST}<pk>/delete/": Expect("/admin/", ADMIN_MESSAGE, changes_data=True),
    "POST /admin/logout/": Expect("/admin/logout/", "#content", logs_out=True),
}


# -- the sites -----------------------------------------------------------------------------------


@dataclass
class Site:
    """A running site the browser visits, with its data and its logged-in session."""

    url: str
    admin_username: str
    admin_password: str
    #: Restores the site's data after a submission changed it.
    restore: Callable[[], None]
    #: Logs in over HTTP; returns the session cookies.
    login: Callable[[], list[dict[str, Any]]]
    cookies: list[dict[str, Any]] | None = None

    def session_cookies(self) -> list[dict[str, Any]]:
        if self.cookies is None:
            self.cookies = self.login()
        return self.cookies


@dataclass(frozen=True)
class PageCase:
    """A page to check: how to open it, and whether the visitor is logged in."""

    name: str
    open: Callable[[Page, Site], None]
    logged_in: bool = False
    #: The clean path the DE/EN switch must come back to (default: the page's path).
    here: str | None = None
    #: The page's language whatever the browser asks for (the fake Lexware speaks German).
    fixed_language: str | None = None
    #: Follow the page's links (Django's own admin pages are left to Django).
    check_links: bool = True


#: Pages count as loaded when their HTML is: nothing here waits for images.
LOADED = "domcontentloaded"


def goto(path: str) -> Callable[[Page, Site], None]:
    def open_page(page: Page, site: Site) -> None:
        page.goto(site.url + path, wait_until=LOADED)

    return open_page


def start_flow(page: Page, site: Site) -> None:
    """From the app's login page to the fake Lexware's consent page."""
    page.goto(site.url + "/lexoffice/login/", wait_until=LOADED)
    with page.expect_navigation(wait_until=LOADED):
        page.locator("form[action='/lexoffice/login/'] button").click()
    page.wait_for_url(re.compile(CONSENT))


def decline(page: Page, site: Site) -> None:
    start_flow(page, site)
    with page.expect_navigation(wait_until=LOADED) as navigation:
        page.get_by_role("button", name="Ablehnen").click()
    page.wait_for_url(re.compile(r".*/lexoffice/callback/\?"))
    callback = navigation.value
    assert callback is not None and callback.status == 400
    assert callback.headers["referrer-policy"] == "strict-origin"


def delete_confirmation(page: Page, site: Site) -> None:
    page.goto(site.url + CHANGELIST, wait_until=LOADED)
    form = page.locator("#changelist-form")
    select_every_row(page, form, site)
    form.locator("select[name=action]").select_option("delete_selected")
    with page.expect_navigation(wait_until=LOADED):
        form.locator("button[name=index]").click()


def first_connection_delete_page(page: Page, site: Site) -> None:
    page.goto(site.url + CHANGELIST, wait_until=LOADED)
    page.locator("#result_list .field-company_name a").first.click()
    page.wait_for_url(re.compile(r".*/change/$"), wait_until=LOADED)
    page.goto(page.url.replace("/change/", "/delete/"), wait_until=LOADED)


def connection_url(name: str, status: str) -> Callable[[Page, Site], None]:
    """The ``name`` URL (disconnect, remove) of the connection with ``status``, by GET."""

    def open_page(page: Page, site: Site) -> None:
        page.goto(site.url + "/lexoffice/connections/", wait_until=LOADED)
        card = page.locator(f".lxo-connection:has(.lxo-status-{status})").first
        action = card.locator(f"form[action$='/{name}/']").get_attribute("action")
        assert action, f"no {name} form on the {status} connection"
        page.goto(site.url + action, wait_until=LOADED)

    return open_page


# -- what every page must satisfy ----------------------------------------------------------------

# form.action would be the admin's <select name="action">: read the attribute.
FIND_FORMS = """() => [...document.forms].map((form, index) => ({
    index,
    method: (form.getAttribute('method') || 'get').toLowerCase(),
    action: new URL(form.getAttribute('action') || '', document.baseURI).href,
    actionField: form.querySelector('[name=action]')?.tagName === 'INPUT'
        ? form.querySelector('[name=action]').value : null,
    actionOptions: form.querySelector('select[name=action]')
        ? [...form.querySelector('select[name=action]').options].map(o => o.value).filter(v => v)
        : null,
    buttons: [...form.elements]
        .filter(el => (el.tagName === 'BUTTON' || el.tagName === 'INPUT')
                      && (el.type === 'submit' || el.type === 'image'))
        .map(el => ({name: el.name, value: el.value})),
}))"""

FIND_URLS = """() => [
    ...[...document.querySelectorAll('a[href], link[rel~=icon][href]')].map(el => el.href),
    ...[...document.querySelectorAll('form')].map(form => form.getAttribute('action') || ''),
    ...[...document.querySelectorAll('input, button')].map(el => el.value || ''),
]"""


@dataclass(frozen=True)
class Submission:
    """One way to submit one form: which button, which admin action."""

    key: str
    form_index: int
    button_index: int
    action: str | None


def form_key(site: Site, form: dict[str, Any], button: dict[str, str], action: str | None) -> str:
    path = urlsplit(form["action"]).path
    path = re.sub(r"/\d+/", "/<pk>/", path)
    parts = [form["method"].upper(), path]
    if button["name"]:
        parts.append(f"{button['name']}={button['value']}")
    if action:
        parts.append(f"action={action}")
    return " ".join(parts)


def submissions(page: Page, site: Site) -> list[Submission]:
    """Every POST form of the page, once per submit button (and per admin action)."""
    found = []
    for form in page.evaluate(FIND_FORMS):
        if form["method"] != "post":
            continue
        assert form["buttons"], f"a POST form without a submit button: {form['action']}"
        actions = form["actionOptions"] or [form["actionField"]]
        for button_index, button in enumerate(form["buttons"]):
            for action in actions:
                key = form_key(site, form, button, action)
                found.append(Submission(key, form["index"], button_index, action))
    return found


def assert_no_code_or_state(page: Page) -> None:
    if urlsplit(page.url).path.startswith("/fake-lexware/"):
        return  # Lexware's own pages carry the state of the flow, as Lexware's do
    for value in page.evaluate(FIND_URLS):
        assert CODE not in value and STATE not in value, value
        query = urlsplit(value).query
        assert not re.search(r"(^|&)(code|state)=", query), value


#: Links already followed, per site and login state: pages share most of them.
_CHECKED_LINKS: set[tuple[str, bool]] = set()


def assert_links_work(context: BrowserContext, page: Page, site: Site, case: PageCase) -> None:
    """Every same-site link (and the icon) answers below 400."""
    links = {
        href.split("#")[0]
        for href in page.evaluate(
            "() => [...document.querySelectorAll('a[href], link[rel~=icon][href]')]"
            ".map(el => el.href)"
        )
    }
    for link in sorted(links):
        if not link.startswith(site.url) or (link, case.logged_in) in _CHECKED_LINKS:
            continue
        _CHECKED_LINKS.add((link, case.logged_in))
        response = context.request.get(link, max_redirects=5)
        assert response.status < 400, f"{case.name}: link {link} answers {response.status}"


def assert_no_error_page(page: Page, statuses: list[tuple[str, int]], what: str) -> None:
    for url, status in statuses:
        assert status != 403 and status < 500, f"{what}: {url} answered {status}"
    text = page.locator("body").inner_text()
    assert not CSRF_FAILURE.search(text), f"{what}: landed on a CSRF failure page:\n{text[:500]}"


# -- the runner ----------------------------------------------------------------------------------


def new_context(browser: Browser, locale: str) -> BrowserContext:
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    return context


def fresh_visitor(context: BrowserContext, site: Site, case: PageCase) -> None:
    """Forget the last submission's cookies (language, session); log in again if needed."""
    context.clear_cookies()
    if case.logged_in:
        context.add_cookies(site.session_cookies())


def check_every_form(browser: Browser, site: Site, case: PageCase, language: str) -> None:
    """Open the page, check its links, then submit each of its POST forms from a fresh load."""
    locale = LANGUAGES[language]
    context = new_context(browser, locale)
    try:
        page = context.new_page()
        statuses: list[tuple[str, int]] = []
        page.on(
            "response",
            lambda response: (
                statuses.append((response.url, response.status))
                if response.request.resource_type == "document"
                else None
            ),
        )
        fresh_visitor(context, site, case)
        case.open(page, site)
        assert page.locator("html").get_attribute("lang") == (case.fixed_language or language)
        assert_no_code_or_state(page)
        if case.check_links:
            assert_links_work(context, page, site, case)
        here = case.here or urlsplit(page.url).path
        todo = submissions(page, site)
        unknown = sorted({submission.key for submission in todo} - FORMS.keys())
        assert not unknown, (
            f"{case.name}: forms missing from FORMS (say where each should lead): {unknown}"
        )
        for submission in todo:
            fresh_visitor(context, site, case)
            case.open(page, site)
            statuses.clear()
            what = f"{case.name} [{locale}] {submission.key}"
            submit(page, site, what, submission, here, statuses)
            expect = FORMS[submission.key]
            if expect.changes_data:
                site.restore()
            if expect.logs_out:
                site.cookies = None
    finally:
        context.close()


def submit(
    page: Page,
    site: Site,
    what: str,
    submission: Submission,
    here: str,
    statuses: list[tuple[str, int]],
) -> None:
    """Fill the form as a user would, click the button, check where it lands.

    ``statuses`` collects the (URL, status) of every page the browser loads from now on.
    """
    expect = FORMS[submission.key]
    form = page.locator("form").nth(submission.form_index)
    if expect.fill:
        expect.fill(page, form, site)
    if submission.action and form.locator("select[name=action]").count():
        form.locator("select[name=action]").select_option(submission.action)
    # A user opens the "Disconnect…" disclosure before its button.
    form.evaluate("form => { const d = form.closest('details'); if (d) d.open = true; }")
    button = form.locator("button, input[type=submit], input[type=image]").nth(
        submission.button_index
    )
    with page.expect_navigation(wait_until=LOADED):
        button.click()
    assert_no_error_page(page, statuses[:-1], what)
    landing = urlsplit(page.url)
    landed = landing.path + (f"?{landing.query}" if landing.query else "")
    pattern = expect.path.replace("{here}", re.escape(here))
    assert re.fullmatch(pattern, landed), f"{what}: landed on {landed}, expected {pattern}"
    assert statuses and statuses[-1][1] == expect.status, f"{what}: {statuses}"
    assert_no_error_page(page, [], what)
    if expect.marker:
        assert page.locator(expect.marker).count(), f"{what}: no {expect.marker} on {landed}"
    assert_no_code_or_state(page)


# -- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def orm_beside_playwright() -> Iterator[None]:
    """Playwright's sync API keeps an event loop in this thread, which makes Django refuse
    every query ("SynchronousOnlyOperation"); the queries here are plain synchronous ones."""
    import os

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Debian Chromium for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# -- the app's own templates on the live server ------------------------------------------------


@pytest.fixture
def app_site(live_server: Any, settings: Any, transactional_db: Any) -> Iterator[Site]:
    """The test site with the fake Lexware on the same live server, an administrator, and a
    user with an active, a revoked and a re-authorization-required connection."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from django_lexoffice.testing import FakeLexware

    base = f"{live_server.url}/fake-lexware"
    settings.ROOT_URLCONF = "tests.browser_urls"
    settings.LEXOFFICE_AUTH_BASE_URL = base
    settings.LEXOFFICE_API_BASE_URL = base
    fake = FakeLexware()
    fake.reset()
    fake.register_client(
        settings.SOCIAL_AUTH_LEXOFFICE_KEY,
        secret=settings.SOCIAL_AUTH_LEXOFFICE_SECRET,
        redirect_uris=[f"{live_server.url}/lexoffice/callback/"],
    )
    user_model = get_user_model()
    admin = user_model.objects.create_superuser("admin", "admin@example.com", ADMIN_PASSWORD)

    def restore() -> None:
        from django_lexoffice.models import LexofficeConnection

        LexofficeConnection.objects.all().delete()
        make_connections(fake, admin)

    def login() -> list[dict[str, Any]]:
        client = Client()
        client.force_login(admin)
        cookie = client.cookies["sessionid"]
        return [{"name": "sessionid", "value": cookie.value, "url": live_server.url}]

    restore()
    try:
        yield Site(live_server.url, "admin", ADMIN_PASSWORD, restore, login)
    finally:
        fake.reset()


def make_connections(fake: Any, user: Any) -> None:
    """An active connection with tokens the fake knows, a revoked and a re-authorization one."""
    from django.conf import settings
    from django.utils import timezone

    from django_lexoffice.models import LexofficeConnection

    companies = fake.companies()
    rows = [
        ("active", companies[0]),
        ("revoked", companies[1]),
        ("reauthorization_required", companies[2]),
    ]
    for status, company in rows:
        tokens = fake.issue_tokens(
            settings.SOCIAL_AUTH_LEXOFFICE_KEY, organization_id=company["organization_id"]
        )
        revoked = status == "revoked"
        LexofficeConnection.objects.create(
            user=user,
            organization_id=company["organization_id"],
            company_name=company["company_name"],
            lexoffice_user_id=company["user_id"],
            lexoffice_user_name=company["user_name"],
            scopes=["profile.read"],
            access_token="" if revoked else tokens["access_token"],
            refresh_token="" if revoked else tokens["refresh_token"],
            expires_at=None if revoked else timezone.now() + timedelta(hours=4),
            status=status,
        )


APP_PAGES = [
    PageCase("login page, anonymous", goto("/lexoffice/login/")),
    PageCase("login page, logged in", goto("/lexoffice/login/"), logged_in=True),
    PageCase("connections page", goto("/lexoffice/connections/"), logged_in=True),
    PageCase(
        "405 page of disconnect",
        connection_url("disconnect", "active"),
        logged_in=True,
        here="/lexoffice/connections/",
    ),
    PageCase(
        "405 page of remove",
        connection_url("remove", "revoked"),
        logged_in=True,
        here="/lexoffice/connections/",
    ),
    PageCase("admin changelist", goto(CHANGELIST), logged_in=True, check_links=False),
    PageCase(
        "admin delete confirmation (action)",
        delete_confirmation,
        logged_in=True,
        check_links=False,
    ),
    PageCase(
        "admin delete confirmation (one)",
        first_connection_delete_page,
        logged_in=True,
        check_links=False,
    ),
]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("case", APP_PAGES, ids=lambda case: case.name)
def test_every_form_on_the_apps_pages(
    browser: Browser, app_site: Site, case: PageCase, language: str
) -> None:
    check_every_form(browser, app_site, case, language)


def _callback_failure(reason: str) -> Callable[..., Any]:
    """A stand-in for social-core's ``do_complete`` that ends the callback with ``reason``."""
    from django.http import HttpResponseRedirect
    from social_core import exceptions

    from django_lexoffice.exceptions import LexofficeConfigurationError, RateLimitUnavailable

    raised: dict[str, BaseException] = {
        "access_denied": exceptions.AuthCanceled(None),
        "state": exceptions.AuthSessionError(None),
        "missing_code": exceptions.AuthInputError(None, parameter="code"),
        "code_rejected": exceptions.AuthCredentialError(None),
        "already_connected": exceptions.AuthAssociationError(None),
        "not_allowed": exceptions.AuthPolicyError(None),
        "lexware_error": exceptions.AuthResponseError(None),
        "lexware_unreachable": requests.ConnectionError("Lexware is down"),
        "configuration": LexofficeConfigurationError("SOCIAL_AUTH_LEXOFFICE_KEY is wrong"),
        "busy": RateLimitUnavailable("the rate limit's cache is down"),
        "server_error": RuntimeError("a bug"),
    }

    def do_complete(*args: Any, **kwargs: Any) -> Any:
        if reason == "incomplete":
            return HttpResponseRedirect("/")  # the pipeline stored no connection
        raise raised[reason]

    return do_complete


def callback_reasons() -> list[str]:
    from django_lexoffice.views import CALLBACK_FAILURES

    return list(CALLBACK_FAILURES)


def callback_error_page(reason: str, language: str) -> Callable[[Page, Site], None]:
    """Opens the callback's URL, as Lexware redirects there, and checks the error page."""
    from django_lexoffice.views import CALLBACK_FAILURES

    query = f"code={CODE}&state={STATE}"
    if reason == "bad_request":  # more parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS
        query = "&".join(f"p{number}=1" for number in range(1001))

    def open_page(page: Page, site: Site) -> None:
        response = page.goto(site.url + f"/lexoffice/callback/?{query}", wait_until=LOADED)
        assert response is not None
        assert response.status == CALLBACK_FAILURES[reason]
        assert response.headers["referrer-policy"] == "strict-origin"
        assert page.locator(f"[data-reason={reason}]").count() == 1

    return open_page


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_callback_error_page(
    browser: Browser, app_site: Site, monkeypatch: Any, language: str
) -> None:
    """Each failure reason's page (one test per language: they share one set-up)."""
    from django_lexoffice import views

    # The stand-in state is not one the site issued: let the stand-in do_complete decide.
    monkeypatch.setattr(views, "_spend_state", lambda request, backend: None)
    for reason in callback_reasons():
        monkeypatch.setattr(views, "do_complete", _callback_failure(reason))
        case = PageCase(
            f"callback error page {reason}",
            callback_error_page(reason, language),
            here="/lexoffice/login/",
        )
        check_every_form(browser, app_site, case, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_admin_changelist_fits_1280_pixels(browser: Browser, app_site: Site, language: str) -> None:
    """No horizontal scrolling at 1280 px with the admin's sidebar open (screenshot kept)."""
    context = browser.new_context(
        locale=LANGUAGES[language], viewport={"width": 1280, "height": 800}
    )
    try:
        context.add_cookies(app_site.session_cookies())
        page = context.new_page()
        page.goto(app_site.url + CHANGELIST)
        assert page.locator("#nav-sidebar").is_visible()
        assert page.locator("#result_list tbody tr").count() == 3
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
            " document.querySelector('.results').scrollWidth,"
            " document.querySelector('.results').clientWidth]"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(
            path=str(ARTIFACTS / f"admin-changelist-1280-{language}.png"), full_page=True
        )
        page_width, viewport, table_width, table_box = widths
        assert page_width <= viewport, f"the page scrolls sideways: {widths}"
        assert table_width <= table_box, f"the table scrolls sideways: {widths}"
    finally:
        context.close()


# -- the example project -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_site(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser
) -> Iterator[tuple[Demo, Site]]:
    """The demo, its admin connected to three companies: active, revoked, re-authorization."""
    with running_demo(tmp_path_factory.mktemp("forms-demo")) as demo:

        def login() -> list[dict[str, Any]]:
            with requests.Session() as session:
                page = session.get(demo.url + "/accounts/login/", timeout=10)
                token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
                assert token is not None
                response = session.post(
                    demo.url + "/accounts/login/",
                    data={
                        "csrfmiddlewaretoken": token.group(1),
                        "username": DEMO_ADMIN,
                        "password": demo.admin_password,
                    },
                    headers={"Referer": demo.url + "/accounts/login/"},
                    timeout=10,
                    allow_redirects=False,
                )
                assert response.status_code == 302, response.text[:500]
                return [
                    {"name": name, "value": value, "url": demo.url}
                    for name, value in session.cookies.items()
                ]

        site = Site(demo.url, DEMO_ADMIN, demo.admin_password, lambda: None, login)
        connect_three_companies(browser, demo, site)
        snapshot = demo_connections(demo)

        def restore() -> None:
            with sqlite3.connect(demo.database) as db:
                db.execute("DELETE FROM django_lexoffice_lexofficeconnection")
                columns, rows = snapshot
                marks = ", ".join("?" for _ in columns)
                db.executemany(
                    f"INSERT INTO django_lexoffice_lexofficeconnection ({', '.join(columns)}) "
                    f"VALUES ({marks})",
                    rows,
                )

        site.restore = restore
        yield demo, site


def connect_three_companies(browser: Browser, demo: Demo, site: Site) -> None:
    context = browser.new_context(locale="en-US")
    context.set_default_timeout(15_000)
    try:
        context.add_cookies(site.session_cookies())
        page = context.new_page()
        for company in (
            "Musterfirma Bäckerei Schmidt GmbH",
            "Anna Weber Grafikdesign",
            "Testfirma GmbH",
        ):
            start_flow(page, site)
            page.get_by_role("radio", name=re.compile(re.escape(company))).check()
            with page.expect_navigation() as navigation:
                page.get_by_role("button", name="Zulassen").click()
            page.wait_for_url(demo.url + "/lexoffice/connections/")
            landed = navigation.value
            assert landed is not None and landed.request.redirected_from is not None
            callback = landed.request.redirected_from.response()
            assert callback is not None and "/lexoffice/callback/?" in callback.url
            assert callback.headers["referrer-policy"] == "strict-origin"
            assert page.locator("li.success", has_text=f"{company} is connected.").count()
        card = page.locator(".lxo-connection", has_text="Anna Weber Grafikdesign")
        card.locator("summary").click()
        with page.expect_navigation():
            card.locator("form[action$='/disconnect/'] button").click()
    finally:
        context.close()
    with sqlite3.connect(demo.database) as db:
        db.execute(
            "UPDATE django_lexoffice_lexofficeconnection SET status = ? WHERE company_name = ?",
            ("reauthorization_required", "Testfirma GmbH"),
        )


def demo_connections(demo: Demo) -> tuple[list[str], list[tuple[Any, ...]]]:
    with sqlite3.connect(demo.database) as db:
        cursor = db.execute("SELECT * FROM django_lexoffice_lexofficeconnection")
        columns = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    statuses = sorted(row[columns.index("status")] for row in rows)
    assert statuses == ["active", "reauthorization_required", "revoked"], statuses
    return columns, rows


DEMO_PAGES = [
    PageCase("demo home, anonymous", goto("/")),
    PageCase("demo home, logged in", goto("/"), logged_in=True),
    PageCase("demo log-in page", goto("/accounts/login/")),
    PageCase("demo: lexoffice login page, anonymous", goto("/lexoffice/login/")),
    PageCase("demo: lexoffice login page, logged in", goto("/lexoffice/login/"), logged_in=True),
    PageCase("demo: connections page", goto("/lexoffice/connections/"), logged_in=True),
    PageCase(
        "demo: 405 page of disconnect",
        connection_url("disconnect", "active"),
        logged_in=True,
        here="/lexoffice/connections/",
    ),
    PageCase(
        "demo: callback error page, invalid state",
        goto(f"/lexoffice/callback/?code={CODE}&state={STATE}"),
        here="/lexoffice/login/",
    ),
    PageCase(
        "demo: callback error page, declined, logged in",
        decline,
        logged_in=True,
        here="/lexoffice/login/",
    ),
    PageCase("demo: fake Lexware consent page", start_flow, fixed_language="de"),
    PageCase("demo: fake Lexware front page", goto("/fake-lexware/")),
    # The fake's "Verbundene Apps" form ends a grant in the fake's own state (which the
    # restore between submissions cannot bring back): test_webhooks_browser walks it.
]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("case", DEMO_PAGES, ids=lambda case: case.name)
def test_every_form_on_the_demos_pages(
    browser: Browser, demo_site: tuple[Demo, Site], case: PageCase, language: str
) -> None:
    check_every_form(browser, demo_site[1], case, language)


# -- a form whose CSRF token went stale --------------------------------------------------------

EXPIRED = {"en": "This form has expired", "de": "Dieses Formular ist abgelaufen"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_form_whose_token_went_stale_answers_the_apps_page_and_changes_nothing(
    browser: Browser, app_site: Site, language: str
) -> None:
    """A login in another tab rotates the CSRF token: the open page's forms then fail the
    check. The user gets the app's page with a way back, not Django's bare 403."""
    from django_lexoffice.models import LexofficeConnection

    context = new_context(browser, LANGUAGES[language])
    try:
        context.add_cookies(app_site.session_cookies())
        page = context.new_page()
        for path, button, back in [
            ("/lexoffice/connections/", "details form button", "/lexoffice/connections/"),
            ("/lexoffice/login/", "form button", "/lexoffice/login/"),
        ]:
            page.goto(app_site.url + path)
            rotated = {"name": "csrftoken", "value": secrets.token_hex(16), "url": app_site.url}
            context.add_cookies([rotated])  # what the other tab's login did
            if button.startswith("details"):
                page.locator("details summary").first.click()
            with page.expect_navigation() as landed:
                page.locator(button).first.click()
            response = landed.value
            assert response is not None and response.status == 403
            assert page.locator("h1").inner_text() == EXPIRED[language]
            assert page.locator("[data-reason=csrf_failure] a").get_attribute("href") == back
            assert not CSRF_FAILURE.search(page.locator("body").inner_text())
        active = LexofficeConnection.objects.filter(status="active").count()
        assert active == 1  # the disconnect did not happen
    finally:
        context.close()
