"""The benchmark runner behind ``python benchmarks/run.py``: set up, run, print one table."""

from __future__ import annotations

import argparse
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import django

from . import infra as infrastructure
from .gate import TOKEN_RATE
from .report import Result, log, markdown_table, table


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one run."""

    command_connections: int
    query_sizes: tuple[int, ...]
    rss_sizes: tuple[int, int]
    cpu_connections: int
    cpu_repeats: int
    client_seconds: float
    client_default_rate_too: bool
    logins: int
    login_repeats: int
    lanes_connections: int
    lanes_seconds: float
    lanes_repeats: int
    lanes_control: bool
    capacity_sizes: tuple[int, ...]


FULL = Plan(
    command_connections=1000,
    query_sizes=(100, 1000, 10000),
    rss_sizes=(1000, 10000),
    cpu_connections=500,
    cpu_repeats=9,
    client_seconds=60,
    client_default_rate_too=True,
    logins=40,
    login_repeats=9,
    lanes_connections=1000,
    lanes_seconds=60,
    lanes_repeats=3,
    lanes_control=True,
    capacity_sizes=(1000, 10000, 100000),
)
QUICK = Plan(
    command_connections=200,
    query_sizes=(100, 1000),
    rss_sizes=(1000, 3000),
    cpu_connections=200,
    cpu_repeats=5,
    client_seconds=15,
    client_default_rate_too=False,
    logins=20,
    login_repeats=5,
    lanes_connections=200,
    lanes_seconds=20,
    lanes_repeats=1,
    lanes_control=False,
    capacity_sizes=(1000, 10000),
)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Benchmarks of django-lexoffice against the fake Lexware on 127.0.0.1.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller N, 15 s client run (< 2 min)")
    parser.add_argument(
        "--only",
        default="1,2,3,4,5,6",
        help="comma-separated benchmarks to run (default: 1,2,3,4,5,6)",
    )
    parser.add_argument(
        "--markdown", type=Path, help="also write the table and machine as Markdown"
    )
    parser.add_argument(
        "--db", default=infrastructure.DEFAULT_DB, help="database to create and drop"
    )
    parser.add_argument("--pg", default=infrastructure.DEFAULT_PG, help="PostgreSQL host:port")
    parser.add_argument("--redis", default=infrastructure.DEFAULT_REDIS_URL, help="Redis URL")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    plan = QUICK if args.quick else FULL
    selected = {part.strip() for part in args.only.split(",") if part.strip()}
    started = time.monotonic()
    with infrastructure.workdir() as workdir, infrastructure.database(args.db, args.pg):
        base = infrastructure.Infra(args.db, args.pg, args.redis, "", workdir)
        with infrastructure.fake_server(base.env(), workdir, token_rate=TOKEN_RATE) as fake_url:
            infra = infrastructure.Infra(args.db, args.pg, args.redis, fake_url, workdir)
            results, machine = _run(infra, plan, selected)
    results.append(Result("total run time", f"{time.monotonic() - started:.0f} s", "", None))
    print(table(results))
    if args.markdown:
        args.markdown.write_text(_markdown(results, machine, quick=args.quick))
    return 1 if any(result.passed is False for result in results) else 0


def _run(
    infra: infrastructure.Infra, plan: Plan, selected: set[str]
) -> tuple[list[Result], dict[str, str]]:
    os.environ.update(
        {
            key: value
            for key, value in infra.env().items()
            if key.startswith(("LEXOFFICE_BENCH_", "DJANGO_SETTINGS"))
        }
    )
    django.setup()
    from django.core.management import call_command

    from . import (
        bench_callback,
        bench_capacity,
        bench_client,
        bench_command,
        bench_cost,
        bench_lanes,
    )
    from .gate import HitLog

    call_command("migrate", verbosity=0)
    hits = HitLog(infra.redis_url)
    benches: dict[str, Callable[[], list[Result]]] = {
        "1": lambda: bench_command.run(infra, hits, plan.command_connections),
        "2": lambda: bench_cost.run(
            infra, plan.query_sizes, plan.rss_sizes, plan.cpu_connections, plan.cpu_repeats
        ),
        "3": lambda: bench_client.run(
            infra, hits, plan.client_seconds, plan.client_default_rate_too
        ),
        "4": lambda: bench_callback.run(plan.logins, plan.login_repeats),
        "5": lambda: bench_lanes.run(
            infra,
            hits,
            plan.lanes_connections,
            plan.lanes_seconds,
            plan.lanes_repeats,
            plan.lanes_control,
        ),
        "6": lambda: bench_capacity.run(plan.capacity_sizes),
    }
    results: list[Result] = []
    try:
        for key, bench in benches.items():
            if key in selected:
                began = time.monotonic()
                results += _guarded(key, bench)
                log(f"[{key}] done in {time.monotonic() - began:.0f} s")
        machine = _machine(infra.redis_url)
    finally:
        _clean_redis(infra.redis_url)
        from django.db import connections

        connections.close_all()  # before the database is dropped
    return results, machine


def _guarded(key: str, bench: Callable[[], list[Result]]) -> list[Result]:
    """Run one benchmark; a crash becomes a failed row (with the traceback on stderr)."""
    try:
        return bench()
    except Exception as exc:
        log(traceback.format_exc())
        return [
            Result(
                f"{key}. benchmark did not finish", f"{type(exc).__name__}: {exc}"[:200], "", False
            )
        ]


def _machine(redis_url: str) -> dict[str, str]:
    import redis
    from django.db import connection

    info = infrastructure.machine()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        row = cursor.fetchone()
    info["postgresql"] = str(row[0]) if row else "?"
    info["redis"] = str(redis.Redis.from_url(redis_url).info("server")["redis_version"])
    return info


def _clean_redis(url: str) -> None:
    """Remove this run's keys (and only those) from the benchmark's Redis database."""
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match="lexoffice-bench:*", count=1000):
        client.delete(key)


def _markdown(results: Sequence[Result], machine: dict[str, str], *, quick: bool) -> str:
    lines = [f"Run: `python benchmarks/run.py{' --quick' if quick else ''}`", ""]
    lines += [markdown_table(results), "", "Machine:", ""]
    for key, value in machine.items():
        if "\n" in value:
            lines += [f"- {key}:", "", "```", value, "```", ""]
        else:
            lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"
