"""Typed access to django-lexoffice's settings, read at use time.

Every setting is looked up on ``django.conf.settings`` each time it is used, so
``override_settings`` in tests just works. Nothing here imports the rest of the
app (see the module map in the docs).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, overload

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

PRODUCTION_AUTH_BASE_URL = "https://app.lexware.de"
PRODUCTION_API_BASE_URL = "https://api.lexware.io"
SANDBOX_AUTH_BASE_URL = "https://app.lexware-sandbox.de"
SANDBOX_API_BASE_URL = "https://api.lexware-sandbox.io"

#: The authentication backend's dotted path, for AUTHENTICATION_BACKENDS and ``login()``.
BACKEND_PATH = "django_lexoffice.backends.LexofficeOAuth2"

#: Lexware's scopes (LEXOFFICE.md); there is no ``openid`` and no ``profile``.
KNOWN_SCOPES = frozenset(
    """profile.read organization.read contacts.read contacts.write contacts.bankaccounts.read
    contacts.bankaccounts.write articles.read articles.write invoices.read invoices.write
    credit-notes.read credit-notes.write order-confirmations.read order-confirmations.write
    quotations.read quotations.write delivery-notes.read delivery-notes.write dunnings.read
    dunnings.write recurring-templates.read vouchers.read vouchers.write vouchers.sendmail
    voucherlist.read payments.read files.read files.write files.status finance.read
    finance.write finance.delete cashbox.read cashbox.write cashbox.delete
    transaction-assignment-hint.write""".split()
)

#: ``profile.read`` is always requested: ``/v1/profile`` identifies the account.
REQUIRED_SCOPES: tuple[str, ...] = ("profile.read",)

#: Lexware's webhook signing key (RSA 4096), as published at
#: https://developers.lexware.io/webhookSignature/public/public_key.pub; SHA-256 of its DER:
#: 6a42debdf6c613137f8da76b231711c93c3b4fc2dc0e7a2998e08c7f479f80b1.
LEXWARE_WEBHOOK_PUBLIC_KEY = """\
-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAtCkZXZqT2zFRmA83KsBC
tQSv9t+AaWiZpRWvzE4wiQEh0aHzNYkT/DlP419pngqoLxnqW9SsgWfKOG3utoEV
z+Lru9odZntW/n/yaRK3f0AcMtuWs/Z1PZ4BbN/RlFYyqlPg0VfuAvZMAa+J9WAl
Fuy0T4Y0EdO0d+EL8BpzSLqj3XLI+YuK4hUhlTOxHmdDtNUkugnT9b9khb+oPDmB
3yxRP6Rmo2qo6waSc+pihCdOiZKzwA4fA1HT8DM54OaNQ4qd9NRf5uECijFlpQu6
vZdW7Z+LZ8HTgGQVSsJdCzUtM1wiWOERrHvd8IpBMvUAvGM/qaJnAmwsEr4J/El4
yCmur8wwYBtSUH0Xue42YysdmSS0pOMMUAAvr70HQMDHagYkErMtu6FAyAmPz8p/
tAqJJpwAhxITbnc5WsmZOu0Ke255nXQ/2Go1TKv+45mSb7RLsvpmhVZ4nFByFt24
vG6IwNReuLhJJL468jrdTpxyZRn0QqkxiQV7jDd9Dp1NVd/W3+n86Aos9LnJa+ut
kN+jOOWmJdJjnQetJlbDVg3ex+XHVmCjiRYggCGPlpXVJwdEUNGzxhPGKjxmeiQT
ahwFA9iHtwBw7yK5VfM/hA+JeF2FXYhTdehfClAQt1YCYXkgUEFxm9idRdBoCY6U
bmFUXQLdi7tZyDor8Rxoq2MCAwEAAQ==
-----END PUBLIC KEY-----
"""

#: Lexware's webhook event types (LEXOFFICE.md); ``article.*`` from secondary sources.
WEBHOOK_EVENT_TYPES: frozenset[str] = frozenset(
    [
        f"{resource}.{action}"
        for resource in ("contact", "dunning", "recurring-template", "article")
        for action in ("created", "changed", "deleted")
    ]
    + [
        f"{resource}.{action}"
        for resource in (
            "credit-note",
            "delivery-note",
            "down-payment-invoice",
            "invoice",
            "order-confirmation",
            "quotation",
            "voucher",
        )
        for action in ("created", "changed", "deleted", "status.changed")
    ]
    + ["payment.changed", "token.revoked"]
)

DEFAULT_WEBHOOK_EVENTS: tuple[str, ...] = ("token.revoked",)

#: Lexware's partner authorizations end after two years (LEXOFFICE.md, "Other").
DEFAULT_AUTHORIZATION_LIFETIME = timedelta(days=730)

#: Lexware allows 2 requests per second per client; stay a little below it.
DEFAULT_RATE_LIMIT = 1.8

#: ``LEXOFFICE_REFRESH_POLICY`` values (``django_lexoffice.policy.RefreshPolicy`` names them).
REFRESH_POLICIES: tuple[str, ...] = ("keep_fresh", "on_use")
#: ``on_use``: connections used within this window are kept fresh like ``keep_fresh`` does.
#: Two days: a connection used every working day stays fresh from one day to the next whatever
#: the hour; after a weekend its first call waits for one refresh. Each day of window costs six
#: refreshes a day per connection used in it.
DEFAULT_ACTIVE_WINDOW = timedelta(days=2)
#: ``on_use``: an idle connection is refreshed this often, only to keep its refresh token alive.
#: Lexware documents no idle limit for refresh tokens. Among OAuth servers that have one, common
#: defaults are about 15 days (Auth0's idle refresh token lifetime) and 30 days (Keycloak's
#: offline session idle). A week stays a factor of two below the shorter one and costs 1/42 of
#: keeping a connection fresh (one refresh a week instead of six a day).
DEFAULT_IDLE_REFRESH_INTERVAL = timedelta(days=7)


class _Endpoint:
    """A Lexware endpoint: a fixed path under one of the base URLs, read at use time, so it
    follows ``LEXOFFICE_SANDBOX`` and the base URL settings."""

    def __init__(self, base: str, path: str) -> None:
        self.base = base  # the name of the Settings property that gives the base URL
        self.path = path

    @overload
    def __get__(self, settings: None, owner: type[Settings]) -> _Endpoint: ...
    @overload
    def __get__(self, settings: Settings, owner: type[Settings] | None = None) -> str: ...
    def __get__(
        self, settings: Settings | None, owner: type[Settings] | None = None
    ) -> str | _Endpoint:
        if settings is None:
            return self  # read on the class (autodoc, introspection): no settings to read
        return f"{getattr(settings, self.base)}{self.path}"


class Settings:
    """One typed property per setting; defaults as documented in the README."""

    @property
    def CLIENT_ID(self) -> str:
        return str(getattr(django_settings, "SOCIAL_AUTH_LEXOFFICE_KEY", "") or "")

    @property
    def CLIENT_SECRET(self) -> str:
        return str(getattr(django_settings, "SOCIAL_AUTH_LEXOFFICE_SECRET", "") or "")

    @property
    def IS_PUBLIC_CLIENT(self) -> bool:
        """A client without a secret authenticates with PKCE and client_id only."""
        return not self.CLIENT_SECRET

    @property
    def EXTRA_SCOPES(self) -> list[str]:
        value = getattr(django_settings, "SOCIAL_AUTH_LEXOFFICE_SCOPE", [])
        if isinstance(value, str):
            value = value.split()
        return [str(scope) for scope in value]

    @property
    def SCOPES(self) -> list[str]:
        """``profile.read`` plus the configured scopes, de-duplicated, in order."""
        scopes: list[str] = []
        for scope in (*REQUIRED_SCOPES, *self.EXTRA_SCOPES):
            if scope and scope not in scopes:
                scopes.append(scope)
        return scopes

    @property
    def SANDBOX(self) -> bool:
        return bool(getattr(django_settings, "LEXOFFICE_SANDBOX", False))

    @property
    def AUTH_BASE_URL(self) -> str:
        return self._base_url(
            "LEXOFFICE_AUTH_BASE_URL", PRODUCTION_AUTH_BASE_URL, SANDBOX_AUTH_BASE_URL
        )

    @property
    def API_BASE_URL(self) -> str:
        return self._base_url(
            "LEXOFFICE_API_BASE_URL", PRODUCTION_API_BASE_URL, SANDBOX_API_BASE_URL
        )

    def _base_url(self, name: str, production: str, sandbox: str) -> str:
        """The setting ``name`` if set, else Lexware's sandbox or production address."""
        default = sandbox if self.SANDBOX else production
        return str(getattr(django_settings, name, None) or default).rstrip("/")

    #: Lexware's endpoints, each a fixed path under one of the base URLs.
    AUTHORIZE_URL = _Endpoint("AUTH_BASE_URL", "/oauth2/authorize")
    TOKEN_URL = _Endpoint("AUTH_BASE_URL", "/oauth2/token")
    REVOKE_URL = _Endpoint("AUTH_BASE_URL", "/oauth2/revoke")
    PROFILE_URL = _Endpoint("API_BASE_URL", "/v1/profile")

    @property
    def REDIRECT_URI(self) -> str | None:
        value = getattr(django_settings, "LEXOFFICE_REDIRECT_URI", None)
        return str(value) if value else None

    @property
    def CONNECTION_NAME(self) -> str | None:
        value = getattr(django_settings, "LEXOFFICE_CONNECTION_NAME", None)
        return str(value) if value else None

    @property
    def REFRESH_MARGIN(self) -> int:
        return int(_seconds("LEXOFFICE_REFRESH_MARGIN", 300))

    @property
    def RATE_LIMIT(self) -> float:
        """Requests per second shared by every process using one client id."""
        value = getattr(django_settings, "LEXOFFICE_RATE_LIMIT", DEFAULT_RATE_LIMIT)
        rate = _number(value)
        if rate is None or rate <= 0:  # the bucket divides by it
            raise ImproperlyConfigured(
                "LEXOFFICE_RATE_LIMIT must be a number of requests per second above 0, "
                f"such as {DEFAULT_RATE_LIMIT}, not {value!r}."
            )
        return rate

    @property
    def RATE_LIMIT_CACHE(self) -> str:
        """The cache alias holding the shared token bucket."""
        return str(getattr(django_settings, "LEXOFFICE_RATE_LIMIT_CACHE", "default"))

    @property
    def RATE_LIMIT_MAX_WAIT(self) -> float:
        """Seconds a caller may wait for the shared bucket before giving up."""
        return _seconds("LEXOFFICE_RATE_LIMIT_MAX_WAIT", 30.0)

    @property
    def REFRESH_POLICY(self) -> str:
        """``"keep_fresh"`` (every active connection) or ``"on_use"`` (recently used ones,
        idle ones only to keep them alive, the rest when next used)."""
        value = getattr(django_settings, "LEXOFFICE_REFRESH_POLICY", "keep_fresh")
        if value not in REFRESH_POLICIES:
            raise ImproperlyConfigured(
                f'LEXOFFICE_REFRESH_POLICY must be "keep_fresh" or "on_use", not {value!r}.'
            )
        return str(value)

    @property
    def REFRESH_ACTIVE_WINDOW(self) -> timedelta:
        """``on_use``: how recently a connection must have been used to be kept fresh."""
        return _days("LEXOFFICE_REFRESH_ACTIVE_WINDOW", DEFAULT_ACTIVE_WINDOW)

    @property
    def IDLE_REFRESH_INTERVAL(self) -> timedelta:
        """``on_use``: how often an idle connection is refreshed to keep its refresh token alive."""
        return _days("LEXOFFICE_IDLE_REFRESH_INTERVAL", DEFAULT_IDLE_REFRESH_INTERVAL)

    @property
    def TIMEOUT(self) -> tuple[float, float]:
        """(connect, read) seconds for every HTTP call; one number sets both."""
        value = getattr(django_settings, "LEXOFFICE_TIMEOUT", (5, 30))
        timeout = _timeout_pair(value)
        if timeout is None:
            raise ImproperlyConfigured(
                "LEXOFFICE_TIMEOUT must be a number of seconds above 0, or a (connect, read) "
                f"pair of them such as (5, 30), not {value!r}."
            )
        return timeout

    @property
    def WEBHOOK_URL(self) -> str | None:
        """Absolute https URL of ``lexoffice:webhook`` as Lexware reaches it; ``None``: no
        subscriptions are made."""
        value = getattr(django_settings, "LEXOFFICE_WEBHOOK_URL", None)
        return str(value) if value else None

    @property
    def WEBHOOK_EVENTS(self) -> list[str]:
        """Event types each connection subscribes to (default ``["token.revoked"]``)."""
        value = getattr(django_settings, "LEXOFFICE_WEBHOOK_EVENTS", DEFAULT_WEBHOOK_EVENTS)
        if isinstance(value, str):
            value = value.split()
        events: list[str] = []
        for event in value:
            if str(event) not in events:
                events.append(str(event))
        return events

    @property
    def WEBHOOK_PUBLIC_KEYS(self) -> list[str]:
        """PEM texts of the keys that may verify ``X-Lxo-Signature`` (default: Lexware's)."""
        value = getattr(django_settings, "LEXOFFICE_WEBHOOK_PUBLIC_KEY", None)
        if not value:
            return [LEXWARE_WEBHOOK_PUBLIC_KEY]
        if isinstance(value, (str, bytes)):
            value = [value]
        return [item.decode("ascii") if isinstance(item, bytes) else str(item) for item in value]

    @property
    def WEBHOOK_RECEIVERS_IN_CELERY(self) -> bool:
        """``LEXOFFICE_WEBHOOK_USE_CELERY``: run ``event_received`` receivers in a Celery
        task instead of inline (needs the ``celery`` extra)."""
        return bool(getattr(django_settings, "LEXOFFICE_WEBHOOK_USE_CELERY", False))

    @property
    def AUTHORIZATION_LIFETIME(self) -> timedelta | None:
        """How long Lexware keeps an authorization; ``None``: no renewal reminders."""
        value = getattr(
            django_settings, "LEXOFFICE_AUTHORIZATION_LIFETIME", DEFAULT_AUTHORIZATION_LIFETIME
        )
        if value is None:
            return None
        lifetime = value if isinstance(value, timedelta) else _timedelta_of_days(value)
        if lifetime is None or lifetime <= timedelta(0):
            raise ImproperlyConfigured(
                "LEXOFFICE_AUTHORIZATION_LIFETIME must be a positive timedelta or number of "
                f"days such as 730, or None to turn the renewal reminders off, not {value!r}."
            )
        return lifetime


def _seconds(name: str, default: float) -> float:
    """Setting ``name``: a number of seconds, 0 or more (``default`` when unset)."""
    value = getattr(django_settings, name, default)
    seconds = _number(value)
    if seconds is None or seconds < 0:
        raise ImproperlyConfigured(
            f"{name} must be a number of seconds, 0 or more, such as {default:g}, not {value!r}."
        )
    return seconds


def _number(value: Any) -> float | None:
    """``value`` as a finite float (a number, or a string holding one as from the
    environment); ``None`` when it is not one. A bool is not a number here."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _timeout_pair(value: Any) -> tuple[float, float] | None:
    """``value`` as (connect, read) seconds, both above 0; ``None`` when it is not usable.

    A string is refused, not unpacked: ``"30"`` would become (3.0, 0.0), no read timeout."""
    if isinstance(value, (str, bytes)):
        return None
    items = (value, value) if isinstance(value, (int, float)) else value
    try:
        connect, read = (_number(item) for item in items)
    except (TypeError, ValueError):  # not iterable, or not two items
        return None
    if connect is None or read is None or connect <= 0 or read <= 0:
        return None
    return (connect, read)


def _timedelta_of_days(value: Any) -> timedelta | None:
    """A number of days (or a string holding one) as a ``timedelta``; ``None`` when it is
    not one."""
    days = _number(value)
    if days is None:
        return None
    try:
        return timedelta(days=days)
    except OverflowError:  # beyond timedelta's range
        return None


def _days(name: str, default: timedelta) -> timedelta:
    """A setting given as a ``timedelta`` or a positive number of days."""
    value = getattr(django_settings, name, default)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = timedelta(days=value)
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ImproperlyConfigured(
            f"{name} must be a positive timedelta or number of days, not {value!r}."
        )
    return value


settings = Settings()
