"""Batch operations over many connections, behind the management commands and Celery tasks.

Rows are visited in keyset-paginated batches (never all loaded at once), so memory
and queries per connection stay flat however many connections a site has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import tokens
from .conf import settings as lexoffice_settings
from .exceptions import (
    ClientConfigurationError,
    ConnectionNotActive,
    LexofficeError,
    ReauthorizationRequired,
)
from .models import LexofficeConnection

BATCH_SIZE = 100

#: Called once per connection: (connection, outcome, detail). Outcomes: "refreshed",
#: "skipped", "failed", "reauthorization_required", "would_refresh".
Reporter = Callable[[LexofficeConnection, str, str], None]


@dataclass
class RefreshSummary:
    """Counts of one run of :func:`refresh_due_connections`."""

    refreshed: int = 0
    skipped: int = 0
    failed: int = 0
    reauthorization_required: int = 0
    would_refresh: int = 0
    aborted: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            self.refreshed
            + self.skipped
            + self.failed
            + self.reauthorization_required
            + self.would_refresh
        )


def due_connections(
    *,
    margin: float | None = None,
    force: bool = False,
    user: Any = None,
    organization_id: str | None = None,
    started_at: datetime | None = None,
) -> Any:
    """The active connections a refresh run should visit (a QuerySet, not evaluated).

    Rows refreshed since ``started_at`` are left out, so a batch never sees a row
    twice after its expiry moved on.
    """
    margin = lexoffice_settings.REFRESH_MARGIN if margin is None else margin
    queryset = (
        LexofficeConnection.objects.active()
        if force
        else LexofficeConnection.objects.due_for_refresh(margin)
    )
    if user is not None:
        queryset = queryset.filter(user=user)
    if organization_id:
        queryset = queryset.filter(organization_id=organization_id)
    if started_at is not None:
        queryset = queryset.filter(
            Q(last_refreshed_at__isnull=True) | Q(last_refreshed_at__lt=started_at)
        )
    return queryset


def iter_due(queryset: Any, batch_size: int = BATCH_SIZE) -> Iterator[LexofficeConnection]:
    """Yield rows soonest expiry first (unknown expiry first of all), batch by batch.

    Keyset pagination on (expires_at, pk): each batch is one small query, and
    rows need not be held in memory between batches.
    """
    fields = (
        "pk",
        "user_id",
        "organization_id",
        "company_name",
        "expires_at",
        "status",
        "last_refreshed_at",
    )
    last_pk = 0
    while True:  # first the rows whose expiry is unknown, by pk
        batch = list(
            queryset.filter(expires_at__isnull=True, pk__gt=last_pk)
            .order_by("pk")
            .only(*fields)[:batch_size]
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
        batch = list(page.order_by("expires_at", "pk").only(*fields)[:batch_size])
        if not batch:
            return
        # Taken before yielding: refreshing a row moves its expires_at on.
        next_cursor = (batch[-1].expires_at, batch[-1].pk)
        yield from batch
        if len(batch) < batch_size:
            return
        cursor = next_cursor


def refresh_due_connections(
    *,
    margin: float | None = None,
    force: bool = False,
    user: Any = None,
    organization_id: str | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    report: Reporter | None = None,
    batch_size: int = BATCH_SIZE,
) -> RefreshSummary:
    """Refresh every active connection expiring within ``margin`` seconds, soonest first.

    Safe to run from several processes or cron runs at once: a row another run
    holds is skipped (``SELECT ... FOR UPDATE SKIP LOCKED``), and a row that
    another run refreshed meanwhile is re-read and skipped, so Lexware sees one
    refresh per expiry. Stops early when Lexware refuses the client itself.
    """
    margin = lexoffice_settings.REFRESH_MARGIN if margin is None else margin
    summary = RefreshSummary()
    started_at = timezone.now()
    queryset = due_connections(
        margin=margin,
        force=force,
        user=user,
        organization_id=organization_id,
        started_at=started_at,
    )
    for connection in iter_due(queryset, batch_size):
        if limit is not None and summary.total >= limit:
            break
        if dry_run:
            summary.would_refresh += 1
            _report(report, connection, "would_refresh", "")
            continue
        try:
            outcome, detail = _refresh_one(connection, force=force, margin=margin)
        except ClientConfigurationError as exc:
            # Every other refresh would fail the same way, and Lexware blocks
            # clients that keep failing: stop the run.
            outcome, detail = "failed", str(exc)
            summary.aborted = detail
        setattr(summary, outcome, getattr(summary, outcome) + 1)
        if outcome == "failed":
            summary.errors.append(f"{_label(connection)}: {detail}")
        _report(report, connection, outcome, detail)
        if summary.aborted:
            break
    return summary


def _refresh_one(connection: LexofficeConnection, *, force: bool, margin: float) -> tuple[str, str]:
    try:
        result = tokens.refresh(connection, force=force, margin=margin, skip_locked=True)
    except ReauthorizationRequired as exc:
        return "reauthorization_required", str(exc)
    except ConnectionNotActive as exc:
        return "skipped", str(exc)
    except LexofficeConnection.DoesNotExist:
        return "skipped", "deleted meanwhile"
    except ClientConfigurationError:
        raise
    except LexofficeError as exc:
        return "failed", str(exc)
    return ("refreshed" if result.refreshed else "skipped"), ""


def _report(
    report: Reporter | None, connection: LexofficeConnection, outcome: str, detail: str
) -> None:
    if report is not None:
        report(connection, outcome, detail)


def _label(connection: LexofficeConnection) -> str:
    return f"{connection.company_name or connection.organization_id} (#{connection.pk})"


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
