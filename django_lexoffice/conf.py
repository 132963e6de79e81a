"""Typed access to django-lexoffice's settings, read at use time.

Every setting is looked up on ``django.conf.settings`` each time it is used, so
``override_settings`` in tests just works. Nothing here imports the rest of the
app (see the module map in the docs).
"""

from __future__ import annotations

from django.conf import settings as django_settings

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

#: Lexware allows 2 requests per second per client; stay a little below it.
DEFAULT_RATE_LIMIT = 1.8


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
    def TIMEOUT(self) -> tuple[float, float]:
        value = getattr(django_settings, "LEXOFFICE_TIMEOUT", (5, 30))
        if isinstance(value, (int, float)):
            return (float(value), float(value))
        connect, read = value
        return (float(connect), float(read))


settings = Settings()
