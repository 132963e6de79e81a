"""Sending to Lexware: the https guard, the one way into the shared rate limit, and the
calls to the authorization server (token and revocation endpoints).

Every request to Lexware takes its slot through :func:`take_slots`: the API client, the
callback's code exchange and profile call, refresh and revoke. Batch workers first take a
:func:`refresh_claim` on the row, so no two of them spend a slot on the same refresh.

Client authentication is HTTP Basic ``base64(client_id:client_secret)`` for a confidential
client (the only method Lexware documents); a public client sends ``client_id`` in the body
and no secret. Timeouts always apply and TLS certificates are always verified.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from django.core.cache import caches
from django.views.decorators.debug import sensitive_variables

from . import ratelimit
from .conf import settings as lexoffice_settings
from .exceptions import (
    LexofficeConfigurationError,
    LexofficeError,
    LexofficeHTTPError,
    RateLimitUnavailable,
)
from .redaction import describe_response

logger = logging.getLogger(__name__)


def require_secure_url(url: str) -> None:
    """Refuse to send credentials anywhere but https (plain http only to loopback, for tests).

    Raises :class:`~django_lexoffice.exceptions.LexofficeConfigurationError` before any
    byte leaves the machine.
    """
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return
    raise LexofficeConfigurationError(
        f"Refusing to send lexoffice credentials to {parts.scheme}://{parts.hostname}: "
        "LEXOFFICE_AUTH_BASE_URL and LEXOFFICE_API_BASE_URL must use https "
        "(plain http is allowed only to 127.0.0.1 or localhost, for tests)."
    )


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def take_slots(count: int = 1, *, bucket: Any = None) -> float:
    """Take ``count`` consecutive slots of the shared rate limit; return the seconds waited.

    The one way into the rate limit (``bucket`` overrides the shared bucket, for tests), in
    the caller's lane (interactive, or background inside :func:`ratelimit.background()
    <django_lexoffice.ratelimit.background>`). Raises :class:`RateLimitTimeout` when no slot
    comes within ``LEXOFFICE_RATE_LIMIT_MAX_WAIT``, and :class:`RateLimitUnavailable` when
    the cache behind the limit fails: nothing is sent to Lexware unpaced.
    """
    with _rate_limit_cache_failures():
        if bucket is not None:
            return float(bucket.acquire(count=count))
        return ratelimit.acquire(count=count)


#: How long a batch worker's claim on a refresh lasts at most: longer than a slot's wait and
#: the token request together at their defaults (30 s and 5 + 30 s), so only a crashed
#: worker's claim runs out; short enough that its row is due again well within the margin.
REFRESH_CLAIM_TIMEOUT = 120


@contextmanager
def refresh_claim(pk: int) -> Iterator[bool]:
    """Claim the refresh of connection ``pk`` for this batch worker while the block runs;
    yields ``False`` when another worker holds the claim (it is refreshing that row now).

    Workers that walk the same due rows would otherwise each take a rate-limit slot for the
    row, and all but one would then skip it under its row lock: N workers would share 1/N of
    the rate. The claim lives in the rate limit's cache (shared wherever the limit is), with
    :func:`ratelimit.cache_lock <django_lexoffice.ratelimit.cache_lock>`; the row lock stays
    what makes the refresh single-flight. Raises :class:`RateLimitUnavailable` when the
    cache fails.
    """
    cache = caches[lexoffice_settings.RATE_LIMIT_CACHE]
    held = ExitStack()
    try:
        with _rate_limit_cache_failures():
            key = f"lexoffice:refresh-claim:{pk}"
            held.enter_context(ratelimit.cache_lock(cache, key, timeout=REFRESH_CLAIM_TIMEOUT))
        claimed = True
    except ratelimit.CacheLockBusy:
        claimed = False
    try:
        yield claimed
    finally:
        try:
            held.close()
        except Exception:  # the claim runs out by itself; what the block did stands
            logger.warning("Could not release the refresh claim of lexoffice connection %s", pk)


@contextmanager
def _rate_limit_cache_failures() -> Iterator[None]:
    """Turn a failure of the rate limit's cache into :class:`RateLimitUnavailable`."""
    try:
        yield
    except (LexofficeError, ratelimit.CacheLockBusy):
        raise
    except Exception as exc:
        # Redis refused, timed out, or any other cache failure.
        raise RateLimitUnavailable(
            "The cache that holds the shared lexoffice rate limit "
            f"(LEXOFFICE_RATE_LIMIT_CACHE={lexoffice_settings.RATE_LIMIT_CACHE!r}) failed: "
            f"{type(exc).__name__}: {str(exc)[:200]}. Nothing was sent to Lexware."
        ) from None


@sensitive_variables()  # form data and client credentials, also in the frames below
def post_form(url: str, data: dict[str, str], *, paced: bool = False) -> requests.Response:
    """POST ``data`` form-encoded to Lexware's authorization server with client auth.

    Takes its rate-limit slot first, unless the caller already did (``paced=True``).
    """
    require_secure_url(url)
    if not paced:
        take_slots()
    client_id = lexoffice_settings.CLIENT_ID
    secret = lexoffice_settings.CLIENT_SECRET
    auth: tuple[str, str] | None
    if secret:
        auth = (client_id, secret)
    else:
        auth = None
        data = {**data, "client_id": client_id}
    try:
        return requests.post(
            url,
            data=data,
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=lexoffice_settings.TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException:
        raise  # classified by the caller
    except Exception as exc:
        # Anything else is a bug below us. Re-raised without its chain: the
        # frames inside requests hold the form data (tokens, secret), and Django's
        # error reports would show them.
        raise LexofficeHTTPError(
            f"Unexpected {type(exc).__name__} while calling Lexware: {exc}"[:300]
        ) from None


@sensitive_variables("token")
def revoke_token(token: str, *, paced: bool = False) -> str:
    """POST ``token`` to Lexware's revocation endpoint (RFC 7009); return "" when Lexware
    confirmed (HTTP 200), else a token-free description of what went wrong."""
    try:
        response = post_form(lexoffice_settings.REVOKE_URL, {"token": token}, paced=paced)
    except requests.RequestException as exc:
        return f"revoke failed: {type(exc).__name__}: no response"
    except LexofficeError as exc:
        return f"revoke not sent: {exc}"
    if response.status_code != 200:
        return f"revoke answered {describe_response(response, [token])}"
    return ""
