"""With a ``FIELD_ENCRYPTION_KEY`` that cannot read the stored tokens, pages that need no token
work, and the ones that do answer a clear page naming the setting (issue 13, item 13)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.urls import reverse

from django_lexoffice.models import LexofficeConnection

from .conftest import ACCESS_TOKEN, REFRESH_TOKEN
from .test_flow import connect

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def wrong_key(settings):
    """Swap in a key that cannot decrypt what was stored before."""

    def swap() -> None:
        settings.FIELD_ENCRYPTION_KEY = Fernet.generate_key().decode()

    return swap


def test_sec11_connections_page_works_with_a_wrong_key(client, user, make_connection, wrong_key):
    make_connection()
    wrong_key()
    client.force_login(user)
    response = client.get("/lexoffice/connections/")
    assert response.status_code == 200
    assert b"Testfirma GmbH" in response.content


def test_sec11_disconnect_with_a_wrong_key_is_a_clear_page_and_changes_nothing(
    client, user, make_connection, wrong_key, settings
):
    connection = make_connection()
    right_key = settings.FIELD_ENCRYPTION_KEY
    wrong_key()
    client.force_login(user)
    response = client.post(reverse("lexoffice:disconnect", args=[connection.pk]))
    assert response.status_code == 503
    assert b"FIELD_ENCRYPTION_KEY" in response.content
    assert b'href="/lexoffice/connections/"' in response.content
    settings.FIELD_ENCRYPTION_KEY = right_key
    connection = LexofficeConnection.objects.get()
    assert connection.status == "active"
    assert (connection.access_token, connection.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)


def test_sec11_admin_list_and_detail_work_with_a_wrong_key(
    admin_client, make_connection, wrong_key
):
    connection = make_connection(access_token="")
    wrong_key()
    url = f"/admin/django_lexoffice/lexofficeconnection/{connection.pk}/change/"
    assert admin_client.get("/admin/django_lexoffice/lexofficeconnection/").status_code == 200
    page = admin_client.get(url)
    assert page.status_code == 200
    fields = {
        name: re.search(
            rf'field-{name}.*?<div class="readonly">(.*?)</div>', page.content.decode(), re.S
        ).group(1)
        for name in ("access_token_state", "refresh_token_state")
    }
    assert "not set" in fields["access_token_state"]
    assert "not set" not in fields["refresh_token_state"]


def test_sec11_reconnecting_after_the_key_was_lost_stores_the_new_tokens(
    client, user, fake_lexware, wrong_key, caplog, django_capture_on_commit_callbacks
):
    client.force_login(user)
    company = fake_lexware.companies()[0]["organization_id"]
    assert connect(client, fake_lexware, company=company).status_code == 302
    wrong_key()  # the old key is lost: the stored tokens cannot be read any more
    with django_capture_on_commit_callbacks(execute=True):
        response = connect(client, fake_lexware, company=company)
    assert response.status_code == 302
    assert response["Location"] == "/lexoffice/connections/"
    connection = LexofficeConnection.objects.get()
    assert connection.status == "active"
    assert fake_lexware.is_access_token_valid(connection.access_token)
    assert fake_lexware.is_refresh_token_valid(connection.refresh_token)
    # The replaced grant cannot be revoked without its refresh token: said, without secrets.
    assert fake_lexware.count("revoke") == 0
    assert "cannot decrypt the stored refresh token" in caplog.text
    assert connection.refresh_token not in caplog.text


def test_token_markers_never_decrypt_after_without_tokens(make_connection, wrong_key):
    make_connection()
    make_connection(organization_id="other", access_token="", refresh_token="")
    wrong_key()
    markers = {
        c.organization_id: (c.has_access_token, c.has_refresh_token)
        for c in LexofficeConnection.objects.without_tokens()
    }
    assert markers == {
        "aa93e8a8-2aa3-470b-b914-caad8a255dd8": (True, True),
        "other": (False, False),
    }


def test_token_markers_of_short_values_and_of_loaded_rows(make_connection):
    connection = make_connection(access_token="short")
    loaded = LexofficeConnection.objects.get(pk=connection.pk)
    assert loaded.has_access_token and loaded.has_refresh_token
    deferred = LexofficeConnection.objects.without_tokens().get(pk=connection.pk)
    assert deferred.has_access_token  # a short column: decrypted to tell
    plain = LexofficeConnection.objects.defer("refresh_token").get(pk=connection.pk)
    assert plain.has_refresh_token  # no length annotation: loaded to tell


def test_short_ciphertext_length_separates_short_values_from_long_ones():
    from django_lexoffice.fields import SHORT_CIPHERTEXT_LENGTH, encrypt

    assert len(encrypt("")) == len(encrypt("x" * 15)) == SHORT_CIPHERTEXT_LENGTH
    assert len(encrypt("x" * 16)) > SHORT_CIPHERTEXT_LENGTH


def test_a_short_value_that_the_key_cannot_read_counts_as_stored(make_connection, wrong_key):
    connection = make_connection(access_token="short")
    wrong_key()
    assert LexofficeConnection.objects.without_tokens().get(pk=connection.pk).has_access_token


def test_sec11_demo_home_page_works_with_a_wrong_key(tmp_path):
    script = (
        "import django; django.setup()\n"
        "from cryptography.fernet import Fernet\n"
        "from django.core.management import call_command\n"
        "from django.test import Client, override_settings\n"
        "call_command('migrate', verbosity=0)\n"
        "from django.contrib.auth.models import User\n"
        "from django_lexoffice.models import LexofficeConnection\n"
        "u = User.objects.create(username='k')\n"
        "LexofficeConnection.objects.create(user=u, organization_id='o', "
        "company_name='Firma K', access_token='a' * 40, refresh_token='r' * 40)\n"
        "key = Fernet.generate_key().decode()\n"
        "with override_settings(FIELD_ENCRYPTION_KEY=key, ALLOWED_HOSTS=['*']):\n"
        "    c = Client()\n"
        "    c.force_login(u)\n"
        "    r = c.get('/')\n"
        "    print(r.status_code, b'Firma K' in r.content)\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_site.settings",
        "LEXOFFICE_DEMO_DATA_DIR": str(tmp_path),
        "LEXOFFICE_DEMO_DB": str(tmp_path / "demo.sqlite3"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example_project")]),
    }
    for name in ("FIELD_ENCRYPTION_KEY", "LEXOFFICE_CLIENT_ID"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT / "example_project",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "True"]
