"""Lexware's API rate limit: a token bucket, 2 requests per second per client id by default.

Hand-written on purpose: the point is to reproduce Lexware's server-side behaviour (429 with
``{"message": "Too Many Requests"}``, no ``Retry-After``), not to throttle a client.

Guarantee across processes: the bucket lives in the shared cache, and each read-modify-write of
it happens while holding :meth:`FakeState.lock`, a lock taken with ``cache.add`` (atomic
``SET NX`` on Redis, ``add`` on Memcached, a primary-key insert on the DB cache, a process lock
on LocMem). So N processes hitting the fake together get at most ``burst + rate * t`` successful
requests in any window of ``t`` seconds, never one bucket per process. The lock expires after a
few seconds, so a crashed holder cannot wedge the fake; a request that cannot get the lock in time
is answered 429, as an overloaded gateway would.
"""

from __future__ import annotations

from typing import TypedDict

from . import conf
from .state import FakeState, LockTimeout

_BUCKET_TTL = 3600


class RateLimit(TypedDict):
    """Run-time override of the settings (``rate`` ``None``: disabled)."""

    rate: float | None
    burst: int


def configure(state: FakeState, rate: float | None, burst: int | None = None) -> None:
    """Set the limit for every process sharing the state; ``rate=None`` disables it."""
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive (or None to disable the limit)")
    if burst is not None and burst < 1:
        raise ValueError("burst must be at least 1")
    limit: RateLimit = {
        "rate": float(rate) if rate is not None else None,
        "burst": burst if burst is not None else (conf.default_burst(rate) if rate else 0),
    }
    state.set("ratelimit-config", "", limit)


def current(state: FakeState) -> tuple[float | None, int]:
    """``(rate, burst)`` in force: the run-time override, else the settings."""
    limit: RateLimit | None = state.get("ratelimit-config")
    if limit is not None:
        return limit["rate"], limit["burst"]
    return conf.rate_limit()


def allow(state: FakeState, client_id: str) -> bool:
    """Take one token from the client's bucket; ``False`` means answer 429."""
    rate, burst = current(state)
    if rate is None:
        return True
    try:
        with state.lock(f"bucket:{client_id}"):
            now = state.now()
            bucket = state.get("bucket", client_id) or {"tokens": float(burst), "at": now}
            elapsed = max(0.0, now - float(bucket["at"]))  # a test may move the clock backwards
            tokens = min(float(burst), float(bucket["tokens"]) + elapsed * rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            state.set("bucket", client_id, {"tokens": tokens, "at": now}, timeout=_BUCKET_TTL)
    except LockTimeout:
        allowed = False
    if not allowed:
        state.incr("count", "rate_limited")
    return allowed
