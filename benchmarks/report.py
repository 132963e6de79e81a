"""Results, the final table, and the small statistics the benchmarks share."""

from __future__ import annotations

import itertools
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One row of the table; ``passed`` is ``None`` for a row given for information."""

    metric: str
    value: str
    target: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "info"}[self.passed]


def log(message: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def table(results: Sequence[Result]) -> str:
    """A plain-text table: metric, value, target, pass/fail."""
    header = ("metric", "value", "target", "result")
    rows = [header, *((r.metric, r.value, r.target, r.verdict) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(results: Sequence[Result]) -> str:
    """The same table in Markdown, for RESULTS.md."""
    lines = ["| metric | value | target | result |", "|---|---|---|---|"]
    lines += [f"| {r.metric} | {r.value} | {r.target} | {r.verdict} |" for r in results]
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float], digits: int = 3) -> str:
    """``min-max`` of repeated measurements, for the details."""
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def steady_rate(times: Sequence[float]) -> float:
    """Events per second between the first and the last event: (n - 1) / span."""
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else float("inf")


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most events in any half-open window ``[t, t + window)`` (``times`` sorted)."""
    best = start = 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def windows_over(times: Sequence[float], window: float, limit: int) -> int:
    """How many windows ``[t_i, t_i + window)``, one starting at each event, hold more than
    ``limit`` events."""
    count = end = 0
    for start, at in enumerate(times):
        end = max(end, start)
        while end < len(times) and times[end] - at < window:
            end += 1
        if end - start > limit:
            count += 1
    return count


def bucket_refusals(times: Sequence[float], rate: float, burst: int) -> int:
    """How many of these arrivals a token bucket (``burst`` tokens, ``rate``/s, full at the
    first arrival) would have refused; refused arrivals take no token."""
    refused = 0
    tokens = float(burst)
    last = times[0] if times else 0.0
    for at in times:
        tokens = min(float(burst), tokens + (at - last) * rate)
        last = at
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            refused += 1
    return refused


def gap_summary(times: Sequence[float], interval: float) -> str:
    """Gaps between consecutive events: median, p99, max, and the time lost to gaps longer
    than ``interval`` (what a pacer with no burst can never make up)."""
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    if not gaps:
        return "no gaps"
    lost = sum(gap - interval for gap in gaps if gap > interval)
    p99 = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))]
    return (
        f"gaps median {median(gaps) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max "
        f"{gaps[-1] * 1000:.1f} ms; {sum(gap > interval * 1.1 for gap in gaps)} over "
        f"{interval * 1100:.0f} ms, {lost:.2f} s lost"
    )
