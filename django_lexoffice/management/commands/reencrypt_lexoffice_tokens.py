"""``manage.py reencrypt_lexoffice_tokens``: re-encrypt every token with the newest key.

Key rotation: put the new key first, ``FIELD_ENCRYPTION_KEY = [new, old]``, deploy,
run this command, then remove the old key.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.template.defaultfilters import pluralize

from ...batch import reencrypt_connections
from ...exceptions import TokenDecryptionError
from ..base import BatchCommand


class Command(BatchCommand):
    help = (
        "Re-encrypt the tokens of every lexoffice connection with the first key of "
        "FIELD_ENCRYPTION_KEY, row by row."
    )
    dry_run_help = "Check every row decrypts; change nothing."

    def handle(self, *, dry_run: bool, **options: Any) -> None:
        try:
            summary = reencrypt_connections(dry_run=dry_run)
        except TokenDecryptionError as exc:
            raise CommandError(str(exc)) from None
        count = summary.reencrypted
        noun = f"connection{pluralize(count)}"
        if dry_run:
            self.stdout.write(f"Would re-encrypt {count} {noun}; every row decrypts.")
        else:
            self.stdout.write(f"Re-encrypted {count} {noun} with the newest key.")
