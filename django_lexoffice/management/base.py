"""The base of the batch commands: every one of them has ``--dry-run``, which shows what
the run would do and changes nothing."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser


class BatchCommand(BaseCommand):
    """A command that works through many connections. ``add_arguments`` adds ``--dry-run``;
    a command with more options calls it where ``--dry-run`` belongs in its ``--help``."""

    #: What ``--dry-run`` does, in this command's words.
    dry_run_help: str

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help=self.dry_run_help)
