"""Benchmark 5: the rate limit's two lanes: interactive calls first, refresh from the slots left.

Against a fake whose gateway allows 2 requests/s for every endpoint together (token and API:
one budget per client id, :class:`benchmarks.gate.Gate` with ``limit_all``), the client at the
default ``LEXOFFICE_RATE_LIMIT`` of 1.8, the shared bucket on Redis, N due connections on
PostgreSQL:

* *Background alone*: four worker processes refresh inside ``ratelimit.background()`` for the
  run's time: background alone must still reach the configured rate.
* *Interactive under load*: the same four background workers, plus one process calling
  ``GET /v1/profile`` through ``LexofficeClient`` every 2 s. Measured: the
  interactive calls' wait for a slot (inside the client), the background refresh rate against
  the rate the interactive calls leave, and 429s, Lexware-side. Repeated; medians reported.
* *Control* (information): the same with the background workers outside
  ``ratelimit.background()``, first come, first served as before the lanes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any

from django_lexoffice.conf import DEFAULT_RATE_LIMIT
from django_lexoffice.testing import FakeLexware

from . import fixtures
from . import infra as infrastructure
from .gate import HitLog
from .infra import Infra, stop, wait_for_file
from .report import Result, log, median, spread, steady_rate

LEXWARE_LIMIT = 2.0  # requests/s for every endpoint together, enforced by the gate
CLIENT_RATE = DEFAULT_RATE_LIMIT
BACKGROUND_PROCESSES = 4
EVERY = 2.0  # seconds between two interactive calls
START_DELAY = 1.0
SIGNALS = "<signal directory>"  # a worker argument filled in by _workers
WAIT_P95_TARGET = 1.2
WAIT_MAX_TARGET = 2.5
LEFT_SHARE_TARGET = 0.9
ALONE_TARGET = 0.95


@dataclass(frozen=True)
class LoadRun:
    """One run of interactive calls next to background refresh."""

    waits: list[float]
    interactive_rate: float  # answered interactive calls per second in the window
    background_rate: float  # refreshes per second in the window
    rejected: int  # 429s, any endpoint
    errors: int  # errors raised to the interactive caller

    @property
    def left(self) -> float:
        """The rate the interactive calls leave to background work."""
        return CLIENT_RATE - self.interactive_rate

    @property
    def p95(self) -> float:
        ordered = sorted(self.waits)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0


def run(
    infra: Infra, hits: HitLog, connections: int, seconds: float, repeats: int, control: bool
) -> list[Result]:
    fake = FakeLexware()
    fake.reset()
    fixtures.register_client(fake)
    fixtures.retire_all()
    log(f"[5] creating {connections} connections with live grants at the fake, and a user's")
    granted = [row.pk for row in fixtures.granted_connections(fake, connections, prefix="lanes")]
    (user,) = fixtures.granted_connections(fake, 1, prefix="lanes-user")
    fixtures.make_due([user.pk], 0)  # the user's token is fresh: every call is one request
    limit_all = infrastructure.fake_server(
        infra.env(), infra.workdir, LEXWARE_LIMIT, limit_all=True
    )
    with limit_all as url:
        limited = dataclasses.replace(infra, fake_url=url)
        results = _alone(limited, hits, granted, seconds)
        runs = []
        for repeat in range(repeats):
            log(f"[5] interactive under load, run {repeat + 1} of {repeats}")
            runs.append(_under_load(limited, hits, granted, user.pk, seconds, "background"))
            log(f"[5]   {_describe(runs[-1])}")
        results += _load_results(runs, seconds)
        if control:
            log("[5] control: background workers outside ratelimit.background()")
            before = _under_load(limited, hits, granted, user.pk, seconds, "interactive")
            log(f"[5]   {_describe(before)}")
            results.append(
                Result(
                    "5. control: interactive wait p95 / max with refresh first come, first "
                    "served (no lanes, as before)",
                    f"{before.p95:.2f} s / {max(before.waits, default=0):.2f} s "
                    f"(background {before.background_rate:.2f}/s, {before.rejected} x 429)",
                    "(info)",
                    None,
                )
            )
    return results


def _alone(infra: Infra, hits: HitLog, granted: list[int], seconds: float) -> list[Result]:
    fixtures.make_due(granted)
    hits.clear()
    log(f"[5] background alone: {BACKGROUND_PROCESSES} processes for {seconds:g} s")
    env = infra.env(LEXOFFICE_BENCH_RATE_LIMIT=str(CLIENT_RATE))
    background = ["background", str(seconds), SIGNALS, "background"]
    _, start = _workers(infra, env, [background] * BACKGROUND_PROCESSES, timeout=seconds + 120)
    in_window = [hit for hit in hits.read() if start <= hit.at < start + seconds]
    ok = [hit.at for hit in in_window if hit.endpoint == "token" and hit.status == 200]
    rejected = sum(hit.status == 429 for hit in hits.read())
    rate = steady_rate(ok)
    log(f"[5]   {len(ok)} refreshes in {seconds:g} s: steady {rate:.3f}/s, {rejected} x 429")
    return [
        Result(
            f"5. background alone, {BACKGROUND_PROCESSES} processes, {seconds:g} s: rate / "
            f"configured rate ({CLIENT_RATE:g}/s, limit {LEXWARE_LIMIT:g}/s)",
            f"{rate / CLIENT_RATE:.3f} ({rate:.3f}/s, {len(ok)} refreshes, {rejected} x 429)",
            f">= {ALONE_TARGET}",
            rate / CLIENT_RATE >= ALONE_TARGET and rejected == 0,
        )
    ]


def _under_load(
    infra: Infra, hits: HitLog, granted: list[int], user: int, seconds: float, lane: str
) -> LoadRun:
    fixtures.make_due(granted)
    hits.clear()
    env = infra.env(LEXOFFICE_BENCH_RATE_LIMIT=str(CLIENT_RATE))
    # The background workers stop a little after the interactive one: load until the end.
    background = [["background", str(seconds + 2 * EVERY), SIGNALS, lane]] * BACKGROUND_PROCESSES
    interactive = ["interactive", str(user), str(seconds), str(EVERY), SIGNALS]
    outputs, start = _workers(infra, env, [interactive, *background], timeout=seconds + 120)
    in_window = [hit for hit in hits.read() if start <= hit.at < start + seconds]
    refreshes = [hit for hit in in_window if hit.endpoint == "token" and hit.status == 200]
    calls = [hit for hit in in_window if hit.endpoint == "profile" and hit.status == 200]
    return LoadRun(
        waits=outputs[0]["waits"],
        interactive_rate=len(calls) / seconds,
        # (n - 1) / span, like benchmarks 1 and 3: the workers' set-up is not refresh time.
        background_rate=steady_rate([hit.at for hit in refreshes]),
        rejected=sum(hit.status == 429 for hit in hits.read()),
        errors=outputs[0]["errors"],
    )


def _workers(
    infra: Infra, env: dict[str, str], commands: list[list[str]], timeout: float
) -> tuple[list[dict[str, Any]], float]:
    """Start one ``benchmarks.worker`` per command (:data:`SIGNALS` stands for the signal
    directory), start them together; return their outputs and the common start time."""
    signals = infra.workdir / f"lanes-{time.time_ns()}"
    signals.mkdir()
    workers = [
        infra.python(
            "-m",
            "benchmarks.worker",
            *(str(signals) if arg == SIGNALS else arg for arg in command),
            env=env,
        )
        for command in commands
    ]
    try:
        for worker in workers:
            wait_for_file(signals / f"ready-{worker.pid}", timeout=60, process=worker)
        start = time.time() + START_DELAY
        (signals / "start.tmp").write_text(repr(start))
        (signals / "start.tmp").rename(signals / "start")
        outputs = []
        for worker in workers:
            out, err = worker.communicate(timeout=timeout)
            if worker.returncode != 0:
                raise RuntimeError(f"worker failed: {err[-3000:]}")
            outputs.append(json.loads(out))
    finally:
        for worker in workers:
            stop(worker)
    return outputs, start


def _describe(run: LoadRun) -> str:
    return (
        f"interactive: {len(run.waits)} calls, wait p95 {run.p95:.3f} s, max "
        f"{max(run.waits, default=0):.3f} s, {run.interactive_rate:.2f}/s; background "
        f"{run.background_rate:.2f}/s of {run.left:.2f}/s left; {run.rejected} x 429; "
        f"{run.errors} errors; waits {[round(wait, 2) for wait in run.waits]}"
    )


def _load_results(runs: list[LoadRun], seconds: float) -> list[Result]:
    p95 = median([run.p95 for run in runs])
    worst = max(max(run.waits, default=0.0) for run in runs)
    shares = [run.background_rate / run.left for run in runs]
    rejected = sum(run.rejected for run in runs)
    errors = sum(run.errors for run in runs)
    label = (
        f"{BACKGROUND_PROCESSES} background processes, 1 call every {EVERY:g} s, {seconds:g} s, "
        f"limit {LEXWARE_LIMIT:g}/s, client {CLIENT_RATE:g}/s"
    )
    return [
        Result(
            f"5. interactive under load ({label}): wait for a slot p95 / max",
            f"{p95:.2f} s / {worst:.2f} s (median p95 of {len(runs)}; p95s "
            f"{spread([run.p95 for run in runs], 2)} s)",
            f"<= {WAIT_P95_TARGET} s / <= {WAIT_MAX_TARGET} s",
            p95 <= WAIT_P95_TARGET and worst <= WAIT_MAX_TARGET,
        ),
        Result(
            "5. background under load: rate / the rate the interactive calls leave",
            f"{median(shares):.3f} ({median([run.background_rate for run in runs]):.2f}/s of "
            f"{median([run.left for run in runs]):.2f}/s; {spread(shares)})",
            f">= {LEFT_SHARE_TARGET}",
            median(shares) >= LEFT_SHARE_TARGET,
        ),
        Result(
            "5. under load: 429s from the fake / errors raised to the interactive caller",
            f"{rejected} / {errors}",
            "0 / 0",
            rejected == 0 and errors == 0,
        ),
    ]
