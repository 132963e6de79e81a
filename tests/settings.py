"""Settings for the test suite.

SQLite by default; ``LEXOFFICE_TEST_DB=postgres`` runs the same suite on the
PostgreSQL server at 127.0.0.1:5432 (user ``postgres``, trust auth).
"""

from __future__ import annotations

import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "Europe/Berlin"
LANGUAGE_CODE = "en"
USE_I18N = True
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SITE_ID = 1

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
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

if os.environ.get("LEXOFFICE_TEST_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("LEXOFFICE_TEST_PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("LEXOFFICE_TEST_PGPORT", "5432"),
            "USER": os.environ.get("LEXOFFICE_TEST_PGUSER", "postgres"),
            "NAME": os.environ.get("LEXOFFICE_TEST_PGNAME", "postgres"),
            "OPTIONS": {"connect_timeout": 5},
            # One name per tox env, so suites running side by side don't collide.
            "TEST": {
                "NAME": os.environ.get(
                    "LEXOFFICE_TEST_PGTESTNAME",
                    "test_django_lexoffice_"
                    + os.environ.get("TOX_ENV_NAME", "local").replace("-", "_"),
                )
            },
        }
    }
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Django 6.1 names its mail backends (MAILERS); earlier versions ignore the setting.
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "/static/"

AUTHENTICATION_BACKENDS = [
    "django_lexoffice.backends.LexofficeOAuth2",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

# A test-only key; real sites load theirs from the environment.
FIELD_ENCRYPTION_KEY = os.environ.get(
    "LEXOFFICE_TEST_FIELD_ENCRYPTION_KEY", "p_I8ClMX7yXpJoD4RKW1BbvcH6Un8CZGYpHKqdZddvo="
)

SOCIAL_AUTH_LEXOFFICE_KEY = "test-client-id"
SOCIAL_AUTH_LEXOFFICE_SECRET = "test-client-secret-0123456789"
SOCIAL_AUTH_LEXOFFICE_SCOPE = ["contacts.read"]

# Tests that are about pacing set their own rate; the rest should not wait.
LEXOFFICE_RATE_LIMIT = 1000
# The fake Lexware's own 2 requests/s bucket is exercised by the tests about
# pacing, which enable it; elsewhere it would only slow the suite down.
LEXOFFICE_FAKE_RATE_LIMIT = None
