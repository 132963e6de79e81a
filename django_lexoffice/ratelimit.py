"""A token bucket shared by every process through Django's cache.

Lexware allows 2 requests per second per client across all endpoints and
answers 429 beyond that. Every outgoing call (API client, refresh) first takes
a token here, so a whole fleet of web processes, cron runs and Celery workers
stays below the limit without ever seeing a 429.

The bucket is GCRA (the "generic cell rate algorithm", a token bucket stored as
one timestamp, the *theoretical arrival time* ``tat``): a call may go at
``tat - (burst - 1) * interval``, and taking it moves ``tat`` on by one
interval. In any window of ``t`` seconds at most ``burst + rate * t`` calls go.
:meth:`SharedTokenBucket.acquire` reserves the next free slot in one step and
sleeps until it comes, so waiting callers are served first come, first served
(a "wake up and try again" loop lets one busy process starve the others).

Guarantee, by cache backend:

* Redis (``django.core.cache.backends.redis.RedisCache`` or django-redis): one
  Lua script reads and writes the timestamp atomically inside Redis (5 or
  later), with Redis' own clock, so any number of processes on any number of
  machines share one exact bucket, whatever their clocks say.
* Any other backend: a short lock taken with ``cache.add`` guards the
  read-modify-write, and the callers' wall clocks decide. ``add`` is atomic in
  LocMem (for the threads of one process), Memcached and the database cache, so
  those keep the guarantee too, provided the machines' clocks agree (NTP).
  The file-based cache's ``add`` is not atomic across processes, and the dummy
  cache stores nothing, so neither limits anything: use Redis for a fleet.

No maintained library offers a cache-backed, cross-process bucket for Django's
cache API, so this one is written by hand.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.core.cache import caches

from .conf import settings as lexoffice_settings
from .exceptions import RateLimitTimeout

# KEYS[1]: the bucket; ARGV: interval, tolerance and max_wait, in seconds. Reserves the next
# slot if it comes within max_wait: returns {1, wait}, else {0, wait} and reserves nothing.
# '%.6f' keeps microseconds (Lua's tostring would round an epoch timestamp to 0.1 ms).
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local wait = math.max(0, tat - tolerance - now)
if wait > max_wait then return {0, string.format('%.6f', wait)} end
local new_tat = tat + interval
local ttl = math.ceil((new_tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', ttl)
return {1, string.format('%.6f', wait)}
"""

_LOCK_TIMEOUT = 5  # seconds; a crashed holder cannot block the bucket for longer
_LOCK_BUSY_WAIT = 0.005  # seconds to wait before trying a lock another caller holds


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

    def try_acquire(self) -> float:
        """Take a token if one is free now: return 0.0, else the seconds until one is
        (nothing is reserved then)."""
        taken = self._take(0.0)
        if taken is None:
            return _LOCK_BUSY_WAIT
        granted, wait = taken
        return 0.0 if granted else wait

    def acquire(self, max_wait: float | None = None) -> float:
        """Reserve the next free token, sleep until it is due; return the seconds waited.

        Raises :class:`~django_lexoffice.exceptions.RateLimitTimeout` when the next
        free token is more than ``max_wait`` (default ``LEXOFFICE_RATE_LIMIT_MAX_WAIT``)
        seconds away; it raises at once, without sleeping and without reserving.
        """
        limit = lexoffice_settings.RATE_LIMIT_MAX_WAIT if max_wait is None else max(0.0, max_wait)
        started = self._clock()
        while True:
            remaining = limit - (self._clock() - started)
            taken = self._take(max(0.0, remaining))
            if taken is None:  # another caller holds the lock (non-Redis caches only)
                if remaining < _LOCK_BUSY_WAIT:
                    raise self._timeout(limit)
                self._sleep(_LOCK_BUSY_WAIT)
                continue
            granted, wait = taken
            if not granted:
                raise self._timeout(limit)
            if wait > 0:
                self._sleep(wait)
            return max(0.0, self._clock() - started)

    def _timeout(self, limit: float) -> RateLimitTimeout:
        return RateLimitTimeout(
            f"The shared lexoffice rate limit ({self.rate:g} requests/s) has no free slot "
            f"within {limit:.1f} s (LEXOFFICE_RATE_LIMIT_MAX_WAIT); try again later."
        )

    def _take(self, max_wait: float) -> tuple[bool, float] | None:
        """Reserve the next slot if it is at most ``max_wait`` away: ``(granted, wait)``;
        ``None`` when the lock of a non-Redis cache is busy."""
        redis_client = self._redis_client()
        if redis_client is None:
            return self._take_locked(max_wait)
        if self._script is None:
            self._script = redis_client.register_script(_GCRA_LUA)
        key = self.cache.make_and_validate_key(self.key)
        granted, wait = self._script(keys=[key], args=[self.interval, self.tolerance, max_wait])
        return bool(int(granted)), float(wait)

    def _take_locked(self, max_wait: float) -> tuple[bool, float] | None:
        lock_key = f"{self.key}:lock"
        owner = uuid.uuid4().hex
        if not self.cache.add(lock_key, owner, timeout=_LOCK_TIMEOUT):
            return None
        try:
            now = self._clock()
            tat = max(float(self.cache.get(self.key) or 0.0), now)
            wait = max(0.0, tat - self.tolerance - now)
            if wait > max_wait:
                return False, wait
            new_tat = tat + self.interval
            self.cache.set(self.key, new_tat, timeout=math.ceil(new_tat - now) + 1)
            return True, wait
        finally:
            # Only our own lock: after _LOCK_TIMEOUT it may belong to someone else.
            if self.cache.get(lock_key) == owner:
                self.cache.delete(lock_key)

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


_buckets = threading.local()


def acquire(key: str | None = None, *, max_wait: float | None = None) -> float:
    """Take one token from the shared bucket of the configured client id; return seconds waited.

    Reuses one bucket per thread and per (key, rate, cache alias): read from the
    settings on each call, so ``override_settings`` still applies.
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
    return bucket.acquire(max_wait)
