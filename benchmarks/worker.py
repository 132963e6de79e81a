"""Worker processes of the benchmarks; each prints one JSON object on stdout.

``python -m benchmarks.worker rss``
    refresh every due connection against the instant token endpoint; peak RSS before/after,
    measured in a forked child (see :func:`in_fresh_child`).
``python -m benchmarks.worker client PK SECONDS SIGNAL_DIR``
    write ``ready-PID``, wait for ``start`` (an epoch time), then ``GET /v1/profile`` through
    ``LexofficeClient`` until SECONDS have passed; count answers and errors.
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


def client_worker(pk: int, seconds: float, signals: Path) -> Result:
    from django_lexoffice.client import LexofficeClient
    from django_lexoffice.exceptions import LexofficeError
    from django_lexoffice.models import LexofficeConnection

    connection = LexofficeConnection.objects.get(pk=pk)
    (signals / f"ready-{os.getpid()}").write_text("ready")
    start_file = signals / "start"
    deadline = time.monotonic() + 60
    while not start_file.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no start signal")
        time.sleep(0.005)
    start = float(start_file.read_text())
    time.sleep(max(0.0, start - time.time()))
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
    else:
        print(f"unknown worker {argv[1]!r}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
