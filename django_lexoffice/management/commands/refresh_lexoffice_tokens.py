"""``manage.py refresh_lexoffice_tokens``: keep every connection's tokens fresh.

Safe from cron every few minutes, overlapping runs included. One summary line on
stdout, one line per connection at ``-v 2``, failures on stderr, exit status 1
when any refresh failed (so cron alerts).
"""

from __future__ import annotations

import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...batch import refresh_due_connections
from ...conf import settings as lexoffice_settings
from ...models import LexofficeConnection
from ...renewal import send_reauthorization_due


class Command(BaseCommand):
    help = (
        "Refresh the tokens of every active lexoffice connection whose access token expires "
        "within the margin, soonest first."
    )

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
        parser.add_argument("--user", metavar="USERNAME", help="Only this user's connections.")
        parser.add_argument(
            "--organization", metavar="ORGANIZATION_ID", help="Only this lexoffice organization."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be refreshed; change nothing."
        )
        parser.add_argument(
            "--limit", type=int, default=None, metavar="N", help="Visit at most N connections."
        )

    def handle(
        self,
        *,
        margin: int | None,
        force: bool,
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
        user_obj = self._get_user(user) if user else None
        margin = lexoffice_settings.REFRESH_MARGIN if margin is None else margin
        progress = self._progress_bar(verbosity)

        def report(connection: LexofficeConnection, outcome: str, detail: str) -> None:
            label = f"{connection.company_name or connection.organization_id} (#{connection.pk})"
            if progress is not None:
                progress.update(1)
            if outcome == "failed":
                self.stderr.write(f"Failed to refresh {label}: {detail}")
            elif verbosity >= 2:
                message = {
                    "would_refresh": f"Would refresh {label}",
                    "refreshed": f"Refreshed {label}",
                    "skipped": f"Skipped {label}: already fresh or in use by another run",
                    "reauthorization_required": f"{label} needs re-authorization by its user",
                }[outcome]
                self.stdout.write(message)

        try:
            summary = refresh_due_connections(
                margin=margin,
                force=force,
                user=user_obj,
                organization_id=organization,
                dry_run=dry_run,
                limit=limit,
                report=report,
            )
        finally:
            if progress is not None:
                progress.close()

        if not dry_run:
            self._remind_renewals(verbosity)
        if dry_run:
            count = summary.would_refresh
            self.stdout.write(
                f"Would refresh {count} connection{'s' if count != 1 else ''}."
                if count
                else "No connections need refreshing."
            )
            return
        if summary.total == 0:
            self.stdout.write("No connections need refreshing.")
            return
        self.stdout.write(
            f"Refreshed {summary.refreshed}, skipped {summary.skipped}, failed {summary.failed}, "
            f"re-authorization required {summary.reauthorization_required}."
        )
        if summary.aborted:
            raise CommandError(f"Stopped: {summary.aborted}", returncode=1)
        if summary.failed:
            raise CommandError(
                f"{summary.failed} refresh{'es' if summary.failed != 1 else ''} failed.",
                returncode=1,
            )

    # -- the two-year renewal (issue 15): kept apart from the refresh run --------------------

    def _remind_renewals(self, verbosity: int) -> None:
        """Send ``reauthorization_due`` once per authorization ending within 30 days."""

        def report(connection: LexofficeConnection, ends_at: Any) -> None:
            if verbosity >= 2:
                label = (
                    f"{connection.company_name or connection.organization_id} (#{connection.pk})"
                )
                self.stdout.write(f"{label}: authorization ends on {ends_at:%Y-%m-%d}")

        due = send_reauthorization_due(report)
        if due:
            self.stdout.write(
                f"{len(due)} connection{'s' if len(due) != 1 else ''} must be connected again "
                "soon (reauthorization_due sent)."
            )

    def _get_user(self, username: str) -> Any:
        user_model = get_user_model()
        try:
            return user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user with username {username!r}.") from None

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
