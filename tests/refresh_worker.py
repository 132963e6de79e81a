"""A worker process for the PostgreSQL concurrency tests.

``python -m tests.refresh_worker PK ROUNDS SIGNAL_DIR [MODE]``: for each round, wait for
the parent's ``go-N`` file, then act on connection PK and write the outcome to
``done-N-PID``. Modes:

* ``due`` (default): ``tokens.refresh`` of a connection the worker did not load;
* ``force``: ``tokens.refresh(force=True)`` of a copy loaded *before* the go signal, as
  a client does after a 401 with the token it sent;
* ``view``: a GET of a view that calls the API through ``LexofficeClient`` and then
  fails, in a site with ``ATOMIC_REQUESTS = True`` (the outcome is the HTTP status);
* ``batch``: ``batch.refresh_due_connections()`` over every due connection (PK is ignored);
  the outcome is JSON: ``refreshed`` and ``slots`` (rate-limit slots the run took).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import django


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings_worker")
    django.setup()
    from django.db import connection as db_connection
    from django.test import Client

    from django_lexoffice import batch, tokens
    from django_lexoffice.exceptions import LexofficeError
    from django_lexoffice.models import LexofficeConnection

    pk, rounds, signal_dir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "due"
    (signal_dir / f"ready-{os.getpid()}").write_text("ready")
    for round_number in range(rounds):
        go = signal_dir / f"go-{round_number}"
        loaded = None
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                return 3
            if (
                mode == "force"
                and loaded is None
                and (signal_dir / f"load-{round_number}").exists()
            ):
                loaded = LexofficeConnection.objects.get(pk=pk)
                db_connection.close()
                (signal_dir / f"loaded-{round_number}-{os.getpid()}").write_text("loaded")
            time.sleep(0.001)
        try:
            if mode == "batch":
                outcome = run_batch(batch, tokens)
            elif mode == "view":
                response = Client(raise_request_exception=False).get(f"/test/api-then-fail/{pk}/")
                outcome = str(response.status_code)
            elif mode == "force":
                outcome = tokens.refresh(loaded, force=True).outcome.value
            else:
                outcome = tokens.refresh(LexofficeConnection(pk=pk)).outcome.value
        except LexofficeError as exc:
            outcome = type(exc).__name__
        db_connection.close()
        # Written under another name, then renamed: the parent never reads half a file.
        partial = signal_dir / f"partial-{round_number}-{os.getpid()}"
        partial.write_text(outcome)
        partial.rename(signal_dir / f"done-{round_number}-{os.getpid()}")
    return 0


def run_batch(batch: Any, tokens: Any) -> str:
    """One refresh run, counting the rate-limit slots it takes."""
    slots = []
    take_slots = tokens.take_slots

    def counted(count: int = 1, **kwargs: Any) -> float:
        slots.append(count)
        return float(take_slots(count, **kwargs))

    tokens.take_slots = counted
    try:
        summary = batch.refresh_due_connections()
    finally:
        tokens.take_slots = take_slots
    return json.dumps({"refreshed": summary.refreshed, "slots": sum(slots)})


if __name__ == "__main__":
    sys.exit(main())
