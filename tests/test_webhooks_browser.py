"""The demo end to end in Chromium: connect, end the connection in the fake Lexware's
"Verbundene Apps", and "My connections" says it ended in lexoffice (issue 15)."""

from __future__ import annotations

import re

from tests.test_demo_browser import (  # noqa: F401  (fixtures)
    Demo,
    NewPage,
    browser,
    consent,
    demo,
    new_page,
    pytestmark,
    screenshot,
)


def test_browser_connection_ended_in_lexoffice_shows_on_connections_page(
    demo: Demo,  # noqa: F811  (the fixtures imported above)
    new_page: NewPage,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    page = new_page("en-US")
    page.goto(demo.url + "/")
    page.get_by_role("button", name="Connect with lexoffice").click()
    consent(page, demo, "Zulassen", "20-consent-webhooks", company="Anna Weber Grafikdesign")
    page.wait_for_url(demo.url + "/lexoffice/connections/")
    expect(page.locator(".lxo-connection")).to_contain_text("Authorization ends on")

    page.get_by_role("link", name="Lexware: Verbundene Apps").click()
    expect(page.get_by_role("heading", name="Verbundene Apps")).to_be_visible()
    app = page.locator("form.connected-app", has_text="Anna Weber Grafikdesign")
    expect(app).to_have_count(1)
    screenshot(page, "21-fake-verbundene-apps")
    app.get_by_role("button", name="Verbindung trennen").click()
    expect(page.locator("form.connected-app", has_text="Anna Weber Grafikdesign")).to_have_count(0)

    page.goto(demo.url + "/lexoffice/connections/")
    card = page.locator(".lxo-connection", has_text="Anna Weber Grafikdesign")
    expect(card).to_contain_text(re.compile("was ended in lexoffice"))
    expect(card.get_by_role("button", name="Connect again")).to_be_visible()
    screenshot(page, "22-connections-ended-in-lexoffice")
