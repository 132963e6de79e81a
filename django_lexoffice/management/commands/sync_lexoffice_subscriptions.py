"""``manage.py sync_lexoffice_subscriptions``: every active connection subscribed to
``LEXOFFICE_WEBHOOK_EVENTS`` at ``LEXOFFICE_WEBHOOK_URL``, nothing else of ours left.

Lists each connection's subscriptions at Lexware, creates what is missing, deletes ours
that are no longer wanted, and prunes webhook event records older than a week. One summary
line on stdout, one line per connection at ``-v 2``, failures on stderr, exit status 1 when
any connection failed (so cron alerts).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.template.defaultfilters import pluralize

from ...batch import connection_label
from ...models import LexofficeConnection
from ...subscriptions import SyncResult, sync_all
from ...webhooks import prune_events
from ..base import BatchCommand
from ..selection import add_selection_arguments, get_user


class Command(BatchCommand):
    help = (
        "Subscribe every active lexoffice connection to LEXOFFICE_WEBHOOK_EVENTS, delete our "
        "subscriptions that are no longer wanted, and prune old webhook event records."
    )
    dry_run_help = "Show what would change; change nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)  # --dry-run
        add_selection_arguments(parser)

    def handle(
        self,
        *,
        dry_run: bool,
        user: str | None,
        organization: str | None,
        verbosity: int,
        **options: Any,
    ) -> None:
        user_obj = get_user(user)

        def report(connection: LexofficeConnection, result: SyncResult | None, error: str) -> None:
            label = connection_label(connection)
            if result is None:
                self.stderr.write(f"Failed to sync {label}: {error}")
                return
            if verbosity >= 2:
                created = ", ".join(result.created) or "nothing"
                deleted = ", ".join(result.deleted) or "nothing"
                verb = ("would create", "would delete") if dry_run else ("created", "deleted")
                self.stdout.write(f"{label}: {verb[0]} {created}; {verb[1]} {deleted}")

        summary = sync_all(
            dry_run=dry_run, user=user_obj, organization_id=organization, report=report
        )
        connections = f"{summary.connections} connection{pluralize(summary.connections)}"
        if dry_run:
            self.stdout.write(
                f"Would create {summary.created} and delete {summary.deleted} subscriptions "
                f"for {connections}."
            )
        else:
            pruned = prune_events()
            self.stdout.write(
                f"Created {summary.created} and deleted {summary.deleted} subscriptions for "
                f"{connections}; failed {summary.failed}; pruned {pruned} old webhook events."
            )
        if summary.failed:
            raise CommandError(
                f"{summary.failed} connection{pluralize(summary.failed)} failed.",
                returncode=1,
            )
