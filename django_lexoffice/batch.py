"""Batch operations over many connections, behind the management commands and Celery tasks.

Rows are visited in keyset-paginated batches (never all loaded at once), so memory
and queries per connection stay flat however many connections a site has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from . import policy, tokens
from .models import LexofficeConnection, LexofficeConnectionQuerySet
from .tokens import RefreshOutcome

BATCH_SIZE = 100

#: Called once per connection: (connection, outcome, detail). The outcome is a
#: :class:`~django_lexoffice.tokens.RefreshOutcome` value, or "would_refresh" on a dry run.
Reporter = Callable[[LexofficeConnection, str, str], None]

#: Fields a refresh run reads from each row before locking it (tokens are read under the lock).
_ROW_FIELDS = ("pk", "user_id", "organization_id", "company_name", *sorted(policy.FIELDS))


@dataclass
class RefreshSummary:
    """Counts of one run of :func:`refresh_due_connections`, by outcome."""

    counts: Counter[str] = field(default_factory=Counter)
    aborted: str = ""
    errors: list[str] = field(default_factory=list)
    #: Due connections left alone because a failed refresh waits for its retry.
    waiting: int = 0
    next_retry_at: datetime | None = None

    @property
    def refreshed(self) -> int:
        return self.counts[RefreshOutcome.REFRESHED]

    @property
    def skipped(self) -> int:
        return self.counts[RefreshOutcome.SKIPPED] + self.counts[RefreshOutcome.NOT_ACTIVE]

    @property
    def failed(self) -> int:
        return sum(count for outcome, count in self.counts.items() if _is_failure(outcome))

    @property
    def reauthorization_required(self) -> int:
        return self.counts[RefreshOutcome.REAUTHORIZATION_REQUIRED]

    @property
    def would_refresh(self) -> int:
        return self.counts[WOULD_REFRESH]

    @property
    def total(self) -> int:
        """Connections visited (those waiting for their retry are not visited)."""
        return sum(self.counts.values())


WOULD_REFRESH = "would_refresh"


def _is_failure(outcome: str) -> bool:
    return outcome in RefreshOutcome.__members__.values() and RefreshOutcome(outcome).failed


@dataclass(frozen=True)
class Selection:
    """Which connections a refresh run visits: the options of ``refresh_lexoffice_tokens``
    and of the Celery fan-out, in one value."""

    #: Refresh tokens expiring within this many seconds (``None``: ``LEXOFFICE_REFRESH_MARGIN``).
    margin: float | None = None
    #: Every active connection, due or not.
    force: bool = False
    #: Also, at once, the due connections whose failed refresh waits for its retry.
    retry_now: bool = False
    #: Only this user's connections.
    user: Any = None
    #: Only this lexoffice organization's connections.
    organization_id: str | None = None

    def narrow(self, queryset: LexofficeConnectionQuerySet) -> LexofficeConnectionQuerySet:
        """``queryset`` cut down to the user and organization asked for."""
        return queryset.narrowed_to(user=self.user, organization_id=self.organization_id)


#: Every active connection that is due, with the setting's margin.
EVERY_DUE = Selection()


def due_connections(selection: Selection = EVERY_DUE, *, started_at: datetime | None = None) -> Any:
    """The active connections a refresh run should visit (a QuerySet, not evaluated).

    Those whose failed refresh waits for its retry are left out unless ``retry_now``.
    Rows refreshed since ``started_at`` are left out, so a batch never sees a row
    twice after its expiry moved on.
    """
    connections = LexofficeConnection.objects
    if selection.force:
        queryset = connections.active()
    elif selection.retry_now:
        queryset = connections.active().expiring(selection.margin)
    else:
        queryset = connections.due_for_refresh(selection.margin)
    if started_at is not None:
        queryset = queryset.filter(
            Q(last_refreshed_at__isnull=True) | Q(last_refreshed_at__lt=started_at)
        )
    return selection.narrow(queryset)


def waiting_for_retry(selection: Selection = EVERY_DUE) -> Any:
    """The due connections whose failed refresh waits for its retry (a QuerySet), soonest
    retry first."""
    queryset = LexofficeConnection.objects.waiting_for_retry(selection.margin)
    return selection.narrow(queryset).order_by("next_attempt_at", "pk")


def load_row(pk: int) -> LexofficeConnection | None:
    """Connection ``pk`` with the fields a refresh decision reads (its tokens stay encrypted
    until needed), or ``None`` when it is gone."""
    return LexofficeConnection.objects.only(*_ROW_FIELDS).filter(pk=pk).first()


def iter_due(queryset: Any, batch_size: int = BATCH_SIZE) -> Iterator[LexofficeConnection]:
    """Yield rows soonest expiry first (unknown expiry first of all), batch by batch.

    Keyset pagination on (expires_at, pk): each batch is one small query, and
    rows need not be held in memory between batches.
    """
    last_pk = 0
    while True:  # first the rows whose expiry is unknown, by pk
        batch = list(
            queryset.filter(expires_at__isnull=True, pk__gt=last_pk)
            .order_by("pk")
            .only(*_ROW_FIELDS)[:batch_size]
        )
        yield from batch
        if len(batch) < batch_size:
            break
        last_pk = batch[-1].pk
    cursor: tuple[datetime, int] | None = None
    while True:
        page = queryset.filter(expires_at__isnull=False)
        if cursor is not None:
            page = page.filter(
                Q(expires_at__gt=cursor[0]) | Q(expires_at=cursor[0], pk__gt=cursor[1])
            )
        batch = list(page.order_by("expires_at", "pk").only(*_ROW_FIELDS)[:batch_size])
        if not batch:
            return
        # Taken before yielding: refreshing a row moves its expires_at on.
        next_cursor = (batch[-1].expires_at, batch[-1].pk)
        yield from batch
        if len(batch) < batch_size:
            return
        cursor = next_cursor


def refresh_due_connections(
    selection: Selection = EVERY_DUE,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    report: Reporter | None = None,
    batch_size: int = BATCH_SIZE,
) -> RefreshSummary:
    """Refresh every connection of ``selection`` whose token expires within its margin,
    soonest first.

    Connections whose failed refresh waits for its retry are counted in the summary
    (``waiting``, ``next_retry_at``) and left alone, unless ``retry_now``. Safe to run
    from several processes or cron runs at once: a row another run holds is skipped
    (``SELECT ... FOR UPDATE SKIP LOCKED``), and a row that another run refreshed
    meanwhile is re-read and skipped, so Lexware sees one refresh per expiry. Stops
    early when Lexware refuses the client itself.
    """
    summary = RefreshSummary()
    if not (selection.force or selection.retry_now):
        waiting = waiting_for_retry(selection)
        row = waiting.aggregate(count=Count("pk"), soonest=Min("next_attempt_at"))
        summary.waiting, summary.next_retry_at = row["count"], row["soonest"]
    queryset = due_connections(selection, started_at=timezone.now())
    for connection in iter_due(queryset, batch_size):
        if limit is not None and summary.total >= limit:
            break
        if dry_run:
            summary.counts[WOULD_REFRESH] += 1
            _report(report, connection, WOULD_REFRESH, "")
            continue
        result = tokens.attempt_refresh(
            connection,
            force=selection.force,
            retry_now=selection.retry_now,
            margin=selection.margin,
            skip_locked=True,
        )
        summary.counts[result.outcome] += 1
        if result.outcome.failed:
            summary.errors.append(f"{connection_label(connection)}: {result.detail}")
        _report(report, connection, result.outcome, result.detail)
        if result.outcome is RefreshOutcome.CLIENT_REFUSED:
            # Every other refresh would fail the same way, and Lexware blocks
            # clients that keep failing: stop the run.
            summary.aborted = result.detail
            break
    return summary


def _report(
    report: Reporter | None, connection: LexofficeConnection, outcome: str, detail: str
) -> None:
    if report is not None:
        report(connection, outcome, detail)


def connection_label(connection: LexofficeConnection) -> str:
    """``Testfirma GmbH (#12)``: the company (or organization id) and the row id, as batch
    runs name a connection in their errors and the commands' output."""
    return f"{connection.display_name} (#{connection.pk})"


@dataclass
class ReencryptSummary:
    reencrypted: int = 0


def reencrypt_connections(
    *, dry_run: bool = False, batch_size: int = BATCH_SIZE, report: Reporter | None = None
) -> ReencryptSummary:
    """Re-encrypt every connection's tokens with the newest key (first of FIELD_ENCRYPTION_KEY).

    Row by row with ``save()`` under a row lock (never ``bulk_update()``, which
    django-encrypted-model-fields corrupts). Rows that fail to decrypt raise
    :class:`~django_lexoffice.exceptions.TokenDecryptionError` naming the problem.
    """
    summary = ReencryptSummary()
    last_pk = 0
    while True:
        pks = list(
            LexofficeConnection.objects.filter(pk__gt=last_pk)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        for pk in pks:
            with transaction.atomic():
                connection = LexofficeConnection.objects.select_for_update().filter(pk=pk).first()
                if connection is None:
                    continue
                if not dry_run:
                    # Decrypted on load, encrypted with the first key on save.
                    connection.save(update_fields=["access_token", "refresh_token"])
            summary.reencrypted += 1
            _report(report, connection, "would_reencrypt" if dry_run else "reencrypted", "")
        if len(pks) < batch_size:
            return summary
        last_pk = pks[-1]
