"""Settings of the django-lexoffice demo site.

By default the demo needs no lexoffice account and no internet: the fake Lexware from
``django_lexoffice.testing`` is mounted at ``/fake-lexware/`` in the same process and both
Lexware base URLs point at it. Environment variables switch to the real Lexware:

=============================  ==================================================================
``LEXOFFICE_CLIENT_ID``        set: use the real Lexware with this client id (the fake is off)
``LEXOFFICE_CLIENT_SECRET``    the client secret Lexware issued with it
``LEXOFFICE_SANDBOX``          ``1``: Lexware's sandbox hosts instead of production
``LEXOFFICE_REDIRECT_URI``     the redirect URI exactly as registered with Lexware (optional)
``LEXOFFICE_SCOPES``           extra scopes, space-separated (fake default: ``contacts.read``)
``LEXOFFICE_DEMO_URL``         where the demo is served (default ``http://127.0.0.1:8000``)
``LEXOFFICE_DEMO_DB``          the SQLite file (default ``example_project/db.sqlite3``)
``LEXOFFICE_DEMO_DATA_DIR``    generated keys and the fake's state (``example_project/.demo-data``)
``LEXOFFICE_DEMO_NO_DEBUG``    ``1``: run with ``DEBUG = False``
``DJANGO_SECRET_KEY``          overrides the generated secret key
``FIELD_ENCRYPTION_KEY``       overrides the generated token encryption key
=============================  ==================================================================

The secret key and the encryption key are generated on first run into the git-ignored data
directory: they are for this local demo only. Never reuse them for a real site.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LEXOFFICE_DEMO_DATA_DIR") or BASE_DIR / ".demo-data")
DEMO_URL = (os.environ.get("LEXOFFICE_DEMO_URL") or "http://127.0.0.1:8000").rstrip("/")
_demo = urlsplit(DEMO_URL)
DEMO_HOST = _demo.hostname or "127.0.0.1"
DEMO_PORT = _demo.port or 8000


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def demo_secret(name: str, generate: Callable[[], str]) -> str:
    """A value generated once into ``DATA_DIR/name`` (mode 0600) and read back afterwards."""
    path = DATA_DIR / name
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it meanwhile
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(generate() + "\n")
    return path.read_text(encoding="utf-8").strip()


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def _rsa_private_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode("ascii").strip()


def _rsa_public_pem(private_pem: str) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public.decode("ascii")


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or demo_secret(
    "secret_key", lambda: secrets.token_urlsafe(50)
)
DEBUG = not _env_flag("LEXOFFICE_DEMO_NO_DEBUG")
ALLOWED_HOSTS = sorted({"127.0.0.1", "localhost", DEMO_HOST})

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "social_django",
    "django_lexoffice",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # First, so templates/django_lexoffice/base.html gives the app's pages the site's look.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "demo_site.context_processors.demo",
            ],
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("LEXOFFICE_DEMO_DB") or BASE_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # The fake Lexware's state (clients, grants, tokens) survives restarts of the demo.
    "fake-lexware": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(DATA_DIR / "fake-lexware-cache"),
        "TIMEOUT": None,
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django_lexoffice.backends.LexofficeOAuth2",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en"
LANGUAGES = [("de", _("German")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "Europe/Berlin"
USE_TZ = True

STATIC_URL = "static/"

# -- django-lexoffice ----------------------------------------------------------------------

FIELD_ENCRYPTION_KEY = os.environ.get("FIELD_ENCRYPTION_KEY") or demo_secret(
    "field_encryption_key", _fernet_key
)

#: ``True`` when the demo talks to the built-in fake Lexware (no LEXOFFICE_CLIENT_ID given).
DEMO_FAKE_LEXWARE = not os.environ.get("LEXOFFICE_CLIENT_ID")

if DEMO_FAKE_LEXWARE:
    SOCIAL_AUTH_LEXOFFICE_KEY = "django-lexoffice-demo"
    # Known only to the fake in this process; a real client secret never goes in a file.
    SOCIAL_AUTH_LEXOFFICE_SECRET = "demo-secret-for-the-fake-lexware-only"
    LEXOFFICE_AUTH_BASE_URL = f"{DEMO_URL}/fake-lexware"
    LEXOFFICE_API_BASE_URL = f"{DEMO_URL}/fake-lexware"
    _loopback = {"127.0.0.1", "localhost"}
    _hosts = sorted(_loopback if DEMO_HOST in _loopback else {DEMO_HOST})
    LEXOFFICE_FAKE_CLIENTS = {
        SOCIAL_AUTH_LEXOFFICE_KEY: {
            "secret": SOCIAL_AUTH_LEXOFFICE_SECRET,
            "redirect_uris": [
                f"{_demo.scheme}://{host}:{DEMO_PORT}/lexoffice/callback/" for host in _hosts
            ],
        }
    }
    LEXOFFICE_FAKE_CACHE = "fake-lexware"
    SOCIAL_AUTH_LEXOFFICE_SCOPE = os.environ.get("LEXOFFICE_SCOPES", "contacts.read").split()
    # Webhooks end to end: logins subscribe at the fake, whose "Verbundene Apps" page ends a
    # connection and delivers token.revoked, signed with the demo's own fake key.
    LEXOFFICE_FAKE_WEBHOOK_PRIVATE_KEY = demo_secret("fake_webhook_key.pem", _rsa_private_pem)
    LEXOFFICE_WEBHOOK_PUBLIC_KEY = _rsa_public_pem(LEXOFFICE_FAKE_WEBHOOK_PRIVATE_KEY)
    LEXOFFICE_WEBHOOK_URL = f"{DEMO_URL}/lexoffice/webhook/"
else:
    SOCIAL_AUTH_LEXOFFICE_KEY = os.environ["LEXOFFICE_CLIENT_ID"]
    SOCIAL_AUTH_LEXOFFICE_SECRET = os.environ.get("LEXOFFICE_CLIENT_SECRET", "")
    LEXOFFICE_SANDBOX = _env_flag("LEXOFFICE_SANDBOX")
    SOCIAL_AUTH_LEXOFFICE_SCOPE = os.environ.get("LEXOFFICE_SCOPES", "").split()
    if os.environ.get("LEXOFFICE_REDIRECT_URI"):
        LEXOFFICE_REDIRECT_URI = os.environ["LEXOFFICE_REDIRECT_URI"]
