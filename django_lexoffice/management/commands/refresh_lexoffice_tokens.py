"""``manage.py refresh_lexoffice_tokens``: keep every connection's tokens fresh.

Safe from cron every few minutes, overlapping runs included. One summary line on
stdout, one line per connection at ``-v 2``, failures on stderr, exit status 1
when any refresh failed (so cron alerts).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.template.defaultfilters import pluralize

from ... import ratelimit
from ...batch import (
    WOULD_REFRESH,
    RefreshSummary,
    Selection,
    connection_label,
    refresh_due_connections,
    waiting_for_retry,
)
from ...dates import format_local
from ...models import LexofficeConnection
from ...policy import current_capacity
from ...renewal import send_reauthorization_due
from ...tokens import RefreshOutcome
from ..base import BatchCommand
from ..selection import add_selection_arguments, get_user

#: The ``-v 2`` line for each outcome ("{label}" is the company and row id).
OUTCOME_LINES: dict[str, str] = {
    WOULD_REFRESH: "Would refresh {label}",
    RefreshOutcome.REFRESHED: "Refreshed {label}",
    RefreshOutcome.SKIPPED: "Skipped {label}: already fresh or in use by another run",
    RefreshOutcome.WAITING_FOR_RETRY: "Skipped {label}: waiting to retry after a failure",
    RefreshOutcome.NOT_ACTIVE: "Skipped {label}: no longer active",
    RefreshOutcome.REAUTHORIZATION_REQUIRED: "{label} needs re-authorization by its user",
}


class Command(BatchCommand):
    help = (
        "Refresh the tokens of every active lexoffice connection whose access token expires "
        "within the margin, soonest first."
    )
    dry_run_help = "Show what would be refreshed; change nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--margin",
            type=int,
            default=None,
            metavar="SECONDS",
            help="Refresh tokens expiring within this many seconds "
            "(default: LEXOFFICE_REFRESH_MARGIN, 300).",
        )
        parser.add_argument("--force", action="store_true", help="Refresh every active connection.")
        parser.add_argument(
            "--retry-now",
            action="store_true",
            help="Also retry, at once, connections whose failed refresh waits for its retry.",
        )
        add_selection_arguments(parser)
        super().add_arguments(parser)  # --dry-run
        parser.add_argument(
            "--limit", type=int, default=None, metavar="N", help="Visit at most N connections."
        )

    def handle(
        self,
        *,
        margin: int | None,
        force: bool,
        retry_now: bool,
        user: str | None,
        organization: str | None,
        dry_run: bool,
        limit: int | None,
        verbosity: int,
        **options: Any,
    ) -> None:
        if margin is not None and margin < 0:
            raise CommandError("--margin must be zero or positive.")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        selection = Selection(
            margin=margin,
            force=force,
            retry_now=retry_now,
            user=get_user(user),
            organization_id=organization,
        )
        progress = self._progress_bar(verbosity)

        def report(connection: LexofficeConnection, outcome: str, detail: str) -> None:
            label = connection_label(connection)
            if progress is not None:
                progress.update(1)
            if outcome in OUTCOME_LINES:
                if verbosity >= 2:
                    self.stdout.write(OUTCOME_LINES[outcome].format(label=label))
            else:
                self.stderr.write(f"Failed to refresh {label}: {detail}")

        try:
            # A batch job: it takes only the rate-limit slots interactive callers leave.
            with ratelimit.background():
                summary = refresh_due_connections(
                    selection, dry_run=dry_run, limit=limit, report=report
                )
        finally:
            if progress is not None:
                progress.close()
        if summary.waiting and verbosity >= 2:
            waiting = waiting_for_retry(selection).only(
                "pk", "company_name", "organization_id", "next_attempt_at"
            )
            for connection in waiting.iterator():
                label = connection_label(connection)
                self.stdout.write(
                    f"Waiting to retry {label} after a failure; next attempt "
                    f"{_clock(connection.next_attempt_at)}"
                )
        self._write_summary(summary, dry_run=dry_run)
        self._write_capacity(verbosity)
        if not dry_run:
            self._remind_renewals(verbosity)
        if dry_run:
            return
        if summary.aborted:
            raise CommandError(f"Stopped: {summary.aborted}", returncode=1)
        if summary.failed:
            raise CommandError(
                f"{summary.failed} refresh{pluralize(summary.failed, 'es')} failed.",
                returncode=1,
            )

    def _write_summary(self, summary: RefreshSummary, *, dry_run: bool) -> None:
        if dry_run:
            count = summary.would_refresh
            line = (
                f"Would refresh {count} connection{pluralize(count)}."
                if count
                else "No connections need refreshing."
            )
        elif summary.total == 0:
            line = "No connections need refreshing." if not summary.waiting else ""
        else:
            line = (
                f"Refreshed {summary.refreshed}, skipped {summary.skipped}, "
                f"failed {summary.failed}, "
                f"re-authorization required {summary.reauthorization_required}."
            )
        if summary.waiting:
            # Never hide a due connection: a failed refresh waits for its retry.
            waiting = (
                f"{summary.waiting} waiting to retry after a failure; "
                f"next attempt {_clock(summary.next_retry_at)} "
                "(--retry-now retries at once)."
            )
            line = f"{line} {waiting}" if line else waiting[0].upper() + waiting[1:]
        self.stdout.write(line)

    # -- the two-year renewal (issue 15): kept apart from the refresh run --------------------

    def _remind_renewals(self, verbosity: int) -> None:
        """Send ``reauthorization_due`` once per authorization ending within 30 days."""

        def report(connection: LexofficeConnection, ends_at: Any) -> None:
            if verbosity >= 2:
                label = connection_label(connection)
                self.stdout.write(f"{label}: authorization ends on {ends_at:%Y-%m-%d}")

        due = send_reauthorization_due(report)
        if due:
            self.stdout.write(
                f"{len(due)} connection{pluralize(len(due))} must be connected again "
                "soon (reauthorization_due sent)."
            )

    def _write_capacity(self, verbosity: int) -> None:
        """What share of the request budget refresh needs (``-v 2``); a warning, with the fix,
        on stderr whenever it is too much."""
        capacity = current_capacity()
        if verbosity >= 2:
            self.stdout.write(str(capacity))
        if capacity.warning:
            self.stderr.write(f"Warning: {capacity} {capacity.warning}")

    def _progress_bar(self, verbosity: int) -> Any:
        """A tqdm progress bar on stderr when stdout is a terminal and tqdm is installed."""
        if verbosity < 1 or not getattr(sys.stdout, "isatty", lambda: False)():
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(
            desc="Refreshing lexoffice tokens", unit="connection", leave=False, file=sys.stderr
        )


def _clock(moment: datetime | None) -> str:
    """A time of day in the site's time zone ("14:05"), or "soon"."""
    return format_local(moment, "H:i") if moment else "soon"
