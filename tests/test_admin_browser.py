"""The connections changelist in a real headless Chromium, with a screenshot for review.

The screenshot lands in ``test-artifacts/admin-changelist.png`` (git-ignored).
Needs Debian's Chromium: ``apt-get install chromium``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_lexoffice.models import LexofficeConnection
from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

ADMIN_PASSWORD = "browser-test-password"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no `chromium` on PATH; install Debian's: apt-get install chromium"
    ),
]


@pytest.fixture
def connections(transactional_db: Any, django_user_model: Any) -> list[LexofficeConnection]:
    """An administrator and a handful of connections in every state."""
    django_user_model.objects.create_superuser("admin", "admin@example.com", ADMIN_PASSWORD)
    now = timezone.now()
    rows = [
        ("erika", "Testfirma GmbH", "active", timedelta(hours=3, minutes=12, seconds=30), 0),
        ("max", "Muster & Söhne KG", "active", timedelta(minutes=3, seconds=30), 0),
        ("erika", "Testfirma Holding AG", "active", -timedelta(minutes=5, seconds=30), 3),
        ("lena", "Bäckerei Sonnenschein", "reauthorization_required", -timedelta(hours=2), 0),
        ("tom", "Kanzlei Weber", "revoked", None, 0),
    ]
    users: dict[str, Any] = {}
    created = []
    for number, (username, company, status, expires_in, failures) in enumerate(rows):
        if username not in users:
            users[username] = django_user_model.objects.create_user(
                username=username, email=f"{username}@example.com"
            )
        revoked = status == "revoked"
        created.append(
            LexofficeConnection.objects.create(
                user=users[username],
                organization_id=f"aa93e8a8-2aa3-470b-b914-caad8a2550{number:02d}",
                company_name=company,
                lexoffice_user_id=f"1aea5501-3f3e-403d-8492-2dad030162{number:02d}",
                scopes=["profile.read", "contacts.read", "vouchers.read"][: 1 + number % 3],
                access_token="" if revoked else f"browser-access-token-{number}-" + "x" * 40,
                refresh_token="" if revoked else f"browser-refresh-token-{number}-" + "y" * 90,
                expires_at=None if expires_in is None else now + expires_in,
                status=status,
                last_refreshed_at=None if revoked else now - timedelta(minutes=20 + number),
                consecutive_failures=failures,
            )
        )
    return created


def test_changelist_in_a_real_browser(
    live_server: Any, connections: list[LexofficeConnection]
) -> None:
    from playwright.sync_api import sync_playwright

    tokens = [token for c in connections for token in (c.access_token, c.refresh_token) if token]
    changelist = "/admin/django_lexoffice/lexofficeconnection/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 640})
            # Start with the admin's navigation sidebar collapsed: room for the columns.
            page.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
            page.goto(f"{live_server.url}/admin/login/?next={changelist}")
            page.fill("#id_username", "admin")
            page.fill("#id_password", ADMIN_PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"**{changelist}")
            rows = page.locator("#result_list tbody tr")
            assert rows.count() == len(connections)
            assert page.locator(".lexoffice-status-reauthorization_required").count() == 1
            assert "in 3\xa0hours, 12\xa0minutes" in page.inner_text("#result_list")
            html = page.content()
            for token in tokens:
                for start in range(len(token) - 15):
                    assert token[start : start + 16] not in html
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "admin-changelist.png"), full_page=True)
        finally:
            browser.close()
