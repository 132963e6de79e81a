"""Encryption key handling, each case in a fresh process (SECURITY.md 11).

Each case runs ``python -c`` with its own key, as a deploy would: nothing read at import
(or cached) in the test process can hide a problem.
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


CHECK = SETUP + "from django.core.management import call_command\ncall_command('check')\n"


@pytest.mark.parametrize(
    "keys",
    [None, "not-a-key", [], [KEY_A, "not-a-key"]],
    ids=["missing", "invalid", "empty", "one-bad"],
)
def test_sec11_missing_or_invalid_key_is_reported_by_check_e002(tmp_path, keys):
    result = run(CHECK, tmp_path / "db.sqlite3", keys)
    assert result.returncode != 0
    assert "SystemCheckError" in result.stderr
    assert "(lexoffice.E002) FIELD_ENCRYPTION_KEY is not" in result.stderr
    assert "Fernet.generate_key()" in result.stderr  # the hint says what to write
    assert "ImproperlyConfigured" not in result.stderr


def test_sec11_manage_py_check_reports_e002_without_a_traceback(tmp_path):
    result = run("", tmp_path / "db.sqlite3", None, "check")
    assert result.returncode == 1
    assert "(lexoffice.E002)" in result.stderr
    assert "Traceback" not in result.stderr


def test_sec11_using_a_token_without_a_key_names_the_setting(db_with_row):
    result = run(READ, db_with_row, None)
    assert result.returncode != 0
    assert "LexofficeConfigurationError: FIELD_ENCRYPTION_KEY is not set" in result.stderr


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


def test_sec11_rows_written_by_django_encrypted_model_fields_still_decrypt(db_with_row):
    written_by_library = SETUP + (
        "from django.db import connection\n"
        "from encrypted_model_fields.fields import encrypt_str\n"
        "with connection.cursor() as c:\n"
        "    c.execute('UPDATE django_lexoffice_lexofficeconnection SET access_token = %s', "
        "[encrypt_str('from-the-library').decode()])\n"
    )
    assert run(written_by_library, db_with_row, KEY_A).returncode == 0
    read = SETUP + (
        "from django_lexoffice.models import LexofficeConnection\n"
        "c = LexofficeConnection.objects.get()\n"
        "print(c.access_token, c.refresh_token == " + repr(TOKEN) + ")\n"
        "from encrypted_model_fields.fields import decrypt_str\n"
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SELECT refresh_token FROM django_lexoffice_lexofficeconnection')\n"
        "    print(decrypt_str(cursor.fetchone()[0]) == " + repr(TOKEN) + ")\n"
    )
    result = run(read, db_with_row, KEY_A)
    assert result.stdout.split() == ["from-the-library", "True", "True"], result.stderr


def test_sec11_reencrypt_with_the_wrong_key_is_a_clear_command_error(db_with_row):
    result = run("", db_with_row, [KEY_B], "reencrypt_lexoffice_tokens")
    assert result.returncode == 1
    assert "CommandError: Cannot decrypt LexofficeConnection" in result.stderr
    assert "Traceback" not in result.stderr
