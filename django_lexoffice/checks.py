"""System checks. Errors ``lexoffice.E0xx`` stop ``manage.py check``; ``lexoffice.W1xx``
are security warnings shown by ``manage.py check --deploy``."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings as django_settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, reverse

from .conf import BACKEND_PATH, DEFAULT_WEBHOOK_EVENTS, KNOWN_SCOPES, WEBHOOK_EVENT_TYPES
from .conf import settings as lexoffice_settings
from .signature import InvalidPublicKey, load_public_key

#: Django's RedisCache and django-redis spell their socket timeouts differently.
_REDIS_TIMEOUT_OPTIONS = frozenset(
    {"socket_timeout", "socket_connect_timeout", "SOCKET_TIMEOUT", "SOCKET_CONNECT_TIMEOUT"}
)


@register("lexoffice")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    """Configuration errors that make the lexoffice flow fail."""
    errors: list[Error | Warning] = []
    if not lexoffice_settings.CLIENT_ID:
        errors.append(
            Error(
                "SOCIAL_AUTH_LEXOFFICE_KEY (the client id Lexware gave you) is not set.",
                hint='Add SOCIAL_AUTH_LEXOFFICE_KEY = os.environ["LEXOFFICE_CLIENT_ID"] '
                "to your settings.",
                id="lexoffice.E001",
            )
        )
    errors.extend(_check_encryption_key())
    backends = getattr(django_settings, "AUTHENTICATION_BACKENDS", [])
    if BACKEND_PATH not in backends:
        errors.append(
            Error(
                f"{BACKEND_PATH!r} is not in AUTHENTICATION_BACKENDS.",
                hint=f'AUTHENTICATION_BACKENDS = ["{BACKEND_PATH}", '
                '"django.contrib.auth.backends.ModelBackend"]',
                id="lexoffice.E003",
            )
        )
    if not apps.is_installed("social_django"):
        errors.append(
            Error(
                "'social_django' is not in INSTALLED_APPS.",
                hint='INSTALLED_APPS += ["social_django", "django_lexoffice"]',
                id="lexoffice.E004",
            )
        )
    unknown = [scope for scope in lexoffice_settings.EXTRA_SCOPES if scope not in KNOWN_SCOPES]
    if unknown:
        errors.append(
            Error(
                f"SOCIAL_AUTH_LEXOFFICE_SCOPE contains scopes Lexware does not know: {unknown}.",
                hint="Use Lexware's scopes such as 'contacts.read' or 'invoices.write'; "
                "there is no 'openid' or 'profile' scope.",
                id="lexoffice.E005",
            )
        )
    redirect_uri = lexoffice_settings.REDIRECT_URI
    if redirect_uri and not urlsplit(redirect_uri).netloc:
        errors.append(
            Error(
                f"LEXOFFICE_REDIRECT_URI must be an absolute URL, got {redirect_uri!r}.",
                hint='LEXOFFICE_REDIRECT_URI = "https://example.com/lexoffice/callback/" '
                "(exactly as registered with Lexware)",
                id="lexoffice.E006",
            )
        )
    for name in ("LEXOFFICE_AUTH_BASE_URL", "LEXOFFICE_API_BASE_URL"):
        value = getattr(django_settings, name, None)
        if value and (
            urlsplit(str(value)).scheme not in {"http", "https"} or not urlsplit(str(value)).netloc
        ):
            errors.append(
                Error(
                    f"{name} must be an absolute http(s) URL, got {value!r}.",
                    hint=f"Remove {name} to use Lexware's host, or set LEXOFFICE_SANDBOX = True.",
                    id="lexoffice.E007",
                )
            )
    errors.extend(_check_numbers())
    errors.extend(_check_webhooks())
    return errors


def _check_webhooks() -> list[Error | Warning]:
    """The webhook key must parse and the events must be Lexware's; events without a URL
    are never subscribed to."""
    errors: list[Error | Warning] = []
    for index, pem in enumerate(lexoffice_settings.WEBHOOK_PUBLIC_KEYS):
        try:
            load_public_key(pem)
        except InvalidPublicKey as exc:
            errors.append(
                Error(
                    f"LEXOFFICE_WEBHOOK_PUBLIC_KEY (key {index + 1}) is not usable: {exc}.",
                    hint="Set it to the PEM text of an RSA public key, starting with "
                    "'-----BEGIN PUBLIC KEY-----', or remove it to use Lexware's published key.",
                    id="lexoffice.E008",
                )
            )
    events = lexoffice_settings.WEBHOOK_EVENTS
    unknown = [event for event in events if event not in WEBHOOK_EVENT_TYPES]
    if unknown:
        errors.append(
            Error(
                f"LEXOFFICE_WEBHOOK_EVENTS contains event types Lexware does not know: {unknown}.",
                hint="Use Lexware's lower-case event types such as 'token.revoked', "
                "'invoice.created' or 'contact.changed'.",
                id="lexoffice.E009",
            )
        )
    if (
        lexoffice_settings.WEBHOOK_RECEIVERS_IN_CELERY
        and importlib.util.find_spec("celery") is None
    ):
        errors.append(
            Error(
                "LEXOFFICE_WEBHOOK_USE_CELERY is True but Celery is not installed.",
                hint='pip install "django-lexoffice[celery]", or remove the setting to run '
                "event_received receivers and subscriptions inline.",
                id="lexoffice.E010",
            )
        )
    errors.extend(_check_refresh_policy())
    if not lexoffice_settings.WEBHOOK_URL and list(events) != list(DEFAULT_WEBHOOK_EVENTS):
        errors.append(
            Warning(
                "LEXOFFICE_WEBHOOK_EVENTS is set but LEXOFFICE_WEBHOOK_URL is not: no "
                "connection will be subscribed to any event.",
                hint='Set LEXOFFICE_WEBHOOK_URL = "https://your.site/lexoffice/webhook/" '
                "(the URL of lexoffice:webhook as Lexware reaches it).",
                id="lexoffice.W108",
            )
        )
    return errors


def _check_encryption_key() -> list[Error]:
    hint = (
        'Generate one with: python -c "from cryptography.fernet import Fernet; '
        'print(Fernet.generate_key().decode())" and set FIELD_ENCRYPTION_KEY from the environment.'
    )
    keys = getattr(django_settings, "FIELD_ENCRYPTION_KEY", None)
    if not keys:
        return [
            Error(
                "FIELD_ENCRYPTION_KEY is not set: tokens cannot be stored encrypted.",
                hint=hint,
                id="lexoffice.E002",
            )
        ]
    for key in keys if isinstance(keys, (list, tuple)) else [keys]:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return [
                Error(
                    "FIELD_ENCRYPTION_KEY is not a valid Fernet key (or list of keys).",
                    hint=hint,
                    id="lexoffice.E002",
                )
            ]
    return []


@register(Tags.security, deploy=True)
def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Security posture for production, shown by ``manage.py check --deploy``."""
    warnings: list[Warning] = []
    for label, url in (
        ("LEXOFFICE_AUTH_BASE_URL", lexoffice_settings.AUTH_BASE_URL),
        ("LEXOFFICE_API_BASE_URL", lexoffice_settings.API_BASE_URL),
    ):
        if not _is_https(url):
            warnings.append(
                Warning(
                    f"{label} is {url!r}: tokens would travel without TLS.",
                    hint="Use Lexware's https hosts (remove the setting) in production.",
                    id="lexoffice.W101",
                )
            )
    redirect_uri = lexoffice_settings.REDIRECT_URI
    if redirect_uri and not _is_https(redirect_uri):
        warnings.append(
            Warning(
                f"LEXOFFICE_REDIRECT_URI is {redirect_uri!r}: the authorization code would "
                "travel without TLS.",
                hint="Register and use an https:// redirect URI.",
                id="lexoffice.W102",
            )
        )
    if not redirect_uri:
        warnings.append(
            Warning(
                "LEXOFFICE_REDIRECT_URI is not set: the redirect URI is built from the request's "
                "host.",
                hint='Set LEXOFFICE_REDIRECT_URI = "https://your.site/lexoffice/callback/", '
                "exactly as registered with Lexware.",
                id="lexoffice.W103",
            )
        )
    if lexoffice_settings.IS_PUBLIC_CLIENT:
        warnings.append(
            Warning(
                "SOCIAL_AUTH_LEXOFFICE_SECRET is empty: the app acts as a public client "
                "(PKCE only, no client authentication).",
                hint="A server-side Django site is a confidential client: set "
                'SOCIAL_AUTH_LEXOFFICE_SECRET = os.environ["LEXOFFICE_CLIENT_SECRET"].',
                id="lexoffice.W104",
            )
        )
    warnings.extend(_check_webhook_url())
    warnings.extend(_check_rate_limit_cache())
    for name in ("urllib3", "requests"):
        if logging.getLogger(name).isEnabledFor(logging.DEBUG):
            warnings.append(
                Warning(
                    f"The {name!r} logger logs at DEBUG: request details of OAuth calls may "
                    "reach the logs.",
                    hint=f"Set the level of the {name!r} logger to INFO or higher in LOGGING.",
                    id="lexoffice.W105",
                )
            )
    return warnings


def _check_webhook_url() -> list[Warning]:
    """The callback URL Lexware gets: https, no secret in it, and our webhook's path."""
    url = lexoffice_settings.WEBHOOK_URL
    if not url:
        return []
    parts = urlsplit(url)
    hint = 'LEXOFFICE_WEBHOOK_URL = "https://your.site/lexoffice/webhook/"'
    if not _is_https(url) or parts.username or parts.password or parts.query or parts.fragment:
        return [
            Warning(
                f"LEXOFFICE_WEBHOOK_URL is {url!r}: Lexware requires an https callback URL, "
                "and it must carry no credentials, query string or fragment.",
                hint=hint,
                id="lexoffice.W107",
            )
        ]
    try:
        path = reverse("lexoffice:webhook")
    except NoReverseMatch:
        path = None
    if parts.path != path:
        return [
            Warning(
                f"LEXOFFICE_WEBHOOK_URL's path {parts.path!r} is not the path of "
                f"lexoffice:webhook ({path!r}): Lexware's deliveries would not arrive.",
                hint=f"{hint}, with path('lexoffice/', include('django_lexoffice.urls')).",
                id="lexoffice.W107",
            )
        ]
    return []


def _check_refresh_policy() -> list[Error]:
    return _unusable(
        ("REFRESH_POLICY", "REFRESH_ACTIVE_WINDOW", "IDLE_REFRESH_INTERVAL"), "lexoffice.E011"
    )


def _check_numbers() -> list[Error]:
    """Numbers and durations are converted at use time: a bad one would pass ``check`` and
    then fail pages, commands and every API call."""
    return _unusable(
        (
            "REFRESH_MARGIN",
            "RATE_LIMIT",
            "RATE_LIMIT_MAX_WAIT",
            "TIMEOUT",
            "AUTHORIZATION_LIFETIME",
        ),
        "lexoffice.E012",
    )


def _unusable(names: tuple[str, ...], check_id: str) -> list[Error]:
    """An error ``check_id`` for each of the settings ``names`` that ``conf`` refuses, read
    exactly as the app reads it."""
    errors = []
    for name in names:
        try:
            getattr(lexoffice_settings, name)
        except ImproperlyConfigured as exc:  # the message says what to write
            errors.append(Error(str(exc), id=check_id))
    return errors


def _check_rate_limit_cache() -> list[Warning]:
    alias = lexoffice_settings.RATE_LIMIT_CACHE
    cache = getattr(django_settings, "CACHES", {}).get(alias, {})
    if "redis" not in str(cache.get("BACKEND", "")).lower():
        return []
    options = cache.get("OPTIONS") or {}
    if _REDIS_TIMEOUT_OPTIONS.intersection(options):
        return []
    return [
        Warning(
            f"The cache {alias!r} holding the lexoffice rate limit is Redis without socket "
            "timeouts: if Redis stops answering, every call to lexoffice hangs with it.",
            hint=f'Add "socket_connect_timeout": 2, "socket_timeout": 2 to CACHES[{alias!r}]'
            '["OPTIONS"] (django-redis: "SOCKET_CONNECT_TIMEOUT" and "SOCKET_TIMEOUT").',
            id="lexoffice.W106",
        )
    ]


def _is_https(url: str) -> bool:
    return urlsplit(url).scheme == "https"
