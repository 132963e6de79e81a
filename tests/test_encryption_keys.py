"""Encryption key handling, each case in a fresh process (SECURITY.md 11).

django-encrypted-model-fields reads FIELD_ENCRYPTION_KEY once at import, so
override_settings cannot test it: every case runs ``python -c`` with its own key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
TOKEN = "refresh-" + "Z" * 120

SETUP = "import django; django.setup()\n"
WRITE = SETUP + (
    "from django.core.management import call_command\n"
    "call_command('migrate', verbosity=0)\n"
    "from django.contrib.auth.models import User\n"
    "from django_lexoffice.models import LexofficeConnection\n"
    "u = User.objects.create(username='k')\n"
    f"LexofficeConnection.objects.create(user=u, organization_id='o', refresh_token={TOKEN!r})\n"
)
READ = SETUP + (
    "from django_lexoffice.models import LexofficeConnection\n"
    "print(LexofficeConnection.objects.get().refresh_token)\n"
)
RAW = SETUP + (
    "from django.db import connection\n"
    "with connection.cursor() as c:\n"
    "    c.execute('SELECT refresh_token FROM django_lexoffice_lexofficeconnection')\n"
    "    print(c.fetchone()[0])\n"
)


def run(code: str, db: Path, keys: object = None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_keys",
        "LEXOFFICE_KEYS_DB": str(db),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("LEXOFFICE_KEYS", None)
    if keys is not None:
        env["LEXOFFICE_KEYS"] = json.dumps(keys)
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "django", *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def db_with_row(tmp_path):
    db = tmp_path / "keys.sqlite3"
    result = run(WRITE, db, KEY_A)
    assert result.returncode == 0, result.stderr
    return db


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (None, "FIELD_ENCRYPTION_KEY must be defined in settings"),
        ("not-a-key", "FIELD_ENCRYPTION_KEY defined incorrectly"),
        ([], "FIELD_ENCRYPTION_KEY"),
    ],
    ids=["missing", "invalid", "empty-list"],
)
def test_sec11_missing_or_invalid_key_fails_at_startup(tmp_path, keys, message):
    result = run("", tmp_path / "db.sqlite3", keys, "check")
    assert result.returncode != 0
    assert message in result.stderr
    assert "ImproperlyConfigured" in result.stderr


def test_sec11_rows_are_ciphertext_and_readable_with_the_key(db_with_row):
    raw = run(RAW, db_with_row, KEY_A)
    assert raw.stdout.startswith("gAAAA") and TOKEN not in raw.stdout
    assert run(READ, db_with_row, KEY_A).stdout.strip() == TOKEN


def test_sec11_wrong_key_fails_loudly_never_returns_ciphertext(db_with_row):
    result = run(READ, db_with_row, KEY_B)
    assert result.returncode != 0
    assert "TokenDecryptionError" in result.stderr
    assert "Cannot decrypt LexofficeConnection." in result.stderr
    assert "gAAAA" not in result.stdout + result.stderr


def test_sec11_key_rotation_end_to_end(db_with_row):
    rotated = [KEY_B, KEY_A]
    assert run(READ, db_with_row, rotated).stdout.strip() == TOKEN  # old rows readable
    result = run("", db_with_row, rotated, "reencrypt_lexoffice_tokens")
    assert (result.returncode, result.stdout) == (
        0,
        "Re-encrypted 1 connection with the newest key.\n",
    ), result.stderr
    assert run(READ, db_with_row, [KEY_B]).stdout.strip() == TOKEN  # old key removed
    assert run(READ, db_with_row, [KEY_A]).returncode != 0  # no longer the old key's


def test_sec11_reencrypt_with_the_wrong_key_is_a_clear_command_error(db_with_row):
    result = run("", db_with_row, [KEY_B], "reencrypt_lexoffice_tokens")
    assert result.returncode == 1
    assert "CommandError: Cannot decrypt LexofficeConnection" in result.stderr
    assert "Traceback" not in result.stderr
