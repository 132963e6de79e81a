"""Worker processes of the benchmarks; each prints one JSON object on stdout.

``python -m benchmarks.worker rss``
    refresh every due connection against the instant token endpoint; peak RSS before/after,
    measured in a forked child (see :func:`in_fresh_child`).
``python -m benchmarks.worker client PK SECONDS SIGNAL_DIR``
    write ``ready-PID``, wait for ``start`` (an epoch time), then ``GET /v1/profile`` through
    ``LexofficeClient`` until SECONDS have passed; count answers and errors.
``python -m benchmarks.worker background SECONDS SIGNAL_DIR [LANE]``
    after the common start, refresh due connections (``batch.refresh_due_connections``) inside
    ``ratelimit.background()`` (with LANE ``interactive``: without it, the "before" control)
    until nothing is due or SECONDS have passed (0: no time limit); count refreshes.
``python -m benchmarks.worker interactive PK SECONDS EVERY SIGNAL_DIR``
    one warm-up call, then after the common start ``GET /v1/profile`` through
    ``LexofficeClient`` every EVERY seconds for SECONDS; record each call's wait for a slot.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django

Result = dict[str, Any]


def wait_for_start(signals: Path) -> float:
    """Say ``ready-PID``, wait for the runner's ``start`` file, sleep until that epoch time."""
    (signals / f"ready-{os.getpid()}").write_text("ready")
    start_file = signals / "start"
    deadline = time.monotonic() + 60
    while not start_file.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no start signal")
        time.sleep(0.005)
    start = float(start_file.read_text())
    time.sleep(max(0.0, start - time.time()))
    return start


def client_worker(pk: int, seconds: float, signals: Path) -> Result:
    from django_lexoffice.client import LexofficeClient
    from django_lexoffice.exceptions import LexofficeError
    from django_lexoffice.models import LexofficeConnection

    connection = LexofficeConnection.objects.get(pk=pk)
    start = wait_for_start(signals)
    ok = errors = 0
    with LexofficeClient(connection) as client:
        # Bounded twice: by time, and by a count no rate limit would ever allow.
        for _ in range(int(seconds * 100)):
            if time.time() >= start + seconds:
                break
            try:
                client.get("/v1/profile").close()
                ok += 1
            except LexofficeError as exc:
                errors += 1
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return {"ok": ok, "errors": errors}


class _TimeUp(Exception):
    """The background worker's time is over (raised between two refreshes)."""


def background_worker(seconds: float, signals: Path, lane: str) -> Result:
    from contextlib import nullcontext

    from django_lexoffice import ratelimit
    from django_lexoffice.batch import refresh_due_connections

    start = wait_for_start(signals)
    deadline = start + seconds if seconds > 0 else float("inf")
    outcomes: dict[str, int] = {}

    def report(connection: Any, outcome: str, detail: str) -> None:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if time.time() >= deadline:
            raise _TimeUp

    lane_block = ratelimit.background() if lane == "background" else nullcontext()
    with lane_block:
        try:
            refresh_due_connections(report=report)
        except _TimeUp:
            pass
    return {"outcomes": outcomes}


def interactive_worker(pk: int, seconds: float, every: float, signals: Path) -> Result:
    from django_lexoffice.client import LexofficeClient
    from django_lexoffice.exceptions import LexofficeError
    from django_lexoffice.models import LexofficeConnection
    from django_lexoffice.ratelimit import SharedTokenBucket

    waits: list[float] = []
    acquire = SharedTokenBucket.acquire

    def recording_acquire(self: SharedTokenBucket, *args: Any, **kwargs: Any) -> float:
        waited = acquire(self, *args, **kwargs)
        waits.append(waited)
        return waited

    # Wherever the client takes its slot, it is this method: record what it waited.
    SharedTokenBucket.acquire = recording_acquire  # type: ignore[method-assign]
    connection = LexofficeConnection.objects.get(pk=pk)
    with LexofficeClient(connection) as client:
        # Warm up (HTTP and Redis connections, the Lua script) before the measured calls.
        client.get("/v1/profile").close()
        waits.clear()
        start = wait_for_start(signals)
        ok = errors = 0
        for number in range(int(seconds / every)):
            # Half a period in, so the background workers are at work when the first call comes.
            time.sleep(max(0.0, start + (number + 0.5) * every - time.time()))
            try:
                client.get("/v1/profile").close()
                ok += 1
            except LexofficeError as exc:
                errors += 1
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return {"ok": ok, "errors": errors, "waits": waits}


def in_fresh_child(work: Callable[[], Result]) -> Result:
    """Run ``work`` in a forked child and return its result.

    On Linux a process's ``ru_maxrss`` survives ``execve``: a worker started by a large parent
    reports at least the parent's peak (the runner's, after creating 10,000 rows). A child
    forked from this still small process starts a fresh account (its peak counts from the
    ~10 MiB it shares with us), so its ``ru_maxrss`` measures its own work alone.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        code = 0
        try:
            payload = json.dumps(work()).encode()
        except BaseException:
            payload = json.dumps({"error": traceback.format_exc()}).encode()
            code = 1
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as data:
        result: Result = json.loads(data.read() or b"{}")
    os.waitpid(pid, 0)
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


def rss() -> Result:
    django.setup()
    from benchmarks.bench_cost import rss_worker

    return rss_worker()


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    if argv[1] == "rss":
        result = in_fresh_child(rss)  # before Django is imported: this process stays small
    elif argv[1] == "client":
        django.setup()
        result = client_worker(int(argv[2]), float(argv[3]), Path(argv[4]))
    elif argv[1] == "background":
        django.setup()
        lane = argv[4] if len(argv) > 4 else "background"
        result = background_worker(float(argv[2]), Path(argv[3]), lane)
    elif argv[1] == "interactive":
        django.setup()
        result = interactive_worker(int(argv[2]), float(argv[3]), float(argv[4]), Path(argv[5]))
    else:
        print(f"unknown worker {argv[1]!r}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
