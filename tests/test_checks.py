"""System checks: one test per ID, and ``check`` really fails."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_lexoffice.checks import check_deploy, check_settings
from django_lexoffice.conf import settings as lexoffice_settings


def ids(messages):
    return sorted(message.id for message in messages)


def test_default_test_settings_pass():
    assert check_settings() == []


@override_settings(SOCIAL_AUTH_LEXOFFICE_KEY="")
def test_e001_client_id_missing():
    assert ids(check_settings()) == ["lexoffice.E001"]


@pytest.mark.parametrize(
    "key", [None, "", "not-a-fernet-key", ["p_I8ClMX7yXpJoD4RKW1BbvcH6Un8CZGYpHKqdZddvo=", "bad"]]
)
def test_e002_encryption_key_missing_or_invalid(key):
    with override_settings(FIELD_ENCRYPTION_KEY=key):
        assert ids(check_settings()) == ["lexoffice.E002"]


@override_settings(AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"])
def test_e003_backend_not_in_authentication_backends():
    messages = check_settings()
    assert ids(messages) == ["lexoffice.E003"]
    assert "django_lexoffice.backends.LexofficeOAuth2" in messages[0].hint


def test_e004_social_django_not_installed(settings):
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "social_django"]
    assert "lexoffice.E004" in ids(check_settings())


@override_settings(SOCIAL_AUTH_LEXOFFICE_SCOPE=["openid", "contacts.read", "profile"])
def test_e005_unknown_scopes():
    messages = check_settings()
    assert ids(messages) == ["lexoffice.E005"]
    assert "'openid'" in messages[0].msg and "'profile'" in messages[0].msg


@override_settings(LEXOFFICE_REDIRECT_URI="/lexoffice/callback/")
def test_e006_relative_redirect_uri():
    assert ids(check_settings()) == ["lexoffice.E006"]


@override_settings(LEXOFFICE_AUTH_BASE_URL="app.lexware.de")
def test_e007_host_without_scheme():
    assert ids(check_settings()) == ["lexoffice.E007"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEXOFFICE_RATE_LIMIT", 0),  # the bucket divides by it: the changelist 500s
        ("LEXOFFICE_RATE_LIMIT", -2),
        ("LEXOFFICE_RATE_LIMIT", "fast"),
        ("LEXOFFICE_RATE_LIMIT", float("nan")),
        ("LEXOFFICE_REFRESH_MARGIN", "5m"),
        ("LEXOFFICE_REFRESH_MARGIN", -60),
        ("LEXOFFICE_REFRESH_MARGIN", None),
        ("LEXOFFICE_RATE_LIMIT_MAX_WAIT", "long"),
        ("LEXOFFICE_RATE_LIMIT_MAX_WAIT", -1),
        ("LEXOFFICE_TIMEOUT", "30"),  # would be unpacked as ("3", "0"): no read timeout
        ("LEXOFFICE_TIMEOUT", 0),
        ("LEXOFFICE_TIMEOUT", (5, 0)),
        ("LEXOFFICE_TIMEOUT", (5, 30, 60)),
        ("LEXOFFICE_TIMEOUT", None),
        ("LEXOFFICE_TIMEOUT", True),
        ("LEXOFFICE_AUTHORIZATION_LIFETIME", "two years"),
        ("LEXOFFICE_AUTHORIZATION_LIFETIME", -30),
        ("LEXOFFICE_AUTHORIZATION_LIFETIME", timedelta(days=-1)),
        ("LEXOFFICE_AUTHORIZATION_LIFETIME", 10**12),  # beyond timedelta's range
    ],
)
def test_e012_unusable_number_or_duration(settings, name, value):
    setattr(settings, name, value)
    (error,) = check_settings()
    assert error.id == "lexoffice.E012"
    assert error.msg.startswith(f"{name} must be ") and error.msg.endswith(f"not {value!r}.")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEXOFFICE_RATE_LIMIT", "1.5"),  # from the environment
        ("LEXOFFICE_REFRESH_MARGIN", 0),
        ("LEXOFFICE_RATE_LIMIT_MAX_WAIT", 0),
        ("LEXOFFICE_TIMEOUT", 10),
        ("LEXOFFICE_TIMEOUT", [3, 7.5]),
        ("LEXOFFICE_AUTHORIZATION_LIFETIME", None),
        ("LEXOFFICE_AUTHORIZATION_LIFETIME", "365"),
        ("LEXOFFICE_AUTHORIZATION_LIFETIME", timedelta(days=10)),
    ],
)
def test_e012_not_raised_for_usable_values(settings, name, value):
    setattr(settings, name, value)
    assert check_settings() == []


def test_e012_not_raised_for_the_defaults(settings):
    for name in (
        "LEXOFFICE_RATE_LIMIT",
        "LEXOFFICE_REFRESH_MARGIN",
        "LEXOFFICE_RATE_LIMIT_MAX_WAIT",
        "LEXOFFICE_TIMEOUT",
        "LEXOFFICE_AUTHORIZATION_LIFETIME",
    ):
        if hasattr(settings, name):
            delattr(settings, name)
    assert check_settings() == []
    assert lexoffice_settings.RATE_LIMIT == 1.8
    assert lexoffice_settings.REFRESH_MARGIN == 300
    assert lexoffice_settings.RATE_LIMIT_MAX_WAIT == 30.0
    assert lexoffice_settings.TIMEOUT == (5.0, 30.0)
    assert lexoffice_settings.AUTHORIZATION_LIFETIME == timedelta(days=730)


@override_settings(LEXOFFICE_TIMEOUT="30")
def test_a_timeout_string_is_refused_not_unpacked():
    with pytest.raises(ImproperlyConfigured, match=r"LEXOFFICE_TIMEOUT must be .* not '30'\."):
        lexoffice_settings.TIMEOUT


@pytest.mark.django_db  # Django 6.1's check command also runs database checks
@override_settings(SOCIAL_AUTH_LEXOFFICE_KEY="")
def test_check_command_fails_on_errors():
    with pytest.raises(SystemCheckError, match=r"lexoffice\.E001"):
        call_command("check")


@override_settings(LEXOFFICE_REDIRECT_URI="https://example.com/lexoffice/callback/")
def test_deploy_checks_pass_for_a_production_setup():
    assert check_deploy() == []


@override_settings(
    LEXOFFICE_AUTH_BASE_URL="http://127.0.0.1:8000/fake",
    LEXOFFICE_API_BASE_URL="http://127.0.0.1:8000/fake",
    LEXOFFICE_REDIRECT_URI="http://example.com/lexoffice/callback/",
)
def test_w101_w102_plain_http_hosts_and_redirect_uri():
    assert ids(check_deploy()) == ["lexoffice.W101", "lexoffice.W101", "lexoffice.W102"]


def test_w103_redirect_uri_from_request_host():
    assert ids(check_deploy()) == ["lexoffice.W103"]


@override_settings(
    SOCIAL_AUTH_LEXOFFICE_SECRET="", LEXOFFICE_REDIRECT_URI="https://example.com/cb/"
)
def test_w104_public_client():
    assert ids(check_deploy()) == ["lexoffice.W104"]


@override_settings(LEXOFFICE_REDIRECT_URI="https://example.com/cb/")
def test_w105_debug_logging_of_http_requests():
    logger = logging.getLogger("urllib3")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        assert ids(check_deploy()) == ["lexoffice.W105"]
    finally:
        logger.setLevel(old)


def _redis_cache(options):
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "ratelimit": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/15",
            "OPTIONS": options,
        },
    }


@override_settings(
    LEXOFFICE_REDIRECT_URI="https://example.com/cb/",
    LEXOFFICE_RATE_LIMIT_CACHE="ratelimit",
    CACHES=_redis_cache({}),
)
def test_w106_rate_limit_on_redis_without_socket_timeouts():
    (warning,) = check_deploy()
    assert warning.id == "lexoffice.W106" and "'ratelimit'" in warning.msg
    assert "socket_timeout" in warning.hint


@override_settings(
    LEXOFFICE_REDIRECT_URI="https://example.com/cb/",
    LEXOFFICE_RATE_LIMIT_CACHE="ratelimit",
    CACHES=_redis_cache({"socket_connect_timeout": 2, "socket_timeout": 2}),
)
def test_w106_not_raised_with_socket_timeouts():
    assert check_deploy() == []


def test_backend_path_names_the_backend_class():
    from django_lexoffice.backends import LexofficeOAuth2
    from django_lexoffice.conf import BACKEND_PATH

    assert BACKEND_PATH == f"{LexofficeOAuth2.__module__}.{LexofficeOAuth2.__qualname__}"


@pytest.mark.django_db
def test_deploy_checks_run_with_check_deploy():
    with pytest.raises(SystemCheckError, match=r"lexoffice\.W103"):
        call_command("check", "--deploy", "--fail-level", "WARNING", "--tag", "security")
