"""The example project in a real headless Chromium, against the built-in fake Lexware.

The demo runs as its own ``runserver`` subprocess (fresh SQLite database and data directory),
exactly as ``example_project/demo.py`` serves it; the browser clicks through the connect flow,
the decline path and the Django admin. Screenshots go to ``test-artifacts/``.

Needs Debian's Chromium (``apt-get install chromium``); Playwright never downloads a browser here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DEMO_ADMIN, Demo, running_demo

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ADMIN = DEMO_ADMIN

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (apt-get install -y chromium chromium-driver); "
        "these tests never download a browser.",
    ),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The example project, migrated, with a superuser, served on a free port."""
    with running_demo(tmp_path_factory.mktemp("demo")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright's sync API."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


NewPage = Callable[..., "Page"]


@pytest.fixture
def new_page(browser: Browser) -> Iterator[NewPage]:
    """``new_page(locale, width=1280)``: a page in a fresh browser context (own cookies)."""
    contexts = []

    def make(locale: str, width: int = 1280) -> Page:
        context = browser.new_context(locale=locale, viewport={"width": width, "height": 800})
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def screenshot(page: Page, name: str) -> None:
    """Save a full-page screenshot under ``test-artifacts/``."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def consent(page: Page, demo: Demo, button: str, name: str, company: str | None = None) -> None:
    """At the fake Lexware's consent page: pick ``company`` and click ``button``."""
    from playwright.sync_api import expect

    page.wait_for_url(re.compile(re.escape(demo.url) + r"/fake-lexware/oauth2/authorize\?"))
    expect(page.get_by_role("heading", name="Mit Lexware Office verbinden")).to_be_visible()
    if company is not None:
        page.get_by_role("radio", name=re.compile(re.escape(company))).check()
    screenshot(page, name)
    page.get_by_role("button", name=button).click()


def test_browser_connect_in_german_lands_on_connections_page(demo: Demo, new_page: NewPage) -> None:
    from playwright.sync_api import expect

    page = new_page("de-DE")
    page.goto(demo.url + "/")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    screenshot(page, "01-home-de")
    page.get_by_role("button", name="Mit lexoffice verbinden").click()

    consent(page, demo, "Zulassen", "02-consent", company="Musterfirma Bäckerei Schmidt GmbH")

    page.wait_for_url(demo.url + "/lexoffice/connections/")
    connection = page.locator(".lxo-connection")
    expect(connection).to_have_count(1)
    expect(connection).to_contain_text("Musterfirma Bäckerei Schmidt GmbH")
    expect(page.get_by_text("max.schmidt", exact=True)).to_be_visible()  # signed in as
    screenshot(page, "03-connections-de")

    page.goto(demo.url + "/")
    expect(page.locator("table.list")).to_contain_text("Musterfirma Bäckerei Schmidt GmbH")
    screenshot(page, "04-home-connected-de")


def test_browser_decline_shows_friendly_message(demo: Demo, new_page: NewPage) -> None:
    from playwright.sync_api import expect

    page = new_page("en-US")
    page.goto(demo.url + "/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("button", name="Connect with lexoffice").click()

    consent(page, demo, "Ablehnen", "05-consent-decline")

    page.wait_for_url(re.compile(re.escape(demo.url) + r"/lexoffice/callback/\?"))
    expect(page.locator("[data-reason]")).to_have_attribute("data-reason", "access_denied")
    declined = "You declined access in lexoffice, so nothing was connected."
    expect(page.get_by_text(declined)).to_be_visible()
    expect(page.get_by_role("link", name="Start again")).to_be_visible()
    screenshot(page, "06-declined-en")
    page.goto(demo.url + "/lexoffice/connections/")  # still anonymous: nothing was connected
    page.wait_for_url(re.compile(re.escape(demo.url) + r"/accounts/login/\?next="))


def test_browser_admin_sees_connection_of_local_user(demo: Demo, new_page: NewPage) -> None:
    from playwright.sync_api import expect

    page = new_page("en-US", width=1600)  # room for every changelist column
    page.goto(demo.url + "/accounts/login/")
    page.get_by_label("Username").fill(ADMIN)
    page.get_by_label("Password").fill(demo.admin_password)
    screenshot(page, "07-login")
    page.get_by_role("button", name="Log in", exact=True).click()
    page.wait_for_url(demo.url + "/")
    expect(page.get_by_text("The company will be connected to your account")).to_be_visible()
    page.get_by_role("button", name="Connect with lexoffice").click()

    consent(page, demo, "Zulassen", "08-consent-admin", company="Anna Weber Grafikdesign")

    page.wait_for_url(demo.url + "/lexoffice/connections/")
    expect(page.locator(".lxo-connection")).to_contain_text("Anna Weber Grafikdesign")
    screenshot(page, "09-connections-admin")

    page.goto(demo.url + "/admin/django_lexoffice/lexofficeconnection/")
    row = page.locator("#result_list tbody tr", has_text="Anna Weber Grafikdesign")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(ADMIN)
    screenshot(page, "10-admin-changelist")
    row.get_by_role("link", name="Anna Weber Grafikdesign").click()
    expect(page.locator("body")).to_contain_text("e2a9c6d1-7b4f-4c8e-a3d5-6f1b0e9c2a47")  # org id
    expect(page.locator("body")).not_to_contain_text(re.compile(r"[A-Za-z0-9_\-]{60,}"))
    screenshot(page, "11-admin-detail")
