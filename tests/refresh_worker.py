"""A worker process for the PostgreSQL concurrency tests.

``python -m tests.refresh_worker PK ROUNDS SIGNAL_DIR``: for each round, wait for
the parent's ``go-N`` file, then refresh connection PK through
``django_lexoffice.tokens.refresh`` and write the outcome to ``done-N-PID``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import django


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings_worker")
    django.setup()
    from django.db import connection as db_connection

    from django_lexoffice import tokens
    from django_lexoffice.exceptions import LexofficeError
    from django_lexoffice.models import LexofficeConnection

    pk, rounds, signal_dir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    (signal_dir / f"ready-{os.getpid()}").write_text("ready")
    for round_number in range(rounds):
        go = signal_dir / f"go-{round_number}"
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                return 3
            time.sleep(0.001)
        try:
            outcome = tokens.refresh(LexofficeConnection(pk=pk)).outcome.value
        except LexofficeError as exc:
            outcome = type(exc).__name__
        db_connection.close()
        (signal_dir / f"done-{round_number}-{os.getpid()}").write_text(outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
