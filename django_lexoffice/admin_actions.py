"""The admin's actions on connections, and how each reports what it did.

Every action runs one function per selected connection that returns an outcome; the
action's table (:data:`REFRESH_OUTCOMES`, :data:`REVOKE_OUTCOMES`, :data:`SYNC_OUTCOMES`)
says how that outcome is reported: one message per outcome with its count, and an entry in
the history of each connection that changed. Refresh outcomes are
:class:`~django_lexoffice.tokens.RefreshOutcome`; the messages are whole translated
sentences per outcome, because German does not build them from fragments.

``LexofficeConnectionAdmin`` takes :class:`ConnectionActionsMixin`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from typing import Any, NamedTuple

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from . import subscriptions, tokens
from .exceptions import LexofficeError, TokenDecryptionError
from .models import LexofficeConnection
from .tokens import RefreshOutcome


class ActionOutcome(NamedTuple):
    """How one per-connection result of an admin action is reported: a message of this
    level once per outcome (formatted with ``{"count": n}``); with ``count`` 1 it is also
    the entry in the connection's admin history, unless the level is INFO (nothing
    happened to the row)."""

    level: int
    summary: Any


class RevokeOutcome(StrEnum):
    """What revoking one connection from the admin did."""

    REVOKED = "revoked"
    #: Disconnected here, but Lexware could not be reached or refused the revocation.
    UNCONFIRMED = "unconfirmed"
    ALREADY_REVOKED = "already_revoked"
    #: Nothing changed: ``FIELD_ENCRYPTION_KEY`` cannot decrypt the tokens to revoke them.
    UNREADABLE = "unreadable"


class SyncOutcome(StrEnum):
    """What syncing one connection's event subscriptions did."""

    SYNCED = "synced"
    FAILED = "failed"


#: How each refresh outcome is reported (the action forces the refresh, so a connection
#: never waits for its retry here).
REFRESH_OUTCOMES: dict[str, ActionOutcome] = {
    RefreshOutcome.REFRESHED: ActionOutcome(
        messages.SUCCESS,
        ngettext_lazy(
            "%(count)d connection refreshed.", "%(count)d connections refreshed.", "count"
        ),
    ),
    RefreshOutcome.SKIPPED: ActionOutcome(
        messages.INFO,
        ngettext_lazy(
            "%(count)d connection skipped: another worker refreshed it a moment ago.",
            "%(count)d connections skipped: another worker refreshed them a moment ago.",
            "count",
        ),
    ),
    RefreshOutcome.REAUTHORIZATION_REQUIRED: ActionOutcome(
        messages.WARNING,
        ngettext_lazy(
            "%(count)d connection needs re-authorization: its user must connect again.",
            "%(count)d connections need re-authorization: their users must connect again.",
            "count",
        ),
    ),
    RefreshOutcome.NOT_ACTIVE: ActionOutcome(
        messages.WARNING,
        ngettext_lazy(
            "%(count)d connection skipped: it is revoked or waits for re-authorization.",
            "%(count)d connections skipped: they are revoked or wait for re-authorization.",
            "count",
        ),
    ),
    RefreshOutcome.TRANSIENT_FAILURE: ActionOutcome(
        messages.ERROR,
        ngettext_lazy(
            "%(count)d refresh failed: Lexware unavailable. The tokens were kept and the "
            "refresh will be retried.",
            "%(count)d refreshes failed: Lexware unavailable. The tokens were kept and the "
            "refreshes will be retried.",
            "count",
        ),
    ),
    RefreshOutcome.CLIENT_REFUSED: ActionOutcome(
        messages.ERROR,
        ngettext_lazy(
            "%(count)d refresh failed: Lexware refused the client. Check "
            "SOCIAL_AUTH_LEXOFFICE_KEY and SOCIAL_AUTH_LEXOFFICE_SECRET.",
            "%(count)d refreshes failed: Lexware refused the client. Check "
            "SOCIAL_AUTH_LEXOFFICE_KEY and SOCIAL_AUTH_LEXOFFICE_SECRET.",
            "count",
        ),
    ),
    RefreshOutcome.RATE_LIMITED: ActionOutcome(
        messages.ERROR,
        ngettext_lazy(
            "%(count)d refresh not attempted: the shared rate limit stayed busy. Try again later.",
            "%(count)d refreshes not attempted: the shared rate limit stayed busy. "
            "Try again later.",
            "count",
        ),
    ),
}

REVOKE_OUTCOMES: dict[str, ActionOutcome] = {
    RevokeOutcome.REVOKED: ActionOutcome(
        messages.SUCCESS,
        ngettext_lazy(
            "%(count)d connection revoked at Lexware and disconnected.",
            "%(count)d connections revoked at Lexware and disconnected.",
            "count",
        ),
    ),
    RevokeOutcome.UNCONFIRMED: ActionOutcome(
        messages.WARNING,
        ngettext_lazy(
            "%(count)d connection disconnected, but Lexware did not confirm the revocation; "
            "its user can end the access in lexoffice's settings.",
            "%(count)d connections disconnected, but Lexware did not confirm the revocations; "
            "their users can end the access in lexoffice's settings.",
            "count",
        ),
    ),
    RevokeOutcome.UNREADABLE: ActionOutcome(
        messages.ERROR,
        ngettext_lazy(
            "%(count)d connection not revoked: FIELD_ENCRYPTION_KEY cannot decrypt its tokens. "
            "Nothing was changed.",
            "%(count)d connections not revoked: FIELD_ENCRYPTION_KEY cannot decrypt their "
            "tokens. Nothing was changed.",
            "count",
        ),
    ),
    RevokeOutcome.ALREADY_REVOKED: ActionOutcome(
        messages.INFO,
        ngettext_lazy(
            "%(count)d connection was already revoked.",
            "%(count)d connections were already revoked.",
            "count",
        ),
    ),
}

SYNC_OUTCOMES: dict[str, ActionOutcome] = {
    SyncOutcome.SYNCED: ActionOutcome(
        messages.SUCCESS,
        ngettext_lazy(
            "Synced the subscriptions of %(count)d connection.",
            "Synced the subscriptions of %(count)d connections.",
            "count",
        ),
    ),
    SyncOutcome.FAILED: ActionOutcome(
        messages.ERROR,
        ngettext_lazy(
            "Syncing the subscriptions of %(count)d connection failed.",
            "Syncing the subscriptions of %(count)d connections failed.",
            "count",
        ),
    ),
}


def refresh_one(connection: LexofficeConnection) -> str:
    """Force a refresh through :func:`django_lexoffice.tokens.attempt_refresh`."""
    return tokens.attempt_refresh(connection, force=True).outcome


def revoke_one(connection: LexofficeConnection) -> str:
    """Revoke through :func:`django_lexoffice.tokens.revoke`, unless revoked already."""
    if connection.status == LexofficeConnection.Status.REVOKED:
        return RevokeOutcome.ALREADY_REVOKED
    try:
        confirmed = tokens.revoke(connection)
    except TokenDecryptionError:
        # Clearing tokens nobody could revoke would lose the grant for good: a fixed key
        # can still revoke them later.
        return RevokeOutcome.UNREADABLE
    return RevokeOutcome.REVOKED if confirmed else RevokeOutcome.UNCONFIRMED


def sync_one(connection: LexofficeConnection) -> str:
    """Create missing and delete unwanted event subscriptions of one connection."""
    try:
        subscriptions.sync_connection(connection)
    except (LexofficeError, ValueError):
        return SyncOutcome.FAILED
    return SyncOutcome.SYNCED


class ConnectionActionsMixin:
    """The actions of ``LexofficeConnectionAdmin``, their permissions, and deletion that
    revokes first.

    Permissions (``django_lexoffice.<codename>``): ``refresh_lexofficeconnection`` for
    "Refresh tokens now" and "Sync subscriptions", ``revoke_lexofficeconnection`` for
    "Revoke and disconnect", ``delete_lexofficeconnection`` for deleting (each grant is
    revoked at Lexware first).
    """

    opts: Any
    log_change: Any
    message_user: Any

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        """May the user run "Refresh tokens now" and "Sync subscriptions"?"""
        return self._has_custom_permission(request, "refresh")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        """May the user run "Revoke and disconnect"?"""
        return self._has_custom_permission(request, "revoke")

    def _has_custom_permission(self, request: HttpRequest, action: str) -> bool:
        codename = get_permission_codename(action, self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(description=_("Refresh tokens now"), permissions=["refresh"])
    def refresh_tokens(self, request: HttpRequest, queryset: QuerySet[LexofficeConnection]) -> None:
        """Refresh each selected connection (forced, paced by the rate limit)."""
        self._run(request, queryset, refresh_one, REFRESH_OUTCOMES)

    @admin.action(description=_("Revoke and disconnect"), permissions=["revoke"])
    def revoke_connections(
        self, request: HttpRequest, queryset: QuerySet[LexofficeConnection]
    ) -> None:
        """Revoke each selected connection at Lexware and clear its tokens."""
        self._run(request, queryset, revoke_one, REVOKE_OUTCOMES)

    @admin.action(description=_("Sync subscriptions"), permissions=["refresh"])
    def sync_subscriptions(
        self, request: HttpRequest, queryset: QuerySet[LexofficeConnection]
    ) -> None:
        """Create missing and delete unwanted event subscriptions of the selected active
        connections."""
        active = queryset.filter(status=LexofficeConnection.Status.ACTIVE)
        self._run(request, active, sync_one, SYNC_OUTCOMES)

    @admin.action(
        permissions=["delete"],
        description=_("Revoke at Lexware and delete selected %(verbose_name_plural)s"),
    )
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        """Django's bulk delete (with its confirmation page), relabelled: it revokes first.

        It stays beside "Revoke and disconnect" because erasing a user's data (GDPR) must
        also remove the row; an action of this name replaces the site-wide one.
        """
        return delete_selected(self, request, queryset)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # One by one, each in its own transaction, so the pre_delete receiver revokes
        # each grant at Lexware before its row goes. A queryset delete would hold one
        # transaction open across every call to Lexware.
        for connection in queryset:
            connection.delete()

    def _run(
        self,
        request: HttpRequest,
        queryset: QuerySet[LexofficeConnection],
        handle: Callable[[LexofficeConnection], str],
        outcomes: dict[str, ActionOutcome],
    ) -> None:
        counts: Counter[str] = Counter()
        for connection in queryset:
            outcome = handle(connection)
            counts[outcome] += 1
            if outcomes[outcome].level != messages.INFO:
                self.log_change(request, connection, outcomes[outcome].summary % {"count": 1})
        for outcome, report in outcomes.items():
            if counts[outcome]:
                self.message_user(
                    request, report.summary % {"count": counts[outcome]}, report.level
                )
