"""Typed access to django-lexoffice's settings, read at use time.

Every setting is looked up on ``django.conf.settings`` each time it is used, so
``override_settings`` in tests just works. Nothing here imports the rest of the
app (see the module map in the docs).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

PRODUCTION_AUTH_BASE_URL = "https://app.lexware.de"
PRODUCTION_API_BASE_URL = "https://api.lexware.io"
SANDBOX_AUTH_BASE_URL = "https://app.lexware-sandbox.de"
SANDBOX_API_BASE_URL = "https://api.lexware-sandbox.io"

#: ``profile.read`` is always requested: ``/v1/profile`` identifies the account.
REQUIRED_SCOPES: tuple[str, ...] = ("profile.read",)

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
        default = SANDBOX_AUTH_BASE_URL if self.SANDBOX else PRODUCTION_AUTH_BASE_URL
        return str(getattr(django_settings, "LEXOFFICE_AUTH_BASE_URL", None) or default).rstrip("/")

    @property
    def API_BASE_URL(self) -> str:
        default = SANDBOX_API_BASE_URL if self.SANDBOX else PRODUCTION_API_BASE_URL
        return str(getattr(django_settings, "LEXOFFICE_API_BASE_URL", None) or default).rstrip("/")

    @property
    def AUTHORIZE_URL(self) -> str:
        return f"{self.AUTH_BASE_URL}/oauth2/authorize"

    @property
    def TOKEN_URL(self) -> str:
        return f"{self.AUTH_BASE_URL}/oauth2/token"

    @property
    def REVOKE_URL(self) -> str:
        return f"{self.AUTH_BASE_URL}/oauth2/revoke"

    @property
    def PROFILE_URL(self) -> str:
        return f"{self.API_BASE_URL}/v1/profile"

    @property
    def PASSWORD_RESET_URL(self) -> str:
        """Lexware's own "Passwort vergessen?" page on the configured host."""
        return f"{self.AUTH_BASE_URL}/passwort-vergessen"

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
        return int(getattr(django_settings, "LEXOFFICE_REFRESH_MARGIN", 300))

    @property
    def RATE_LIMIT(self) -> float:
        """Requests per second shared by every process using one client id."""
        return float(getattr(django_settings, "LEXOFFICE_RATE_LIMIT", DEFAULT_RATE_LIMIT))

    @property
    def RATE_LIMIT_CACHE(self) -> str:
        """The cache alias holding the shared token bucket."""
        return str(getattr(django_settings, "LEXOFFICE_RATE_LIMIT_CACHE", "default"))

    @property
    def RATE_LIMIT_MAX_WAIT(self) -> float:
        """Seconds a caller may wait for the shared bucket before giving up."""
        return float(getattr(django_settings, "LEXOFFICE_RATE_LIMIT_MAX_WAIT", 30.0))

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
        value = getattr(django_settings, "LEXOFFICE_TIMEOUT", (5, 30))
        if isinstance(value, (int, float)):
            return (float(value), float(value))
        connect, read = value
        return (float(connect), float(read))


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
