"""Lexware's gateway in front of the fake: a rate limit on the token endpoint, and a request log.

The fake Lexware limits its API (``/v1/*``, ``FakeLexware.set_rate_limit``) but not its token
endpoint, whose real limits Lexware does not publish. To count 429s on refreshes at the
benchmark's configured limit R, :class:`Gate` wraps the fake's WSGI application with a token
bucket of R per second on ``/oauth2/token`` that answers 429 (``{"message": "Too Many
Requests"}``, nothing processed) as Lexware's gateway does. The bucket holds ``ceil(R)`` tokens,
one second's worth, the convention of the fake's own API bucket
(``django_lexoffice.testing.state.default_burst``).

Every request is also logged, Lexware-side (arrival time, endpoint, status), to a Redis list the
runner reads afterwards, so rates and windows are measured where the limit applies.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

LOG_KEY = "lexoffice-bench:lexware-log"
#: R: the benchmark's configured limit of refreshes per second, enforced here on the token endpoint.
TOKEN_RATE = 20.0
TOO_MANY_REQUESTS = b'{"message": "Too Many Requests"}'

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Hit:
    """One request as Lexware saw it."""

    at: float  # epoch seconds of arrival
    endpoint: str  # token, revoke, profile, contacts, authorize, other
    status: int


def endpoint_of(path: str) -> str:
    """The fake's endpoint a request path belongs to."""
    for suffix, name in (
        ("/oauth2/token", "token"),
        ("/oauth2/revoke", "revoke"),
        ("/oauth2/authorize", "authorize"),
        ("/v1/profile", "profile"),
        ("/v1/contacts", "contacts"),
    ):
        if path.endswith(suffix):
            return name
    return "other"


class TokenBucket:
    """A classic token bucket for the threads of one process: ``burst`` tokens, ``rate`` per second.

    Written by hand: it plays Lexware's server side for one benchmark; no library models that.
    """

    def __init__(
        self, rate: float, burst: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1, math.ceil(rate))
        self._clock = clock
        self._tokens = float(self.burst)
        self._at = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take a token if there is one."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


class HitLog:
    """The Redis list of :class:`Hit` records, shared by the fake's server and the runner."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)

    def add(self, hit: Hit) -> None:
        self.client.rpush(LOG_KEY, f"{hit.at:.6f} {hit.endpoint} {hit.status}")

    def clear(self) -> None:
        self.client.delete(LOG_KEY)

    def read(self) -> list[Hit]:
        hits = []
        for raw in self.client.lrange(LOG_KEY, 0, -1):
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            at, endpoint, status = text.split()
            hits.append(Hit(float(at), endpoint, int(status)))
        return sorted(hits, key=lambda hit: hit.at)


#: The endpoints that count against Lexware's API limit, with ``limit_all``.
ALL_LIMITED = frozenset({"token", "revoke", "profile", "contacts", "other"})


class Gate:
    """WSGI middleware: limit ``/oauth2/token`` with ``token_bucket``, log every request.

    With ``limit_all`` the one bucket covers every endpoint together (token, revoke and the API),
    as this app paces them: one budget per client id.
    """

    def __init__(
        self,
        app: WSGIApp,
        log: HitLog,
        token_bucket: TokenBucket | None,
        *,
        limit_all: bool = False,
    ) -> None:
        self.app = app
        self.log = log
        self.token_bucket = token_bucket
        self.limited = ALL_LIMITED if limit_all else frozenset({"token"})

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        arrived = time.time()
        endpoint = endpoint_of(str(environ.get("PATH_INFO", "")))
        if endpoint in self.limited and self.token_bucket and not self.token_bucket.allow():
            self.log.add(Hit(arrived, endpoint, 429))
            start_response("429 Too Many Requests", [("Content-Type", "application/json")])
            return [TOO_MANY_REQUESTS]
        statuses: list[int] = []

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(int(status.split()[0]))
            return start_response(status, headers, exc_info)

        body = self.app(environ, recording_start_response)
        self.log.add(Hit(arrived, endpoint, statuses[-1] if statuses else 0))
        return body
