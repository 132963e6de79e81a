"""The one place that refreshes and revokes lexoffice tokens.

Lexware rotates the refresh token on every refresh and two concurrent refreshes
with the same token break the connection. :func:`refresh` therefore locks the
row (``SELECT ... FOR UPDATE``), re-reads it, and calls Lexware only when no
other worker refreshed meanwhile. The admin, the management command, the API
client and the Celery task all go through here.

On SQLite the row lock is a no-op; the guarantees are tested on PostgreSQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import requests
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import ratelimit
from .conf import settings as lexoffice_settings
from .exceptions import (
    ClientConfigurationError,
    ConnectionNotActive,
    LexofficeConfigurationError,
    ReauthorizationRequired,
    TransientRefreshError,
)
from .http import describe_response, error_code, post_form
from .models import LexofficeConnection
from .signals import connection_revoked, reauthorization_required, tokens_refreshed

logger = logging.getLogger(__name__)

#: Backoff after transient failures: 1, 2, 4, ... minutes, at most 1 hour.
BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 3600


class RefreshOutcome(StrEnum):
    REFRESHED = "refreshed"
    SKIPPED = "skipped"  # another worker refreshed it meanwhile, or it is not due


@dataclass(frozen=True)
class RefreshResult:
    """What :func:`refresh` did. ``connection`` is the re-read, up-to-date row."""

    outcome: RefreshOutcome
    connection: LexofficeConnection

    @property
    def refreshed(self) -> bool:
        return self.outcome is RefreshOutcome.REFRESHED


def backoff_delay(failures: int) -> timedelta:
    """Delay before the next attempt after ``failures`` consecutive transient failures."""
    seconds = BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1)
    return timedelta(seconds=min(seconds, BACKOFF_MAX_SECONDS))


@sensitive_variables()  # tokens, and every frame below, hidden from error reports
def refresh(
    connection: LexofficeConnection,
    *,
    force: bool = False,
    margin: float | None = None,
    skip_locked: bool = False,
) -> RefreshResult:
    """Refresh ``connection``'s tokens, single-flight.

    Without ``force``, a connection whose access token is still valid for more
    than ``margin`` seconds (default ``LEXOFFICE_REFRESH_MARGIN``) is skipped:
    another worker has refreshed it since the caller read the row. With
    ``skip_locked``, a row locked by another worker is skipped instead of
    waited for (the management command uses this).

    Raises :class:`ReauthorizationRequired` (grant gone; the row is marked),
    :class:`TransientRefreshError` (tokens kept, failure recorded, retried later
    with backoff), :class:`ClientConfigurationError` (client id/secret refused)
    or :class:`ConnectionNotActive`.
    """
    margin = lexoffice_settings.REFRESH_MARGIN if margin is None else margin
    failure: Exception | None = None
    with transaction.atomic():
        rows = LexofficeConnection.objects.select_for_update(skip_locked=skip_locked).filter(
            pk=connection.pk
        )
        current = rows.first()
        if current is None:
            if skip_locked and LexofficeConnection.objects.filter(pk=connection.pk).exists():
                return RefreshResult(RefreshOutcome.SKIPPED, connection)
            raise LexofficeConnection.DoesNotExist(f"Connection {connection.pk} no longer exists.")
        if current.status != LexofficeConnection.Status.ACTIVE:
            raise ConnectionNotActive(
                f"Connection {current.pk} is {current.status}; the user must connect again."
            )
        if not force and not current.expires_within(margin):
            _copy_state(current, connection)
            return RefreshResult(RefreshOutcome.SKIPPED, current)
        refresh_token = current.refresh_token
        if not refresh_token:
            failure = _mark_reauthorization_required(current, "no refresh token stored")
        else:
            ratelimit.acquire()
            try:
                response = post_form(
                    lexoffice_settings.TOKEN_URL,
                    {"grant_type": "refresh_token", "refresh_token": refresh_token},
                )
            except requests.RequestException as exc:
                failure = _record_transient(current, None, f"{type(exc).__name__}: no response")
            else:
                failure = _handle_refresh_response(current, response)
    _copy_state(current, connection)
    if failure is not None:
        # Raised after the block, so the recorded failure is committed, not rolled back.
        if isinstance(failure, ReauthorizationRequired):
            reauthorization_required.send(
                sender=LexofficeConnection, connection=current, reason=str(failure)
            )
        raise failure
    tokens_refreshed.send(sender=LexofficeConnection, connection=current)
    return RefreshResult(RefreshOutcome.REFRESHED, current)


@sensitive_variables()
def _handle_refresh_response(
    current: LexofficeConnection, response: requests.Response
) -> Exception | None:
    status = response.status_code
    data = _json_or_none(response)
    if status == 200 and isinstance(data, dict) and _valid_token_payload(data):
        current.set_tokens(data["access_token"], data.get("refresh_token"), data["expires_in"])
        current.save()
        logger.info("Refreshed lexoffice connection %s", current.pk)
        return None
    code = error_code(data)
    detail = describe_response(response)
    if code == "invalid_grant":
        return _mark_reauthorization_required(current, f"refresh answered {detail}", status)
    if code in {"invalid_client", "unauthorized_client"}:
        _record_error(current, f"refresh answered {detail}")
        current.save(update_fields=["last_error", "last_error_at", "updated_at"])
        logger.error("Lexware refused the client: %s", detail)
        return ClientConfigurationError(
            f"Lexware refused the client ({code}): check SOCIAL_AUTH_LEXOFFICE_KEY and "
            "SOCIAL_AUTH_LEXOFFICE_SECRET, or ask Lexware whether the client was deactivated.",
            status=status,
            body=detail,
        )
    return _record_transient(current, status, detail)


def _record_transient(
    current: LexofficeConnection, status: int | None, detail: str
) -> TransientRefreshError:
    _record_error(current, f"refresh failed: {detail}")
    current.consecutive_failures += 1
    current.next_attempt_at = timezone.now() + backoff_delay(current.consecutive_failures)
    current.save(
        update_fields=[
            "last_error",
            "last_error_at",
            "consecutive_failures",
            "next_attempt_at",
            "updated_at",
        ]
    )
    logger.warning(
        "Refreshing lexoffice connection %s failed (%s); tokens kept, next attempt after %s",
        current.pk,
        detail,
        current.next_attempt_at.isoformat(),
    )
    return TransientRefreshError(
        f"Lexware could not refresh the tokens right now ({detail}); they were kept and "
        "the refresh will be retried.",
        status=status,
        body=detail,
    )


def _mark_reauthorization_required(
    current: LexofficeConnection, reason: str, status: int | None = None
) -> ReauthorizationRequired:
    current.status = LexofficeConnection.Status.REAUTHORIZATION_REQUIRED
    _record_error(current, reason)
    current.next_attempt_at = None
    current.save(
        update_fields=["status", "last_error", "last_error_at", "next_attempt_at", "updated_at"]
    )
    logger.warning("lexoffice connection %s needs re-authorization: %s", current.pk, reason)
    return ReauthorizationRequired(
        "Lexware no longer accepts this connection; the user must connect again.",
        status=status,
        body=reason,
    )


def _record_error(current: LexofficeConnection, message: str) -> None:
    current.last_error = message[:2000]
    current.last_error_at = timezone.now()


@sensitive_variables()
def revoke_at_lexware(connection: LexofficeConnection) -> bool:
    """POST the connection's refresh token to Lexware's revocation endpoint (RFC 7009).

    Returns ``True`` when Lexware answered 200 (or there was nothing to revoke).
    Never raises for network errors: the outcome is recorded on ``connection.last_error``
    (not saved) and logged.
    """
    token = connection.refresh_token or connection.access_token
    if not token:
        return True
    error = ""
    try:
        response = post_form(lexoffice_settings.REVOKE_URL, {"token": token})
    except requests.RequestException as exc:
        error = f"revoke failed: {type(exc).__name__}: no response"
    except LexofficeConfigurationError as exc:
        error = f"revoke not sent: {exc}"
    else:
        if response.status_code != 200:
            error = f"revoke answered {describe_response(response)}"
    if error:
        _record_error(connection, error)
        logger.warning(
            "Revoking lexoffice connection %s at Lexware failed: %s", connection.pk, error
        )
        return False
    return True


@sensitive_variables()
def revoke(connection: LexofficeConnection) -> bool:
    """Revoke the grant at Lexware (RFC 7009) and clear the local tokens.

    The connection ends ``revoked`` with no token stored whatever Lexware
    answers; returns ``True`` when Lexware confirmed (HTTP 200), ``False`` when
    it could not be reached or refused (recorded in ``last_error``).
    """
    with transaction.atomic():
        current = LexofficeConnection.objects.select_for_update().filter(pk=connection.pk).first()
        if current is None:
            current = connection
        current.last_error = ""
        current.last_error_at = None
        confirmed = revoke_at_lexware(current)
        current.access_token = ""
        current.refresh_token = ""
        current.expires_at = None
        current.status = LexofficeConnection.Status.REVOKED
        current.next_attempt_at = None
        if current.pk is not None:
            current.save()
    _copy_state(current, connection)
    connection_revoked.send(
        sender=LexofficeConnection, connection=current, revoked_at_lexware=confirmed
    )
    return confirmed


def _copy_state(source: LexofficeConnection, target: LexofficeConnection) -> None:
    """Bring the caller's instance up to date with the row we locked and wrote."""
    if source is target:
        return
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _valid_token_payload(data: dict[str, Any]) -> bool:
    access_token = data.get("access_token")
    refresh_token = data.get("refresh_token")
    expires_in = data.get("expires_in")
    return (
        isinstance(access_token, str)
        and 0 < len(access_token) <= 8192
        and (
            refresh_token is None or (isinstance(refresh_token, str) and len(refresh_token) <= 8192)
        )
        and isinstance(expires_in, (int, float))
        and not isinstance(expires_in, bool)
        and 0 < expires_in <= 10 * 365 * 86400
    )
