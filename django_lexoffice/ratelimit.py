"""A token bucket shared by every process through Django's cache, with two lanes.

Lexware allows 2 requests per second per client across all endpoints and
answers 429 beyond that. Every outgoing call (API client, refresh) first takes
a token here, so a whole fleet of web processes, cron runs and Celery workers
stays below the limit without ever seeing a 429.

The bucket is GCRA (the "generic cell rate algorithm", a token bucket stored as
one timestamp, the *theoretical arrival time* ``tat``): a call may go at
``tat - (burst - 1) * interval``, and taking ``count`` tokens (for calls made one
after another) moves ``tat`` on by ``count`` intervals. In any window of ``t`` seconds at most
``burst + rate * t`` calls go.

Two lanes share the one bucket (:class:`Lane`):

* **Interactive** (the default: a user waits) reserves the next free slot in one
  step and sleeps until it comes, so waiting callers are served first come,
  first served.
* **Background** (the refresh command and task, subscription sync, a client made
  with ``background=True``; see :func:`background`) never queues: it takes a
  slot only when one is free now (or within :attr:`SharedTokenBucket.lookahead`,
  a few milliseconds, so its sleep is exact), and otherwise sleeps until the
  next free slot and asks again, holding no reservation meanwhile. Alone it
  runs at the full rate; next to interactive callers it uses every slot they
  leave, and an interactive caller waits at most about one interval behind it,
  however many background workers there are.

Guarantee, by cache backend:

* Redis (``django.core.cache.backends.redis.RedisCache`` or django-redis): one
  Lua script reads and writes the timestamp atomically inside Redis (5 or
  later), with Redis' own clock, so any number of processes on any number of
  machines share one exact bucket, whatever their clocks say.
* Any other backend, best effort: a short lock (:func:`cache_lock`, built on
  ``cache.add``) guards the read-modify-write, and the callers' wall clocks
  decide. ``add`` is atomic in LocMem (for the threads of one process),
  Memcached and the database cache, so those keep the guarantee too, provided
  the machines' clocks agree (NTP). The file-based cache's ``add`` is not
  atomic across processes, and the dummy cache stores nothing, so neither
  limits anything: use Redis for a fleet.

No maintained library offers a cache-backed, cross-process bucket with
priorities for Django's cache API, so this one is written by hand.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from typing import Any

from django.core.cache import BaseCache, caches

from .conf import settings as lexoffice_settings
from .exceptions import RateLimitTimeout

# KEYS[1]: the bucket; ARGV: interval, tolerance, limit (seconds) and count. Reserves the next
# `count` slots if the first of them comes within `limit`: returns {1, wait}, else {0, wait} and
# reserves nothing. Both lanes use it: interactive with limit = max_wait (book and sleep),
# background with limit = the lookahead (take only what is free now).
# '%.6f' keeps microseconds (Lua's tostring would round an epoch timestamp to 0.1 ms).
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local wait = math.max(0, tat - tolerance - now)
if wait > limit then return {0, string.format('%.6f', wait)} end
local new_tat = tat + count * interval
local ttl = math.ceil((new_tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', ttl)
return {1, string.format('%.6f', wait)}
"""

_LOCK_TIMEOUT = 5  # seconds; a crashed holder cannot block the bucket for longer
_LOCK_BUSY_WAIT = 0.005  # seconds to wait before trying a lock another caller holds
#: How far ahead a background caller may take a slot (at most a quarter interval): enough to
#: sleep exactly until it instead of waking late, too little to push an interactive caller back.
BACKGROUND_LOOKAHEAD = 0.05
_MIN_SLEEP = 0.001  # a background caller never spins


class Lane(StrEnum):
    """Who is waiting for a slot: a person (``INTERACTIVE``) or a batch job (``BACKGROUND``)."""

    INTERACTIVE = "interactive"
    BACKGROUND = "background"


_current_lane: ContextVar[Lane] = ContextVar("django_lexoffice_lane", default=Lane.INTERACTIVE)


def current_lane() -> Lane:
    """The lane of calls made here and now: ``BACKGROUND`` inside :func:`background`."""
    return _current_lane.get()


@contextmanager
def background() -> Iterator[None]:
    """Make every Lexware call inside the block a background call.

    Background calls use only the slots interactive callers leave (see the module
    docstring). The command, the Celery tasks and subscription sync run inside it.
    Based on a context variable: it holds for this thread or asyncio task and what it
    calls, not for threads started inside the block (they begin interactive).
    """
    token = _current_lane.set(Lane.BACKGROUND)
    try:
        yield
    finally:
        _current_lane.reset(token)


class CacheLockBusy(Exception):
    """:func:`cache_lock` could not take the lock within its ``wait``."""


@contextmanager
def cache_lock(
    cache: BaseCache,
    key: str,
    *,
    timeout: float,
    wait: float = 0.0,
    poll: float = 0.001,
    sleep: Callable[[float], Any] = time.sleep,
) -> Iterator[None]:
    """A short cross-process lock on ``key`` built on ``cache.add``; the only one in the app.

    Held for the block, and at most ``timeout`` seconds (a crashed holder cannot block
    others for longer). Waits up to ``wait`` seconds (in real time, polling every ``poll``)
    for a busy lock, then raises :class:`CacheLockBusy`. On exit it deletes the lock only
    if it is still ours: after ``timeout`` it may belong to the next caller. As atomic as
    the backend's ``add`` (Redis, Memcached, the database cache, LocMem within a process).
    """
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    while not cache.add(key, owner, timeout=timeout):
        if time.monotonic() >= deadline:
            raise CacheLockBusy(f"the cache lock {key!r} is busy")
        sleep(poll)
    try:
        yield
    finally:
        if cache.get(key) == owner:
            cache.delete(key)


_UNSET = object()


class SharedTokenBucket:
    """A cross-process token bucket of ``rate`` calls per second, ``burst`` at most at once.

    ``key`` names the bucket (default: the configured client id, since Lexware
    counts per client), ``rate`` defaults to ``LEXOFFICE_RATE_LIMIT`` and
    ``cache_alias`` to ``LEXOFFICE_RATE_LIMIT_CACHE``. ``clock`` and ``sleep``
    exist for tests; the Redis path uses Redis' clock for the bucket itself.
    """

    def __init__(
        self,
        key: str | None = None,
        *,
        rate: float | None = None,
        burst: int = 1,
        cache_alias: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.rate = float(rate if rate is not None else lexoffice_settings.RATE_LIMIT)
        if not self.rate > 0:
            raise ValueError("rate must be positive")
        self.burst = max(1, int(burst))
        self.key = f"django_lexoffice:ratelimit:{key or lexoffice_settings.CLIENT_ID or 'default'}"
        self.cache = caches[cache_alias or lexoffice_settings.RATE_LIMIT_CACHE]
        self._clock = clock
        self._sleep = sleep
        self._script: Any = None
        self._redis: Any = _UNSET

    def __repr__(self) -> str:
        return f"<SharedTokenBucket {self.key!r} rate={self.rate:g}/s burst={self.burst}>"

    @property
    def interval(self) -> float:
        """Seconds between two calls at the steady rate."""
        return 1.0 / self.rate

    @property
    def tolerance(self) -> float:
        """How far ahead of the steady rate a burst may run."""
        return (self.burst - 1) * self.interval

    @property
    def lookahead(self) -> float:
        """How far ahead a background caller may take a slot (it never books further)."""
        return min(BACKGROUND_LOOKAHEAD, self.interval / 4)

    def try_acquire(self, count: int = 1) -> float:
        """Take ``count`` tokens if they are free now: return 0.0, else the seconds until
        they are (nothing is reserved then)."""
        taken = self._take(0.0, _checked_count(count))
        if taken is None:
            return _LOCK_BUSY_WAIT
        granted, wait = taken
        return 0.0 if granted else wait

    def acquire(
        self, max_wait: float | None = None, *, count: int = 1, lane: Lane | None = None
    ) -> float:
        """Take ``count`` tokens in ``lane`` (default: :func:`current_lane`), sleeping until
        the first of them is due; return the seconds waited.

        ``count`` reserves consecutive slots for calls made one after another (the
        callback's code exchange and profile call): the caller makes them from then on,
        and later callers queue ``count`` intervals behind.

        Interactive callers reserve the next free slots and sleep until they come.
        Background callers take slots only when they are free (within
        :attr:`lookahead`) and otherwise sleep and ask again, reserving nothing.

        Raises :class:`~django_lexoffice.exceptions.RateLimitTimeout` when the slots
        are more than ``max_wait`` (default ``LEXOFFICE_RATE_LIMIT_MAX_WAIT``) seconds
        away: an interactive caller at once, without sleeping or reserving; a background
        caller as soon as the next free slot lies beyond what is left of ``max_wait``.
        """
        count = _checked_count(count)
        in_background = (lane if lane is not None else current_lane()) is Lane.BACKGROUND
        limit = lexoffice_settings.RATE_LIMIT_MAX_WAIT if max_wait is None else max(0.0, max_wait)
        started = self._clock()
        while True:
            remaining = max(0.0, limit - (self._clock() - started))
            horizon = min(self.lookahead, remaining) if in_background else remaining
            taken = self._take(horizon, count)
            if taken is None:  # another caller holds the lock (non-Redis caches only)
                if remaining < _LOCK_BUSY_WAIT:
                    raise self._timeout(limit)
                self._sleep(_LOCK_BUSY_WAIT)
                continue
            granted, wait = taken
            if granted:
                if wait > 0:
                    self._sleep(wait)
                return max(0.0, self._clock() - started)
            if not in_background or wait > remaining:
                raise self._timeout(limit)
            self._sleep(max(_MIN_SLEEP, wait - self._wake_early(limit - remaining)))

    def _wake_early(self, waited: float) -> float:
        """How long before the next free slot a waiting background caller wakes to ask for it.

        Within the lookahead, the longer a caller has waited, the earlier it wakes, so
        background callers are served roughly in order of arrival: a caller that has just
        been served wakes last, and none starves however many workers share the bucket.
        """
        age = waited / (waited + 4 * self.interval)
        return self.lookahead * (0.25 + 0.75 * age)

    def _timeout(self, limit: float) -> RateLimitTimeout:
        return RateLimitTimeout(
            f"The shared lexoffice rate limit ({self.rate:g} requests/s) has no free slot "
            f"within {limit:.1f} s (LEXOFFICE_RATE_LIMIT_MAX_WAIT); try again later."
        )

    def _take(self, limit: float, count: int = 1) -> tuple[bool, float] | None:
        """Reserve the next ``count`` slots if the first is at most ``limit`` away:
        ``(granted, wait)``; ``None`` when the lock of a non-Redis cache is busy."""
        redis_client = self._redis_client()
        if redis_client is None:
            return self._take_locked(limit, count)
        if self._script is None:
            self._script = redis_client.register_script(_GCRA_LUA)
        key = self.cache.make_and_validate_key(self.key)
        granted, wait = self._script(keys=[key], args=[self.interval, self.tolerance, limit, count])
        return bool(int(granted)), float(wait)

    def _take_locked(self, limit: float, count: int) -> tuple[bool, float] | None:
        try:
            with cache_lock(self.cache, f"{self.key}:lock", timeout=_LOCK_TIMEOUT):
                now = self._clock()
                tat = max(float(self.cache.get(self.key) or 0.0), now)
                wait = max(0.0, tat - self.tolerance - now)
                if wait > limit:
                    return False, wait
                new_tat = tat + count * self.interval
                self.cache.set(self.key, new_tat, timeout=math.ceil(new_tat - now) + 1)
                return True, wait
        except CacheLockBusy:
            return None

    def _redis_client(self) -> Any:
        # Built once per bucket: Django's RedisCache constructs a new client object on
        # every get_client() (they share the cache's connection pool).
        if self._redis is _UNSET:
            self._redis = self._find_redis_client()
        return self._redis

    def _find_redis_client(self) -> Any:
        backend = self.cache
        inner = getattr(backend, "_cache", None)  # Django's RedisCache
        if inner is not None and hasattr(inner, "get_client"):
            return inner.get_client(None, write=True)
        client = getattr(backend, "client", None)  # django-redis
        if client is not None and hasattr(client, "get_client"):
            return client.get_client(write=True)
        return None


def _checked_count(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError("count must be a positive whole number of requests")
    return count


_buckets = threading.local()


def acquire(
    key: str | None = None,
    *,
    max_wait: float | None = None,
    count: int = 1,
    lane: Lane | None = None,
) -> float:
    """Take ``count`` tokens from the shared bucket of the configured client id, in ``lane``
    (default: :func:`current_lane`); return the seconds waited.

    The one entry point into the rate limit for every request to Lexware. Reuses one
    bucket per thread and per (key, rate, cache alias): read from the settings on each
    call, so ``override_settings`` still applies.
    """
    identity = (
        key or lexoffice_settings.CLIENT_ID,
        lexoffice_settings.RATE_LIMIT,
        lexoffice_settings.RATE_LIMIT_CACHE,
    )
    buckets: dict[tuple[str, float, str], SharedTokenBucket] = _buckets.__dict__.setdefault(
        "by_identity", {}
    )
    bucket = buckets.get(identity)
    if bucket is None:
        bucket = buckets[identity] = SharedTokenBucket(key)
    return bucket.acquire(max_wait, count=count, lane=lane)
