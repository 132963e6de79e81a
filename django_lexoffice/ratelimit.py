"""A token bucket shared by every process through Django's cache.

Lexware allows 2 requests per second per client across all endpoints and
answers 429 beyond that. Every outgoing call (API client, refresh) first takes
a token here, so a whole fleet of web processes, cron runs and Celery workers
stays below the limit without ever seeing a 429.

The bucket is GCRA (the "generic cell rate algorithm", a token bucket stored as
one timestamp, the *theoretical arrival time*): a call may go when
``now >= tat - (burst - 1) * interval``; it then moves ``tat`` on by one interval.

Guarantee, by cache backend:

* Redis (``django.core.cache.backends.redis.RedisCache`` or django-redis): one
  Lua script reads and writes the timestamp atomically inside Redis, with
  Redis' own clock, so any number of processes on any number of machines share
  one exact bucket.
* Any other backend: a short lock taken with ``cache.add`` (atomic in LocMem for
  the threads of one process, and in the database cache) guards the
  read-modify-write. The file-based cache's ``add`` is not atomic across
  processes: use Redis for several processes.

No maintained library offers a cache-backed, cross-process bucket for Django's
cache API, so this one is written by hand.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import caches

from .conf import settings as lexoffice_settings
from .exceptions import RateLimitTimeout

_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then return tostring(allow_at - now) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil((tat + interval - now) * 1000) + 1000)
return '0'
"""

_LOCK_TIMEOUT = 5  # seconds; a crashed holder cannot block the bucket for longer


class SharedTokenBucket:
    """A cross-process token bucket of ``rate`` calls per second, ``burst`` at most at once."""

    def __init__(
        self,
        key: str | None = None,
        *,
        rate: float | None = None,
        burst: int = 1,
        cache_alias: str | None = None,
        clock: Any = time.time,
        sleep: Any = time.sleep,
    ) -> None:
        self.rate = float(rate if rate is not None else lexoffice_settings.RATE_LIMIT)
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        self.burst = max(1, int(burst))
        self.key = f"django_lexoffice:ratelimit:{key or lexoffice_settings.CLIENT_ID or 'default'}"
        self.cache = caches[cache_alias or lexoffice_settings.RATE_LIMIT_CACHE]
        self._clock = clock
        self._sleep = sleep
        self._script: Any = None

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    @property
    def tolerance(self) -> float:
        return (self.burst - 1) * self.interval

    def try_acquire(self) -> float:
        """Take a token if one is free: return 0.0, else the seconds to wait."""
        redis_client = self._redis_client()
        if redis_client is not None:
            if self._script is None:
                self._script = redis_client.register_script(_GCRA_LUA)
            key = self.cache.make_and_validate_key(self.key)
            return float(self._script(keys=[key], args=[self.interval, self.tolerance]))
        return self._try_acquire_locked()

    def acquire(self, max_wait: float | None = None) -> float:
        """Block until a token is free; return the seconds waited.

        Raises :class:`~django_lexoffice.exceptions.RateLimitTimeout` rather than
        wait longer than ``max_wait`` (default ``LEXOFFICE_RATE_LIMIT_MAX_WAIT``).
        """
        limit = lexoffice_settings.RATE_LIMIT_MAX_WAIT if max_wait is None else max_wait
        started = self._clock()
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return self._clock() - started
            if self._clock() - started + wait > limit:
                raise RateLimitTimeout(
                    f"Waited {limit:.1f} s for the shared lexoffice rate limit "
                    f"({self.rate:g} requests/s); try again later."
                )
            self._sleep(wait)

    def _try_acquire_locked(self) -> float:
        lock_key = f"{self.key}:lock"
        while not self.cache.add(lock_key, 1, timeout=_LOCK_TIMEOUT):
            self._sleep(0.005)
        try:
            now = self._clock()
            tat = max(float(self.cache.get(self.key) or 0.0), now)
            allow_at = tat - self.tolerance
            if now < allow_at:
                return allow_at - now
            self.cache.set(self.key, tat + self.interval, timeout=int(tat + self.interval - now) + 2)
            return 0.0
        finally:
            self.cache.delete(lock_key)

    def _redis_client(self) -> Any:
        backend = self.cache
        inner = getattr(backend, "_cache", None)  # Django's RedisCache
        if inner is not None and hasattr(inner, "get_client"):
            return inner.get_client(None, write=True)
        client = getattr(backend, "client", None)  # django-redis
        if client is not None and hasattr(client, "get_client"):
            return client.get_client(write=True)
        return None


def acquire(key: str | None = None, *, max_wait: float | None = None) -> float:
    """Take one token from the shared bucket of the configured client id."""
    return SharedTokenBucket(key).acquire(max_wait)
