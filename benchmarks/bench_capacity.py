"""Benchmark 6: capacity of one client id over a week, simulated on a fake clock (no sleeping).

N connections, of which the same 10 % are used once a day (at a random time between 08:00 and
18:00), under both refresh policies. The refresh run is driven by the project's own decision
code, :mod:`django_lexoffice.policy` (``is_due`` picks, ``next_due`` schedules), on in-memory
rows instead of the database; the client's rate limit is one server of ``LEXOFFICE_RATE_LIMIT``
slots per second with the two lanes of :mod:`django_lexoffice.ratelimit`: a use takes the next
slot, refresh only slots nobody else wants. A run of the refresh task every minute picks up
what is due. Reported per N and policy:

* the share of the budget refresh takes (simulated, and :func:`policy.refresh_capacity`'s
  steady-state estimate);
* uses that found their access token not fresh (within ``LEXOFFICE_REFRESH_MARGIN`` of expiry,
  so the client refreshed first) and the extra wait that cost them (one more slot);
* connections whose refresh token sat idle longer than ``LEXOFFICE_IDLE_REFRESH_INTERVAL``
  (plus one hour of scheduling slack): 0 is the target.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django_lexoffice import policy
from django_lexoffice.conf import DEFAULT_RATE_LIMIT
from django_lexoffice.policy import RefreshPolicy, Rules

from .report import Result, log

DAYS = 7
USED_SHARE = 0.10
RATE = DEFAULT_RATE_LIMIT  # requests per second of one client id
TICK = 60.0  # seconds between two runs of the refresh task
IDLE_SLACK = timedelta(hours=1)
START = datetime(2026, 12, 7, tzinfo=UTC)  # a Monday, midnight
SEED = 16


@dataclass
class SimRow:
    """A connection as :mod:`django_lexoffice.policy` reads it, kept in memory."""

    status: str
    expires_at: datetime | None
    last_used_at: datetime | None
    last_refreshed_at: datetime | None
    created_at: datetime
    next_attempt_at: datetime | None = None
    version: int = 0  # bumps when the row changes: older schedule entries are stale
    longest_idle: float = 0.0  # seconds between two refreshes, at most


@dataclass(frozen=True)
class Outcome:
    connections: int
    policy: RefreshPolicy
    refreshes: int
    refresh_share: float  # of the budget, over the week
    estimate: policy.Capacity
    uses: int
    stale_uses: int
    extra_wait_p95: float
    extra_wait_max: float
    idle_beyond: int
    longest_idle_days: float
    backlog: int  # rows overdue at the end (refresh fell behind)
    seconds: float  # CPU time of the simulation


def _at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def _seconds(moment: datetime) -> float:
    return (moment - START).total_seconds()


def initial_rows(connections: int, rules: Rules, rng: random.Random) -> list[SimRow]:
    """The steady state the week starts from: kept-fresh tokens spread over their life, idle
    refresh tokens spread over the idle interval, the users' last use yesterday."""
    lifetime = policy.ACCESS_TOKEN_LIFETIME.total_seconds()
    idle = rules.idle_interval.total_seconds()
    used = int(connections * USED_SHARE)
    rows = []
    for index in range(connections):
        in_use = index < used
        kept_fresh = in_use or rules.policy is RefreshPolicy.KEEP_FRESH
        if kept_fresh:
            refreshed = -rng.uniform(0, lifetime - rules.margin.total_seconds())
        else:
            refreshed = -rng.uniform(0, idle)
        rows.append(
            SimRow(
                status="active",
                expires_at=_at(refreshed + lifetime),
                last_used_at=_at(-86400 + rng.uniform(8 * 3600, 18 * 3600)) if in_use else None,
                last_refreshed_at=_at(refreshed),
                created_at=_at(-365 * 86400),
            )
        )
    return rows


def daily_uses(connections: int, rng: random.Random) -> list[tuple[float, int]]:
    """(second, row) of every use in the week, in time order."""
    used = int(connections * USED_SHARE)
    uses = [
        (day * 86400 + rng.uniform(8 * 3600, 18 * 3600), index)
        for day in range(DAYS)
        for index in range(used)
    ]
    uses.sort()
    return uses


def simulate(connections: int, rules: Rules, seed: int = SEED) -> Outcome:
    began = time.process_time()
    rng = random.Random(seed)
    rows = initial_rows(connections, rules, rng)
    uses = daily_uses(connections, rng)
    interval = 1 / RATE
    end = DAYS * 86400.0
    schedule: list[tuple[float, int, int]] = []  # (when the refresh run may take it, row, version)

    def plan(index: int, now: float) -> None:
        row = rows[index]
        row.version += 1
        due = policy.next_due(row, rules, after=_at(now))
        if due is not None:
            picked = math.ceil(_seconds(due) / TICK) * TICK  # the next run of the task
            heapq.heappush(schedule, (max(picked, now), index, row.version))

    def refreshed(index: int, now: float) -> None:
        row = rows[index]
        alive_since = _seconds(row.last_refreshed_at or row.created_at)
        row.longest_idle = max(row.longest_idle, now - alive_since)
        row.expires_at = _at(now + policy.ACCESS_TOKEN_LIFETIME.total_seconds())
        row.last_refreshed_at = _at(now)

    for index in range(connections):
        plan(index, 0.0)
    slot = 0.0  # the next free slot of the client's rate limit
    refreshes = stale = 0
    extra_waits: list[float] = []
    next_use = 0
    while True:
        # Drop schedule entries of rows that changed since.
        while schedule and schedule[0][2] != rows[schedule[0][1]].version:
            heapq.heappop(schedule)
        use_at = uses[next_use][0] if next_use < len(uses) else math.inf
        due_at = schedule[0][0] if schedule else math.inf
        now = max(slot, min(use_at, due_at))
        if now >= end:
            break
        if use_at <= now:  # interactive first: the user takes this slot
            _, index = uses[next_use]
            next_use += 1
            row = rows[index]
            assert row.expires_at is not None
            if row.expires_at - rules.margin <= _at(now):  # the client refreshes first
                stale += 1
                refreshed(index, now)
                extra_waits.append(interval)
                now += interval
            row.last_used_at = _at(now)  # policy.record_use writes this (hourly at most)
            plan(index, now)
        else:  # a slot nobody wants: the refresh run takes the row due longest
            _, index, _ = heapq.heappop(schedule)
            assert policy.is_due(rows[index], rules, _at(now)), "the scheduler and is_due agree"
            refreshed(index, now)
            refreshes += 1
            plan(index, now)
        slot = now + interval
    limit = (rules.idle_interval + IDLE_SLACK).total_seconds()
    for row in rows:  # the idle time still running at the end of the week counts too
        alive_since = _seconds(row.last_refreshed_at or row.created_at)
        row.longest_idle = max(row.longest_idle, end - alive_since)
    backlog = sum(_overdue(row, rules, end) for row in rows)
    extra_waits.sort()
    return Outcome(
        connections=connections,
        policy=rules.policy,
        refreshes=refreshes,
        refresh_share=refreshes / (end * RATE),
        estimate=policy.refresh_capacity(
            connections, recently_used=int(connections * USED_SHARE), rules=rules, rate=RATE
        ),
        uses=len(uses),
        stale_uses=stale,
        extra_wait_p95=extra_waits[int(0.95 * (len(extra_waits) - 1))] if extra_waits else 0.0,
        extra_wait_max=extra_waits[-1] if extra_waits else 0.0,
        idle_beyond=sum(row.longest_idle > limit for row in rows),
        longest_idle_days=max(row.longest_idle for row in rows) / 86400,
        backlog=backlog,
        seconds=time.process_time() - began,
    )


def _overdue(row: SimRow, rules: Rules, end: float) -> bool:
    """Due at the end and for longer than two runs of the refresh task: refresh fell behind."""
    if not policy.is_due(row, rules, _at(end)):
        return False
    became_due = policy.next_due(row, rules, after=START)
    return became_due is not None and _seconds(became_due) < end - 2 * TICK


def run(sizes: tuple[int, ...]) -> list[Result]:
    results = []
    outcomes = []
    for connections in sizes:
        for name in RefreshPolicy:
            rules = Rules(RefreshPolicy(name))
            log(f"[6] simulating a week of {connections:,} connections under {name}")
            outcome = simulate(connections, rules)
            log(f"[6]   {outcome.refreshes:,} refreshes, {outcome.seconds:.1f} s CPU")
            outcomes.append(outcome)
            results.append(_result(outcome, rules))
    return [*results, _summary(outcomes)]


def _result(outcome: Outcome, rules: Rules) -> Result:
    """Pass: no refresh token idle beyond the limit, and the capacity warning is right (it
    warns exactly when refresh took more than half the budget or fell behind)."""
    over = outcome.refresh_share > policy.CAPACITY_WARNING_SHARE or outcome.backlog > 0
    return Result(
        f"6. capacity, {outcome.connections:,} connections, {USED_SHARE:.0%} used daily, "
        f'"{outcome.policy}": refresh share of {RATE:g}/s / stale uses / idle > '
        f"{rules.idle_interval.days} d",
        f"{outcome.refresh_share:.1%} (estimate {outcome.estimate.share:.1%}, backlog "
        f"{outcome.backlog:,}) / {outcome.stale_uses:,} of {outcome.uses:,} (extra wait p95 "
        f"{outcome.extra_wait_p95:.2f} s, max {outcome.extra_wait_max:.2f} s) / "
        f"{outcome.idle_beyond:,} (longest {outcome.longest_idle_days:.1f} d)",
        "(share info; warns iff > 50 %) / (info) / 0",
        outcome.idle_beyond == 0 and outcome.estimate.too_much == over,
    )


def _summary(outcomes: list[Outcome]) -> Result:
    fits = {
        name: max(
            (o.connections for o in outcomes if o.policy is name and o.refresh_share <= 0.5),
            default=0,
        )
        for name in RefreshPolicy
    }
    return Result(
        "6. capacity: most connections simulated within half the budget, per policy",
        ", ".join(f'"{name}" {count:,}' for name, count in fits.items()),
        "(info)",
        None,
    )
