"""The one place that refreshes and revokes lexoffice tokens, and names what a refresh did.

Lexware rotates the refresh token on every refresh and two concurrent refreshes
with the same token break the connection. :func:`refresh` therefore takes its
rate-limit slot, locks the row (``SELECT ... FOR UPDATE``), re-reads it, and calls
Lexware only when no other worker refreshed meanwhile: the decision is made under
the lock, against the access token the caller saw. The new pair commits in a
transaction of its own (:mod:`django_lexoffice.isolation`), so a caller's
transaction that rolls back cannot take it away.

:class:`RefreshOutcome` is the one vocabulary of what a refresh did;
:func:`attempt_refresh` returns it instead of raising. The admin, the management
command, the API client and the Celery tasks all go through here.

On SQLite the row lock is a no-op; the guarantees are tested on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import requests
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import policy
from .conf import settings as lexoffice_settings
from .exceptions import (
    ClientConfigurationError,
    ConnectionNotActive,
    LexofficeError,
    RateLimitTimeout,
    RateLimitUnavailable,
    ReauthorizationRequired,
    TokenDecryptionError,
    TransientRefreshError,
)
from .http import post_form, refresh_claim, revoke_token, take_slots
from .isolation import lock_timeout, run_committed
from .models import LexofficeConnection
from .redaction import describe_response, error_code, json_or_none
from .signals import connection_revoked, reauthorization_required, tokens_refreshed
from .token_response import parse_token_response

logger = logging.getLogger(__name__)

#: Backoff after transient failures: 1, 2, 4, ... minutes, at most 1 hour.
BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 3600


class RefreshOutcome(StrEnum):
    """What one refresh attempt did."""

    REFRESHED = "refreshed"
    #: Nothing to do: fresh already, refreshed by another worker meanwhile, or its row is
    #: being refreshed by another worker right now.
    SKIPPED = "skipped"
    #: A failed refresh waits for its retry (``next_attempt_at``, exponential backoff).
    WAITING_FOR_RETRY = "waiting_for_retry"
    #: Lexware no longer accepts the grant: the user must connect again.
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    #: Revoked, needs re-authorization already, or deleted: nothing was sent.
    NOT_ACTIVE = "not_active"
    #: Lexware could not refresh right now (5xx, 429, timeout, odd answer); retried later.
    TRANSIENT_FAILURE = "transient_failure"
    #: Lexware refused the client id or secret: an operator problem.
    CLIENT_REFUSED = "client_refused"
    #: No rate-limit slot in time, or the cache behind the rate limit failed.
    RATE_LIMITED = "rate_limited"

    @property
    def failed(self) -> bool:
        """Whether this outcome is a failure an operator should hear about."""
        return self in _FAILURES


_FAILURES = frozenset(
    {
        RefreshOutcome.TRANSIENT_FAILURE,
        RefreshOutcome.CLIENT_REFUSED,
        RefreshOutcome.RATE_LIMITED,
    }
)


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh did. ``connection`` is the up-to-date row; ``error`` the exception
    behind a failed outcome (token-free), for :func:`attempt_refresh`'s callers."""

    outcome: RefreshOutcome
    connection: LexofficeConnection
    error: LexofficeError | None = None

    @property
    def refreshed(self) -> bool:
        return self.outcome is RefreshOutcome.REFRESHED

    @property
    def detail(self) -> str:
        """The error's message, or "" (safe to log and show)."""
        return str(self.error) if self.error is not None else ""


def classify(error: Exception) -> RefreshOutcome:
    """The outcome an exception raised by :func:`refresh` stands for."""
    if isinstance(error, ReauthorizationRequired):
        return RefreshOutcome.REAUTHORIZATION_REQUIRED
    if isinstance(error, (ConnectionNotActive, LexofficeConnection.DoesNotExist)):
        return RefreshOutcome.NOT_ACTIVE
    if isinstance(error, ClientConfigurationError):
        return RefreshOutcome.CLIENT_REFUSED
    if isinstance(error, (RateLimitTimeout, RateLimitUnavailable)):
        return RefreshOutcome.RATE_LIMITED
    return RefreshOutcome.TRANSIENT_FAILURE


def backoff_delay(failures: int) -> timedelta:
    """Delay before the next attempt after ``failures`` consecutive transient failures."""
    seconds = BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1)
    return timedelta(seconds=min(seconds, BACKOFF_MAX_SECONDS))


def attempt_refresh(connection: LexofficeConnection, **options: Any) -> RefreshResult:
    """:func:`refresh`, reporting every outcome in the result instead of raising.

    For callers that handle many connections (the admin, the command, the tasks).
    """
    try:
        return refresh(connection, **options)
    except LexofficeConnection.DoesNotExist:
        gone = ConnectionNotActive(f"Connection {connection.pk} no longer exists.")
        return RefreshResult(RefreshOutcome.NOT_ACTIVE, connection, gone)
    except LexofficeError as exc:
        return RefreshResult(classify(exc), connection, exc)


@sensitive_variables()  # tokens, and every frame below, hidden from error reports
def refresh(
    connection: LexofficeConnection,
    *,
    force: bool = False,
    margin: float | None = None,
    skip_locked: bool = False,
    retry_now: bool = False,
) -> RefreshResult:
    """Refresh ``connection``'s tokens, single-flight.

    Without ``force``, a connection that does not need a refresh
    (:meth:`~django_lexoffice.models.LexofficeConnection.needs_refresh` with ``margin``,
    default ``LEXOFFICE_REFRESH_MARGIN``) is skipped; one whose failed refresh waits for its
    retry reports ``WAITING_FOR_RETRY`` unless ``retry_now``. Either way, if the row's
    access token is no longer the one ``connection`` holds, another worker refreshed
    meanwhile and nothing is sent. With ``skip_locked``, a row locked by another worker is
    skipped instead of waited for (the management command uses this).

    Raises :class:`ReauthorizationRequired` (grant gone; the row is marked),
    :class:`TransientRefreshError` (recorded, retried later with backoff),
    :class:`ClientConfigurationError` (client id/secret refused),
    :class:`ConnectionNotActive`, :class:`RateLimitTimeout`, :class:`RateLimitUnavailable`,
    :class:`~django_lexoffice.exceptions.ConnectionBusy` or
    :class:`~django_lexoffice.exceptions.OwnTransactionUnavailable`.
    """
    margin = lexoffice_settings.REFRESH_MARGIN if margin is None else margin
    seen = _seen_state(connection)
    wanted = force or retry_now or _caller_sees_need(connection, margin)

    def locked_refresh() -> tuple[RefreshResult, LexofficeError | None]:
        return _refresh_locked(
            connection,
            seen=seen,
            call=wanted,
            force=force,
            margin=margin,
            skip_locked=skip_locked,
            retry_now=retry_now,
        )

    # A batch worker (skip_locked) spends a rate-limit slot only on a row no other worker
    # is refreshing and nobody refreshed since it read the row.
    batch = skip_locked and wanted and connection.pk is not None
    with refresh_claim(connection.pk) if batch else nullcontext(True) as claimed:
        if not claimed or (batch and _refreshed_meanwhile(connection, seen)):
            return RefreshResult(RefreshOutcome.SKIPPED, connection)
        if wanted:
            take_slots()  # before the row lock: never hold a lock while waiting for a slot
        result, failure = run_committed(locked_refresh)
    _copy_state(result.connection, connection)
    if failure is not None:
        # Raised after the transaction, so the recorded failure is committed, not rolled back.
        if isinstance(failure, ReauthorizationRequired):
            reauthorization_required.send(
                sender=LexofficeConnection, connection=connection, reason=str(failure)
            )
        raise failure
    if result.refreshed:
        tokens_refreshed.send(sender=LexofficeConnection, connection=connection)
    return RefreshResult(result.outcome, connection)


class _Seen(NamedTuple):
    """What the caller's copy of the row says about the last refresh it knows of."""

    access_token: str | None
    last_refreshed_at: datetime | None
    loaded: bool

    def __repr__(self) -> str:  # never the token, wherever a repr ends up
        token = "set" if self.access_token else "none"
        return f"_Seen(access_token={token}, last_refreshed_at={self.last_refreshed_at!r})"


def _seen_state(connection: LexofficeConnection) -> _Seen | None:
    """The token (or, where tokens were not loaded, the refresh time) the caller saw;
    ``None`` for an instance that was never loaded from the database."""
    if connection.pk is None or connection._state.adding:
        return None
    deferred = connection.get_deferred_fields()
    token = None if "access_token" in deferred else (connection.access_token or None)
    loaded = "last_refreshed_at" not in deferred
    return _Seen(token, connection.last_refreshed_at if loaded else None, loaded)


def _refreshed_since(current: LexofficeConnection, seen: _Seen | None) -> bool:
    """Whether another worker refreshed the row after the caller read it."""
    if seen is None:
        return False
    if seen.access_token is not None:
        return current.access_token != seen.access_token
    return seen.loaded and current.last_refreshed_at != seen.last_refreshed_at


def _refreshed_meanwhile(connection: LexofficeConnection, seen: _Seen | None) -> bool:
    """Whether the row's last refresh moved on since the caller read it: a read without the
    lock, for a batch worker deciding whether to take a slot (the check under the lock
    still decides what is sent)."""
    if seen is None or not seen.loaded:
        return False
    rows = LexofficeConnection.objects.filter(pk=connection.pk)
    current = list(rows.values_list("last_refreshed_at", flat=True))
    return bool(current) and current[0] != seen.last_refreshed_at


def _caller_sees_need(connection: LexofficeConnection, margin: float) -> bool:
    if connection._state.adding or connection.get_deferred_fields() & policy.FIELDS:
        return True  # the caller did not load what decides it: ask under the lock
    return _needs_refresh(connection, margin)


def _needs_refresh(connection: LexofficeConnection, margin: float) -> bool:
    """Due for a refresh run (the policy) or for a caller about to use the token."""
    return connection.needs_refresh(margin) or connection.needs_refresh(margin, urgent=True)


def _refresh_locked(
    connection: LexofficeConnection,
    *,
    seen: _Seen | None,
    call: bool,
    force: bool,
    margin: float,
    skip_locked: bool,
    retry_now: bool,
) -> tuple[RefreshResult, LexofficeError | None]:
    pk = connection.pk
    issued: list[bool] = []  # set once Lexware issued new tokens (the old ones are dead then)
    try:
        with transaction.atomic(), lock_timeout(pk):
            rows = LexofficeConnection.objects.select_for_update(skip_locked=skip_locked)
            current = rows.filter(pk=pk).first()
            if current is None:
                if skip_locked and LexofficeConnection.objects.filter(pk=pk).exists():
                    return RefreshResult(RefreshOutcome.SKIPPED, connection), None
                raise LexofficeConnection.DoesNotExist(f"Connection {pk} no longer exists.")
            current.raise_unless_active()
            skip = _reason_to_skip(current, seen, call, force, margin, retry_now)
            if skip is not None:
                return RefreshResult(skip, current), None
            return RefreshResult(RefreshOutcome.REFRESHED, current), _call_lexware(
                current, issued.append
            )
    except DatabaseError as exc:
        if not issued:
            raise
        return RefreshResult(RefreshOutcome.REAUTHORIZATION_REQUIRED, connection), _not_stored(
            pk, exc
        )


def _reason_to_skip(
    current: LexofficeConnection,
    seen: _Seen | None,
    call: bool,
    force: bool,
    margin: float,
    retry_now: bool,
) -> RefreshOutcome | None:
    if _refreshed_since(current, seen):
        return RefreshOutcome.SKIPPED  # another worker refreshed since the caller looked
    if force or retry_now or _needs_refresh(current, margin):
        # Due. Only if the caller saw it too, and so took a rate-limit slot before the lock.
        return None if call else RefreshOutcome.SKIPPED
    if current.expires_within(margin):  # due, but a failed refresh waits for its retry
        return RefreshOutcome.WAITING_FOR_RETRY
    return RefreshOutcome.SKIPPED


@sensitive_variables()
def _call_lexware(
    current: LexofficeConnection, mark_issued: Callable[[bool], None]
) -> LexofficeError | None:
    """POST the refresh grant and store what came back; return the failure, if any."""
    refresh_token = current.refresh_token
    if not refresh_token:
        return _mark_reauthorization_required(current, "no refresh token stored")
    try:
        response = post_form(
            lexoffice_settings.TOKEN_URL,
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            paced=True,
        )
    except requests.RequestException as exc:
        return _record_transient(current, None, f"{type(exc).__name__}: no response")
    return _handle_refresh_response(current, response, mark_issued)


@sensitive_variables()
def _handle_refresh_response(
    current: LexofficeConnection,
    response: requests.Response,
    mark_issued: Callable[[bool], None],
) -> LexofficeError | None:
    status = response.status_code
    data = json_or_none(response)
    if status == 200 and isinstance(data, dict) and data.keys() & {"access_token", "refresh_token"}:
        mark_issued(True)
        return _store_grant(current, data)
    code = error_code(data)
    detail = describe_response(response, [current.refresh_token, current.access_token])
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


@sensitive_variables()
def _store_grant(current: LexofficeConnection, data: dict[str, Any]) -> LexofficeError | None:
    """Store a 200 answer. Lexware has rotated: a well-formed new refresh token is always
    kept, whatever is wrong with the rest."""
    grant = parse_token_response(data)
    problems = "; ".join(grant.problems)
    if grant.refresh_token_refused:
        return _mark_reauthorization_required(
            current, f"refresh answered HTTP 200 with {problems}", 200
        )
    if grant.access_token is None:
        # Keep the old access token (it may work until it expires); never lose a new
        # refresh token.
        kept = "tokens kept"
        if grant.refresh_token:
            current.refresh_token = grant.refresh_token
            kept = "the new refresh token was stored"
        failure = _record_transient(
            current, 200, f"HTTP 200 with {problems}", kept=kept, save=False
        )
        current.save()
        return failure
    current.set_tokens(grant.access_token, grant.refresh_token, grant.expires_in)
    current.save()
    if problems:
        logger.warning("lexoffice connection %s: refresh answered with %s", current.pk, problems)
    logger.info("Refreshed lexoffice connection %s", current.pk)
    return None


def _not_stored(pk: Any, exc: DatabaseError) -> ReauthorizationRequired:
    """Lexware rotated the tokens, but the database refused the new pair: the stored
    refresh token is dead. Say so loudly and record it where the row can still be written."""
    reason = (
        f"Lexware issued new tokens but storing them failed ({type(exc).__name__}); "
        "the old refresh token is no longer valid: the user must reconnect."
    )
    logger.error("lexoffice connection %s: %s", pk, reason)
    try:
        with transaction.atomic():
            row = LexofficeConnection.objects.select_for_update().filter(pk=pk).first()
            if row is not None:
                _mark_reauthorization_required(row, reason)
    except DatabaseError:
        logger.exception("lexoffice connection %s: could not record the lost tokens either", pk)
    return ReauthorizationRequired(reason, body=reason)


def _record_transient(
    current: LexofficeConnection,
    status: int | None,
    detail: str,
    *,
    kept: str = "tokens kept",
    save: bool = True,
) -> TransientRefreshError:
    _record_error(current, f"refresh failed: {detail}")
    current.consecutive_failures += 1
    current.next_attempt_at = timezone.now() + backoff_delay(current.consecutive_failures)
    if save:
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
        "Refreshing lexoffice connection %s failed (%s); %s, next attempt after %s",
        current.pk,
        detail,
        kept,
        current.next_attempt_at.isoformat(),
    )
    return TransientRefreshError(
        f"Lexware could not refresh the tokens right now ({detail}); {kept} and the refresh "
        "will be retried.",
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


# -- revocation --------------------------------------------------------------------------------


@sensitive_variables()
def revoke(connection: LexofficeConnection) -> bool:
    """Revoke the grant at Lexware (RFC 7009) and clear the local tokens.

    The connection ends ``revoked`` with no token stored whatever Lexware answers, in a
    transaction of its own; returns ``True`` when Lexware confirmed (HTTP 200) or there was
    nothing to revoke, ``False`` when it could not be reached or refused (recorded in
    ``last_error``). A row deleted meanwhile stays deleted: its deletion revoked the grant
    and sent the signal, so nothing is sent or saved.
    """
    slot_error = _take_revoke_slot()

    def locked_revoke() -> tuple[LexofficeConnection | None, bool]:
        with transaction.atomic(), lock_timeout(connection.pk):
            current = LexofficeConnection.objects.select_for_update().filter(pk=connection.pk)
            found = current.first()
            if found is None and connection.pk is not None:
                return None, True  # saving the caller's copy would bring the row back
            row = found or connection
            row.last_error = ""
            row.last_error_at = None
            confirmed = revoke_at_lexware(row, slot_error=slot_error)
            row.access_token = ""
            row.refresh_token = ""
            row.expires_at = None
            row.status = LexofficeConnection.Status.REVOKED
            row.next_attempt_at = None
            if row.pk is not None:
                row.save()
        return row, confirmed

    row, confirmed = run_committed(locked_revoke)
    if row is None:
        return confirmed
    _copy_state(row, connection)
    connection_revoked.send(
        sender=LexofficeConnection,
        connection=connection,
        revoked_at_lexware=confirmed,
        ended_in_lexoffice=False,
    )
    return confirmed


def revoke_before_delete(connection: LexofficeConnection) -> bool:
    """Revoke a connection's grant at Lexware as its row is deleted; send
    ``connection_revoked`` (with ``deleted=True``).

    Runs in the deleting transaction: the row lock makes it wait for a refresh in flight,
    then revokes the refresh token that refresh stored, never a stale one. Tokens that
    ``FIELD_ENCRYPTION_KEY`` cannot decrypt are not revoked, and the deletion goes on: an
    erasure must not depend on the key.
    """
    if connection.status == LexofficeConnection.Status.REVOKED:
        return True  # nothing to revoke (a reconnect would have made it active again)
    slot_error = _take_revoke_slot()
    row = connection
    try:
        with transaction.atomic():
            current = LexofficeConnection.objects.select_for_update().filter(pk=connection.pk)
            row = current.first() or connection
            if row.status == LexofficeConnection.Status.REVOKED:
                return True
            confirmed = revoke_at_lexware(row, slot_error=slot_error)
        why = "Lexware could not confirm the revocation"
    except TokenDecryptionError:
        confirmed, why = False, "FIELD_ENCRYPTION_KEY cannot decrypt its tokens to revoke them"
    if not confirmed:
        logger.warning(
            "lexoffice connection %s was deleted, but %s; the user can end it in lexoffice's "
            "settings.",
            connection.pk,
            why,
        )
    connection_revoked.send(
        sender=LexofficeConnection,
        connection=row,
        revoked_at_lexware=confirmed,
        ended_in_lexoffice=False,
        deleted=True,
    )
    return confirmed


def _take_revoke_slot() -> str:
    """Take the revocation's rate-limit slot before any row lock; "" or why it could not."""
    try:
        take_slots()
    except (RateLimitTimeout, RateLimitUnavailable) as exc:
        return f"revoke not sent: {exc}"
    return ""


@sensitive_variables()
def revoke_at_lexware(connection: LexofficeConnection, *, slot_error: str | None = None) -> bool:
    """POST the connection's refresh token to Lexware's revocation endpoint (RFC 7009).

    Returns ``True`` when Lexware answered 200 (or there was nothing to revoke). Never
    raises for network errors: the outcome is recorded on ``connection.last_error``
    (not saved) and logged. ``slot_error`` is for callers that took the rate-limit slot
    already ("" when they got one).
    """
    token = connection.refresh_token or connection.access_token
    if not token:
        return True
    if slot_error is None:
        error = revoke_token(token)
    else:
        error = slot_error or revoke_token(token, paced=True)
    if error:
        _record_error(connection, error)
        logger.warning(
            "Revoking lexoffice connection %s at Lexware failed: %s", connection.pk, error
        )
        return False
    return True


def _copy_state(source: LexofficeConnection, target: LexofficeConnection) -> None:
    """Bring the caller's instance up to date with the row we locked and wrote."""
    if source is target:
        return
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


# -- Ended inside lexoffice (webhook ``token.revoked``) ----------------------------------------


def end_from_lexware(connection: LexofficeConnection, *, event_date: datetime) -> bool:
    """Lexware says the grant is gone (``token.revoked``): end the connection here.

    Under the row lock, so it cannot interleave with a refresh of the same row: a refresh
    that got there first is committed and then ended; one that comes later finds the row
    revoked. Ends the connection only when it is still active-or-pending and was authorized
    before ``event_date`` (a stale event must not end a newer grant). Clears the tokens,
    marks the row ``revoked`` and ``ended_in_lexoffice`` and sends ``connection_revoked``
    (``revoked_at_lexware=True, ended_in_lexoffice=True``) on commit. Sends nothing to
    ``/oauth2/revoke``: Lexware already revoked the grant. Returns whether it ended it.
    Call it inside a transaction (the webhook view does); the signal waits for its commit.
    """
    with transaction.atomic(), lock_timeout(connection.pk):
        current = LexofficeConnection.objects.select_for_update().filter(pk=connection.pk).first()
        if current is None or current.status == LexofficeConnection.Status.REVOKED:
            return False
        if current.authorized_at >= event_date:
            return False
        current.access_token = ""
        current.refresh_token = ""
        current.expires_at = None
        current.status = LexofficeConnection.Status.REVOKED
        current.ended_in_lexoffice = True
        current.next_attempt_at = None
        current.save()
        # Lexware deletes a revoked grant's subscriptions: forget ours with it.
        current.subscriptions.all().delete()
        logger.info("lexoffice connection %s was ended in lexoffice", current.pk)
        transaction.on_commit(
            lambda: connection_revoked.send(
                sender=LexofficeConnection,
                connection=current,
                revoked_at_lexware=True,
                ended_in_lexoffice=True,
            ),
            robust=True,  # a failing receiver must not undo an answered, committed event
        )
    _copy_state(current, connection)
    return True
