"""Typed exceptions raised by django-lexoffice.

Messages and attributes never contain a token, an authorization code, a PKCE
verifier or the client secret: they are safe to log and to show to operators.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured


class LexofficeError(Exception):
    """Base class of every error raised by django-lexoffice."""


class LexofficeConfigurationError(LexofficeError, ImproperlyConfigured):
    """The site's configuration is wrong; the message says what to write."""


class TokenDecryptionError(LexofficeConfigurationError):
    """A stored token cannot be decrypted with any key in ``FIELD_ENCRYPTION_KEY``."""


class UnsafeTokenWriteError(LexofficeError, TypeError):
    """Tokens may only be written by ``save()`` on one row, never by SQL expressions."""


class LexofficeHTTPError(LexofficeError):
    """A call to Lexware failed.

    ``status`` is the HTTP status (``None`` when no response arrived), ``body``
    Lexware's response body (truncated, tokens redacted) and ``request_id`` the
    request id header if Lexware sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.request_id = request_id


class TransientRefreshError(LexofficeHTTPError):
    """Refreshing failed for a reason that may go away (5xx, 429, timeout, network).

    Both stored tokens were kept; the failure was counted and recorded on the
    connection, and the next attempt is scheduled with backoff.
    """


class ReauthorizationRequired(LexofficeHTTPError):
    """The grant is gone (``invalid_grant``, revoked, or no refresh token):
    the user must connect again through ``lexoffice:login``."""


class ClientConfigurationError(LexofficeHTTPError, LexofficeConfigurationError):
    """Lexware rejected the client itself (``invalid_client`` / ``unauthorized_client``):
    the client id or secret is wrong, or Lexware deactivated the client."""


class ConnectionNotActive(LexofficeError):
    """The connection was revoked or needs re-authorization; nothing was sent."""


class RateLimitTimeout(LexofficeError):
    """Waited longer than ``LEXOFFICE_RATE_LIMIT_MAX_WAIT`` for the shared rate limit."""


class RateLimitUnavailable(LexofficeError):
    """The cache holding the shared rate limit (``LEXOFFICE_RATE_LIMIT_CACHE``) cannot be
    reached; nothing was sent to Lexware."""


class ConnectionBusy(LexofficeError):
    """A connection's row stayed locked too long (another worker's refresh, or the caller's
    own transaction); nothing was sent to Lexware."""


class OwnTransactionUnavailable(LexofficeError, RuntimeError):
    """New tokens must commit on their own, which SQLite cannot do inside the caller's
    transaction; nothing was sent to Lexware."""


class LexofficeAPIError(LexofficeHTTPError):
    """A Lexware API call answered with an error status."""


class ContractIssue(LexofficeAPIError):
    """HTTP 402: "Action not accessible due to a lexoffice contract issue" (for example the
    customer's lexoffice subscription lapsed). Not an authorization failure: the connection
    stays active; the client records it in ``last_error`` until a call succeeds again."""


class NoResponse(LexofficeAPIError):
    """A Lexware API call got no answer (connection failed or reset, or timed out).

    ``status`` is ``None``. ``maybe_processed`` is ``True`` when the request may
    have reached Lexware (a read timeout or a dropped connection after sending):
    for a write, check before sending it again.
    """

    def __init__(self, message: str, *, maybe_processed: bool, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.maybe_processed = maybe_processed


class ConnectionNotFound(LexofficeError, LookupError):
    """The user has no lexoffice connection (for that organization): send them to
    ``lexoffice:login`` to connect one."""


class MultipleConnections(LexofficeError, LookupError):
    """The user has several active lexoffice connections: pass ``organization_id``
    to choose one."""
