"""Django settings for the benchmarks: PostgreSQL, Redis, the fake Lexware on 127.0.0.1.

Every process of a benchmark run (the runner, the fake's HTTP server, the command and client
workers) uses this module; the runner passes what differs in the environment:

``LEXOFFICE_BENCH_DB``         database name (default ``bench_lexoffice``, created and dropped
                               by the runner)
``LEXOFFICE_BENCH_PG``         ``host:port`` of PostgreSQL (default ``127.0.0.1:5432``, user
                               ``postgres``)
``LEXOFFICE_BENCH_REDIS_URL``  Redis for the shared token bucket and the fake's state (default
                               ``redis://127.0.0.1:6379/12``)
``LEXOFFICE_BENCH_FAKE_URL``   base URL of the fake Lexware served over HTTP
``LEXOFFICE_BENCH_RATE_LIMIT`` ``LEXOFFICE_RATE_LIMIT`` (default 1e6: effectively off)
"""

from __future__ import annotations

import os

PG_HOST, _, PG_PORT = os.environ.get("LEXOFFICE_BENCH_PG", "127.0.0.1:5432").partition(":")
REDIS_URL = os.environ.get("LEXOFFICE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
FAKE_URL = os.environ.get("LEXOFFICE_BENCH_FAKE_URL", "http://127.0.0.1:8765/fake-lexware")

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "Europe/Berlin"
LANGUAGE_CODE = "en"
ROOT_URLCONF = "benchmarks.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "social_django",
    "django_lexoffice",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": PG_HOST,
        "PORT": PG_PORT or "5432",
        "USER": "postgres",
        "NAME": os.environ.get("LEXOFFICE_BENCH_DB", "bench_lexoffice"),
        # Persistent, as a production site would run: no connection set-up per request.
        "CONN_MAX_AGE": None,
        "OPTIONS": {"connect_timeout": 5},
    }
}

CACHES = {
    # The shared token bucket and the fake Lexware's state (shared with its HTTP server).
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "lexoffice-bench",
    },
    # The fake's state for in-process (``responses``) runs: no network round trips.
    "fake_local": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "lexoffice-bench-fake",
        "OPTIONS": {"MAX_ENTRIES": 1_000_000},
    },
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

AUTHENTICATION_BACKENDS = [
    "django_lexoffice.backends.LexofficeOAuth2",
    # social-auth's own storage for the same protocol, the baseline of two benchmarks.
    "benchmarks.bare.BareLexofficeOAuth2",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/lexoffice/login/"
LOGIN_REDIRECT_URL = "/"

FIELD_ENCRYPTION_KEY = "mVb1S4q8R0Yq3kJbq2P7Q0H6kQ9mN5tX2cW8vZ1yA4E="

SOCIAL_AUTH_LEXOFFICE_KEY = "bench-client"
SOCIAL_AUTH_LEXOFFICE_SECRET = "bench-client-secret-0123456789"

LEXOFFICE_AUTH_BASE_URL = FAKE_URL
LEXOFFICE_API_BASE_URL = FAKE_URL
LEXOFFICE_RATE_LIMIT = float(os.environ.get("LEXOFFICE_BENCH_RATE_LIMIT", "1000000"))
LEXOFFICE_FAKE_CACHE = "default"
# The fake's API limit is switched on by the benchmark that measures it (set_rate_limit).
LEXOFFICE_FAKE_RATE_LIMIT = None
