"""Benchmark 1: ``refresh_lexoffice_tokens`` throughput at the configured limit R.

N expiring connections on PostgreSQL, each with a live grant at the fake Lexware served over HTTP
(20 ms per refresh, token endpoint limited to R by :class:`benchmarks.gate.Gate`), the shared
token bucket on Redis at ``LEXOFFICE_RATE_LIMIT = R``. First one command process, then four at
once over the same (again due) connections.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from django_lexoffice.models import LexofficeConnection
from django_lexoffice.testing import FakeLexware

from . import fixtures
from .gate import TOKEN_RATE, Hit, HitLog
from .infra import Infra, stop
from .report import (
    Result,
    bucket_refusals,
    gap_summary,
    log,
    max_in_window,
    steady_rate,
    windows_over,
)

RATE = TOKEN_RATE  # R, requests per second
LATENCY = 0.02  # seconds per refresh at the fake
#: A stricter bucket than the gate's (one interval of jitter allowed), evaluated on the log.
STRICT_BURST = 2
_SUMMARY = re.compile(
    r"Refreshed (\d+), skipped (\d+), failed (\d+), re-authorization required (\d+)\."
)


@dataclass(frozen=True)
class CommandRun:
    """What the token endpoint saw during one run of ``processes`` commands."""

    processes: int
    refreshed: int  # 200s at the token endpoint
    rejected: int  # 429s
    rate: float  # Lexware-side refreshes per second
    max_per_second: int  # most refreshes in any 1 s window
    windows_over_r: int
    strict_refusals: int  # what a bucket of 2 tokens at R would have refused
    gaps: str  # between consecutive refreshes, Lexware-side
    wall: float  # first to last refresh, seconds
    refreshed_twice: int
    broken: int  # connections not active, or whose refresh token the fake no longer accepts
    reported: int  # sum of the commands' "Refreshed N"
    summaries: tuple[str, ...]  # each command's summary line
    exit_codes: tuple[int, ...]


def run(infra: Infra, hits: HitLog, connections: int) -> list[Result]:
    fake = FakeLexware()
    fake.reset()
    fixtures.register_client(fake)
    fixtures.retire_all()
    log(f"[1] creating {connections} connections with live grants at the fake")
    granted = fixtures.granted_connections(fake, connections, prefix="cmd")
    fake.inject("refresh", "slow", times=None, seconds=LATENCY)
    try:
        runs = []
        for processes in (1, 4):
            fixtures.make_due([row.pk for row in granted])
            log(f"[1] {processes} x refresh_lexoffice_tokens over {connections} connections")
            runs.append(_run_commands(infra, hits, fake, granted, processes))
            log(f"[1]   {runs[-1]}")
    finally:
        fake.clear_faults()
    return _results(runs, connections)


def _run_commands(
    infra: Infra, hits: HitLog, fake: FakeLexware, granted: list[fixtures.Granted], processes: int
) -> CommandRun:
    before = {row.pk: fake.count("refresh", connection_id=row.connection_id) for row in granted}
    hits.clear()
    env = infra.env(LEXOFFICE_BENCH_RATE_LIMIT=str(RATE))
    commands = [
        infra.python("-m", "django", "refresh_lexoffice_tokens", env=env) for _ in range(processes)
    ]
    timeout = 120 + 3 * len(granted) / RATE
    outputs = []
    try:
        for command in commands:
            outputs.append(command.communicate(timeout=timeout))
    finally:
        for command in commands:
            stop(command)
    token_hits = [hit for hit in hits.read() if hit.endpoint == "token"]
    return _summarize(fake, granted, before, token_hits, commands, outputs, processes)


def _summarize(
    fake: FakeLexware,
    granted: list[fixtures.Granted],
    before: dict[int, int],
    token_hits: list[Hit],
    commands: list[subprocess.Popen[str]],
    outputs: list[tuple[str, str]],
    processes: int,
) -> CommandRun:
    ok = [hit.at for hit in token_hits if hit.status == 200]
    reported = 0
    summaries = []
    for out, err in outputs:
        match = _SUMMARY.search(out)
        if match is None:
            log(f"[1]   unexpected command output: {out[-500:]!r} {err[-1500:]!r}")
        else:
            reported += int(match.group(1))
            summaries.append(match.group(0))
    twice = sum(
        fake.count("refresh", connection_id=row.connection_id) - before[row.pk] > 1
        for row in granted
    )
    return CommandRun(
        processes=processes,
        refreshed=len(ok),
        rejected=sum(hit.status == 429 for hit in token_hits),
        rate=steady_rate(ok),
        max_per_second=max_in_window(ok, 1.0),
        windows_over_r=windows_over(ok, 1.0, int(RATE)),
        strict_refusals=bucket_refusals(ok, RATE, STRICT_BURST),
        gaps=gap_summary(ok, 1 / RATE),
        wall=ok[-1] - ok[0] if ok else 0.0,
        refreshed_twice=twice,
        broken=_broken(fake, [row.pk for row in granted]),
        reported=reported,
        summaries=tuple(summaries),
        exit_codes=tuple(command.returncode for command in commands),
    )


def _broken(fake: FakeLexware, pks: list[int]) -> int:
    broken = 0
    for row in LexofficeConnection.objects.filter(pk__in=pks).iterator(chunk_size=500):
        if not row.is_active or not fake.is_refresh_token_valid(row.refresh_token):
            broken += 1
    return broken


def _results(runs: list[CommandRun], connections: int) -> list[Result]:
    single, parallel = runs
    results = [
        Result(
            f"1. command, 1 process, N={connections}: rate / R (R={RATE:g}/s)",
            f"{single.rate / RATE:.3f} ({single.rate:.2f}/s, {single.refreshed} in "
            f"{single.wall:.1f} s)",
            ">= 0.95",
            single.rate / RATE >= 0.95 and single.refreshed == connections,
        ),
        Result(
            "1. command, 1 process: 429s at the token endpoint",
            str(single.rejected),
            "0",
            single.rejected == 0,
        ),
        Result(
            "1. command, 4 processes: aggregate rate / R",
            f"{parallel.rate / RATE:.3f} ({parallel.rate:.2f}/s, {parallel.refreshed} in "
            f"{parallel.wall:.1f} s)",
            "0.9-1.0",
            0.9 <= parallel.rate / RATE <= 1.0 and parallel.refreshed == connections,
        ),
        Result(
            "1. command, 4 processes: 429s at the token endpoint",
            str(parallel.rejected),
            "0",
            parallel.rejected == 0,
        ),
        Result(
            "1. command, 4 processes: connections refreshed twice",
            str(parallel.refreshed_twice),
            "0",
            parallel.refreshed_twice == 0,
        ),
    ]
    for run in runs:
        results.append(
            Result(
                f"1. command, {run.processes} process{'es' if run.processes > 1 else ''}: "
                "most refreshes in any 1 s (Lexware-side)",
                f"{run.max_per_second} ({run.windows_over_r} windows > R; a {STRICT_BURST}-token "
                f"bucket would have refused {run.strict_refusals})",
                f"(info; pacing at R gives {RATE + 1:g})",
                None,
            )
        )
        results.append(
            Result(
                f"1. command, {run.processes} process{'es' if run.processes > 1 else ''}: "
                "refreshed / broken / exit codes",
                f"{run.reported} / {run.broken} / {','.join(map(str, run.exit_codes))}",
                f"{connections} / 0 / 0",
                run.reported == connections and run.broken == 0 and set(run.exit_codes) == {0},
            )
        )
    return results
