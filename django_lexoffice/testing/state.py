"""The fake's state, kept in a Django cache so every thread and process sees ONE truth.

Nothing lives in module-level dicts: ``runserver`` threads, pytest workers and several Gunicorn or
Celery processes pointed at one Redis/Memcached/DB cache all read and write the same keys.

Concurrency guarantees rest on three cache primitives (all Django backends implement them):

* ``cache.delete(key)`` returns ``True`` only for the caller that actually removed the key
  (Redis ``DEL`` count, Memcached ``delete``, the DB cache's ``DELETE`` row count, ``os.remove``
  for the file cache, the process lock of LocMem). Consuming a code or a refresh token is
  "read it, then delete it and proceed only if *we* deleted it": exactly one caller wins.
* ``cache.add(key, ...)`` stores only if the key is absent (Redis ``SET NX``, Memcached ``add``,
  a primary-key insert for the DB cache, LocMem's lock). :meth:`FakeState.lock` is built on it.
  The file-based cache checks then writes: there the lock also takes a process-local lock, so
  threads of one process (``runserver``, the demo) are safe, but several processes are not: use
  Redis, Memcached or the DB cache for multi-process tests.
* ``cache.incr`` is atomic on LocMem, Redis and Memcached; on other backends :meth:`FakeState.incr`
  does its read-modify-write under :meth:`FakeState.lock` instead.

Keys are namespaced (``lexoffice-fake:<generation>:<kind>:<hash>``). :meth:`FakeState.reset` draws
a new random generation, which orphans every old key at once (caches cannot delete by prefix);
orphans expire through their timeouts. Identifiers are hashed into keys so tokens never appear in
key names and every key is Memcached-safe.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypedDict

from django.core.cache import BaseCache, caches

from . import clock, conf
from .constants import DEMO_COMPANIES, GRANT_TTL, SCOPES, Company

NAMESPACE = "lexoffice-fake"
LOCK_TIMEOUT = 5  # seconds a crashed lock holder can block others
LOCK_WAIT = 2.0  # seconds a caller waits for a lock before giving up

# Backends whose ``incr`` is a single atomic operation.
_ATOMIC_INCR_MODULES = (
    "django.core.cache.backends.locmem",
    "django.core.cache.backends.redis",
    "django.core.cache.backends.memcached",
    "django_redis",
)
# Backends whose ``add`` is atomic across processes.
_ATOMIC_ADD_MODULES = (*_ATOMIC_INCR_MODULES, "django.core.cache.backends.db")
# Serializes lock acquisition within this process for backends without an atomic ``add``.
# It guards, it holds no state: the state itself is always in the cache.
_PROCESS_LOCK = threading.RLock()


class LockTimeout(RuntimeError):
    """Another caller held a fake-state lock for too long."""


class Client(TypedDict):
    """A registered OAuth client; an empty ``secret`` marks a public client."""

    client_id: str
    secret: str
    redirect_uris: list[str]
    scopes: list[str] | None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


class FakeState:
    """Typed access to the fake's records in the configured cache."""

    def __init__(self, cache_alias: str | None = None) -> None:
        self.cache_alias = cache_alias or conf.cache_alias()

    @property
    def cache(self) -> BaseCache:
        """The Django cache holding the state."""
        return caches[self.cache_alias]

    # -- keys and generations -------------------------------------------------------------

    def _generation(self) -> str:
        key = f"{NAMESPACE}:generation"
        generation = self.cache.get(key)
        if generation is None:
            # add(): two processes starting at once agree on one generation.
            self.cache.add(key, secrets.token_hex(8), timeout=None)
            generation = self.cache.get(key)
        return str(generation)

    def key(self, kind: str, ident: str = "") -> str:
        """The namespaced cache key of a record."""
        return f"{NAMESPACE}:{self._generation()}:{kind}:{_digest(ident)}"

    def reset(self) -> None:
        """Forget everything: clients, grants, tokens, faults, counters, clock offset."""
        self.cache.set(f"{NAMESPACE}:generation", secrets.token_hex(8), timeout=None)

    # -- primitives -----------------------------------------------------------------------

    def get(self, kind: str, ident: str = "") -> Any:
        """Read a record (``None`` when absent)."""
        return self.cache.get(self.key(kind, ident))

    def set(self, kind: str, ident: str, value: Any, timeout: float = GRANT_TTL) -> None:
        """Write a record."""
        self.cache.set(self.key(kind, ident), value, timeout=timeout)

    def delete(self, kind: str, ident: str) -> bool:
        """Delete a record; ``True`` only for the one caller that removed it."""
        return bool(self.cache.delete(self.key(kind, ident)))

    def consume(self, kind: str, ident: str) -> Any:
        """Atomically take a single-use record: the value for exactly one caller, else ``None``.

        Several callers may read the value, but only the one whose ``delete`` removed the key
        gets it; the others see ``None`` (see the module docstring).
        """
        key = self.key(kind, ident)
        value = self.cache.get(key)
        if value is None or not self.cache.delete(key):
            return None
        return value

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """A short cross-process lock built on ``cache.add`` (expires after ``LOCK_TIMEOUT``)."""
        if type(self.cache).__module__.startswith(_ATOMIC_ADD_MODULES):
            with self._cache_lock(name):
                yield
        else:
            with _PROCESS_LOCK, self._cache_lock(name):
                yield

    @contextmanager
    def _cache_lock(self, name: str) -> Iterator[None]:
        key = self.key("lock", name)
        token = secrets.token_hex(8)
        deadline = time.monotonic() + LOCK_WAIT
        while not self.cache.add(key, token, timeout=LOCK_TIMEOUT):
            if time.monotonic() > deadline:
                raise LockTimeout(f"fake Lexware state lock {name!r} is busy")
            time.sleep(0.001)  # real time: a frozen fake clock must not freeze the lock
        try:
            yield
        finally:
            # Delete only our own lock (it may have expired and been taken by someone else).
            if self.cache.get(key) == token:
                self.cache.delete(key)

    def _atomic_incr(self) -> bool:
        return type(self.cache).__module__.startswith(_ATOMIC_INCR_MODULES)

    def incr(self, kind: str, ident: str = "", delta: int = 1) -> int:
        """Add ``delta`` to a counter atomically and return the new value."""
        key = self.key(kind, ident)
        if self._atomic_incr():
            self.cache.add(key, 0, timeout=GRANT_TTL)
            try:
                return int(self.cache.incr(key, delta))
            except ValueError:  # expired between add and incr: start again from zero
                self.cache.add(key, 0, timeout=GRANT_TTL)
                return int(self.cache.incr(key, delta))
        # DB and file caches implement incr as get + set: serialize it ourselves.
        with self.lock(f"incr:{kind}:{ident}"):
            value = int(self.cache.get(key) or 0) + delta
            self.cache.set(key, value, timeout=GRANT_TTL)
            return value

    def counter(self, kind: str, ident: str = "") -> int:
        """Read a counter (0 when never incremented)."""
        return int(self.get(kind, ident) or 0)

    # -- the clock --------------------------------------------------------------------------

    def now(self) -> float:
        """The fake's time: :func:`clock.now` plus the shared offset from ``advance_clock``."""
        return clock.now() + self.counter("clock-offset-ms") / 1000.0

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's time forward for every process sharing this state."""
        self.incr("clock-offset-ms", delta=round(seconds * 1000))

    # -- clients --------------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        *,
        secret: str = "",
        redirect_uris: list[str],
        scopes: list[str] | None = None,
    ) -> Client:
        """Register (or replace) a client at run time; it wins over ``LEXOFFICE_FAKE_CLIENTS``."""
        if not client_id:
            raise ValueError("client_id must not be empty")
        if not redirect_uris:
            raise ValueError("register at least one redirect URI")
        unknown = [scope for scope in scopes or [] if scope not in SCOPES]
        if unknown:
            raise ValueError(f"unknown Lexware scopes: {unknown}")
        client: Client = {
            "client_id": client_id,
            "secret": secret or "",
            "redirect_uris": [str(uri) for uri in redirect_uris],
            "scopes": list(scopes) if scopes is not None else None,
        }
        self.set("client", client_id, client)
        return client

    def get_client(self, client_id: str) -> Client | None:
        """The client registered at run time, else from settings, else ``None``."""
        client: Client | None = self.get("client", client_id)
        if client is not None:
            return client
        config = conf.clients().get(client_id)
        if config is None:
            return None
        scopes = config.get("scopes")
        return {
            "client_id": client_id,
            "secret": str(config.get("secret") or ""),
            "redirect_uris": [str(uri) for uri in config.get("redirect_uris", [])],
            "scopes": [str(scope) for scope in scopes] if scopes is not None else None,
        }

    # -- companies and contacts ---------------------------------------------------------------

    def companies(self) -> list[Company]:
        """The built-in demo companies followed by those added at run time."""
        added: list[Company] = self.get("companies") or []
        added_ids = {company["organization_id"] for company in added}
        builtin = [c for c in DEMO_COMPANIES if c["organization_id"] not in added_ids]
        return copy.deepcopy([*builtin, *added])

    def get_company(self, organization_id: str) -> Company | None:
        """One company by organization id."""
        for company in self.companies():
            if company["organization_id"] == organization_id:
                return company
        return None

    def add_company(self, company: Company) -> None:
        """Add (or replace) a company."""
        with self.lock("companies"):
            added: list[Company] = self.get("companies") or []
            added = [c for c in added if c["organization_id"] != company["organization_id"]]
            self.set("companies", "", [*added, company])

    def added_contacts(self, organization_id: str) -> list[dict[str, Any]]:
        """Contacts added at run time for a company."""
        return list(self.get("contacts", organization_id) or [])

    def add_contact(self, organization_id: str, contact: dict[str, Any]) -> None:
        """Append a contact to a company's contact list."""
        with self.lock(f"contacts:{organization_id}"):
            self.set("contacts", organization_id, [*self.added_contacts(organization_id), contact])
