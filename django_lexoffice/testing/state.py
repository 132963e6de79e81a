"""The fake's state: clients, companies, codes, grants, tokens, the rate bucket, faults, counters.

Every record lives in a Django cache (``LEXOFFICE_FAKE_CACHE``, default ``"default"``), never
in module-level dicts, so ``runserver`` threads, pytest and several processes pointed at one
Redis/Memcached/DB cache share ONE fake. Concurrency rests on two cache primitives:

* ``cache.delete(key)`` is true only for the caller that removed the key: consuming a code is
  "read it, then proceed only if *we* deleted it", so exactly one caller wins.
* ``cache.add(key, ...)`` stores only if the key is absent (atomic on LocMem, Redis, Memcached
  and the DB cache): :meth:`FakeState.lock` is the app's own ``ratelimit.cache_lock``.
  Counters, the rate bucket, and each connection's rotations and ending change under it.
  The file cache's ``add`` is not atomic: there a process lock keeps the threads of one
  process (``runserver``) exact, but several processes need a shared real cache.

Keys are ``lexoffice-fake:<generation>:<kind>:<sha256 of the id>``: tokens never appear in key
names, and :meth:`FakeState.reset` orphans every old key at once by drawing a new generation.
Time comes from :func:`now` plus a shared offset (:meth:`FakeState.advance_clock`); tests freeze
it with ``monkeypatch.setattr(state, "now", ...)`` and skip waits with ``state.sleep``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import secrets
import string
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypedDict

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.dummy import DummyCache

from django_lexoffice.ratelimit import CacheLockBusy, cache_lock

from .constants import (
    ACCESS_TOKEN_LIFETIME,
    CODE_LIFETIME,
    CODE_TTL,
    COUNTERS,
    DEFAULT_RATE_LIMIT,
    DEMO_COMPANIES,
    DEMO_CONTACT_NAMES,
    ENDPOINTS,
    EXPIRES_IN,
    FAULTS_BY_ENDPOINT,
    GRANT_TTL,
    REFRESH_TOKEN_LENGTH,
    SCOPES,
    SERVER_ERROR_STATUSES,
    Company,
)

NAMESPACE = "lexoffice-fake"
LOCK_TIMEOUT = 5  # seconds a crashed lock holder can block others
LOCK_WAIT = 2.0  # seconds a caller waits for a lock before giving up
_CONTACT_NAMESPACE = uuid.UUID("6c1e3f1a-8a4b-4c57-9d0e-2b7f5a9c3e11")
_TOKEN_ALPHABET = string.ascii_letters + string.digits
# Serializes the fake's locks within this process (see the module docstring); it holds no state.
_PROCESS_LOCK = threading.RLock()


class FakeLexwareError(Exception):
    """The fake refused to do what a test asked."""


def now() -> float:
    """Seconds since the epoch, as the fake sees them (before ``advance_clock``)."""
    return time.time()


def sleep(seconds: float) -> None:
    """Wait, for the ``slow`` fault."""
    if seconds > 0:
        time.sleep(seconds)


def default_burst(rate: float) -> int:
    """The bucket size for a rate when none is given: the rate rounded up, at least 1."""
    return max(1, math.ceil(rate))


class Client(TypedDict):
    """A registered OAuth client; an empty ``secret`` marks a public client."""

    client_id: str
    secret: str
    redirect_uris: list[str]
    scopes: list[str]  # what it is provisioned for


class Grant(TypedDict):
    """One connection (``connectionId``) with its one current token pair."""

    connection_id: str
    client_id: str
    scopes: list[str]
    connection_name: str | None
    company: Company
    created_at: float
    access_token: str
    refresh_token: str


def _client(client_id: str, secret: str | None, uris: list[str], scopes: Any) -> Client:
    return {
        "client_id": client_id,
        "secret": str(secret or ""),
        "redirect_uris": [str(uri) for uri in uris],
        "scopes": [str(scope) for scope in scopes] if scopes is not None else list(SCOPES),
    }


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _new_access_token(issued_at: float) -> str:
    # Shaped like Lexware's (a JWT); clients must treat it as opaque.
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"iss": "fake-lexware", "jti": str(uuid.uuid4()), "iat": int(issued_at)}
    parts = (json.dumps(header).encode(), json.dumps(claims).encode(), secrets.token_bytes(256))
    return ".".join(_b64(part) for part in parts)


def _scope_echo(scopes: list[str]) -> str:
    # Lexware echoes a coarse "read" / "read write", not the fine-grained list.
    return "read" if all(scope.endswith(".read") for scope in scopes) else "read write"


class FakeState:
    """The fake's records in the configured cache; :class:`FakeLexware` adds the test helpers."""

    @property
    def cache(self) -> BaseCache:
        """The Django cache holding the state (``LEXOFFICE_FAKE_CACHE``, default ``"default"``);
        a ``DummyCache`` is refused."""
        alias = str(getattr(settings, "LEXOFFICE_FAKE_CACHE", None) or "default")
        cache = caches[alias]
        if isinstance(cache, DummyCache):
            raise FakeLexwareError(
                f"The fake Lexware keeps its state in the cache {alias!r}, which is a "
                "DummyCache and forgets everything. Give it a real cache: set "
                "LEXOFFICE_FAKE_CACHE to the alias of a LocMemCache (enough for tests) or Redis."
            )
        return cache

    # -- records ----------------------------------------------------------------------------

    def key(self, kind: str, ident: str = "") -> str:
        """The namespaced cache key of a record."""
        generation_key = f"{NAMESPACE}:generation"
        generation = self.cache.get(generation_key)
        if generation is None:
            # add(): two processes starting at once agree on one generation.
            self.cache.add(generation_key, secrets.token_hex(8), timeout=None)
            generation = self.cache.get(generation_key)
        return f"{NAMESPACE}:{generation}:{kind}:{_digest(ident)}"

    def reset(self) -> None:
        """Forget everything: clients, companies, grants, faults, limits, counters, clock."""
        self.cache.set(f"{NAMESPACE}:generation", secrets.token_hex(8), timeout=None)

    def get(self, kind: str, ident: str = "") -> Any:
        """Read a record (``None`` when absent)."""
        return self.cache.get(self.key(kind, ident))

    def set(self, kind: str, ident: str, value: Any, timeout: float = GRANT_TTL) -> None:
        """Write a record."""
        self.cache.set(self.key(kind, ident), value, timeout=timeout)

    def delete(self, kind: str, ident: str) -> bool:
        """Delete a record; ``True`` only for the one caller that removed it."""
        return bool(self.cache.delete(self.key(kind, ident)))

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """A short lock shared by every process using the cache."""
        key = self.key("lock", name)
        with _PROCESS_LOCK, cache_lock(self.cache, key, timeout=LOCK_TIMEOUT, wait=LOCK_WAIT):
            yield

    def incr(self, kind: str, ident: str = "", delta: int = 1) -> int:
        """Add ``delta`` to a counter and return the new value (exact across processes)."""
        key = self.key(kind, ident)
        with self.lock(f"incr:{kind}:{ident}"):
            value = int(self.cache.get(key) or 0) + delta
            self.cache.set(key, value, timeout=GRANT_TTL)
        return value

    def count(self, name: str, *, connection_id: str | None = None) -> int:
        """How many requests of a kind Lexware answered successfully.

        ``authorize`` (codes issued), ``token`` (code exchanges), ``refresh`` (rotations; also
        per ``connection_id``), ``revoke``, ``profile``, ``api`` (other ``/v1`` calls) and
        ``rate_limited`` (429 answers of the bucket).
        """
        if name not in COUNTERS:
            raise ValueError(f"unknown counter {name!r}; choose from {COUNTERS}")
        if connection_id is not None and name != "refresh":
            raise ValueError("connection_id= is supported for the refresh counter only")
        if connection_id is not None:
            return int(self.get("count-refresh", connection_id) or 0)
        return int(self.get("count", name) or 0)

    # -- time -------------------------------------------------------------------------------

    def clock(self) -> float:
        """The fake's time: :func:`now` plus the offset of :meth:`advance_clock`."""
        return now() + int(self.get("clock-offset-ms") or 0) / 1000.0

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock forward (codes and access tokens expire, the bucket refills)."""
        self.incr("clock-offset-ms", delta=round(seconds * 1000))

    # -- clients, companies, contacts ---------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        *,
        secret: str = "",
        redirect_uris: list[str],
        scopes: list[str] | None = None,
    ) -> None:
        """Register (or replace) a client; ``secret=""`` makes it public, ``scopes=None``
        allows every scope. Wins over ``LEXOFFICE_FAKE_CLIENTS``."""
        if not client_id:
            raise ValueError("client_id must not be empty")
        if not redirect_uris:
            raise ValueError("register at least one redirect URI")
        unknown = [scope for scope in scopes or [] if scope not in SCOPES]
        if unknown:
            raise ValueError(f"unknown Lexware scopes: {unknown}")
        self.set("client", client_id, _client(client_id, secret, redirect_uris, scopes))

    def get_client(self, client_id: str) -> Client | None:
        """The client registered at run time, else in ``LEXOFFICE_FAKE_CLIENTS``, else ``None``."""
        client: Client | None = self.get("client", client_id)
        config = (getattr(settings, "LEXOFFICE_FAKE_CLIENTS", None) or {}).get(client_id)
        if client is None and config is not None:
            secret, uris = config.get("secret"), config.get("redirect_uris", [])
            return _client(client_id, secret, uris, config.get("scopes"))
        return client

    def companies(self) -> list[Company]:
        """Every company the fake knows: the demo companies, then those added."""
        return copy.deepcopy([*DEMO_COMPANIES, *(self.get("companies") or [])])

    def add_company(
        self,
        *,
        company_name: str,
        user_name: str,
        user_email: str,
        tax_type: str = "net",
        small_business: bool = False,
    ) -> Company:
        """Add a company users can pick on the consent page; returns it."""
        if tax_type not in ("net", "gross", "vatfree"):
            raise ValueError("tax_type must be net, gross or vatfree")
        company: Company = {
            "organization_id": str(uuid.uuid4()),
            "company_name": company_name,
            "user_id": str(uuid.uuid4()),
            "user_name": user_name,
            "user_email": user_email,
            "business_features": ["INVOICING", "BOOKKEEPING"],
            "features": [],
            "subscription_status": "active",
            "tax_type": tax_type,
            "small_business": small_business,
        }
        with self.lock("companies"):
            self.set("companies", "", [*(self.get("companies") or []), company])
        return company

    def contacts(self, organization_id: str) -> list[dict[str, Any]]:
        """A company's ``/v1/contacts``: its demo contacts, then those added."""
        names = DEMO_CONTACT_NAMES.get(organization_id, ())
        demo = [
            _contact(
                organization_id,
                name,
                10001 + i,
                uuid.uuid5(_CONTACT_NAMESPACE, f"{organization_id}:{i}"),
            )
            for i, name in enumerate(names)
        ]
        return [*demo, *(self.get("contacts", organization_id) or [])]

    def add_contact(
        self, organization_id: str, name: str, *, number: int | None = None
    ) -> dict[str, Any]:
        """Append a company contact to an organization's ``/v1/contacts``; returns it."""
        with self.lock(f"contacts:{organization_id}"):
            contacts = self.contacts(organization_id)
            number = 10001 + len(contacts) if number is None else number
            contact = _contact(organization_id, name, number, uuid.uuid4())
            added = contacts[len(DEMO_CONTACT_NAMES.get(organization_id, ())) :]
            self.set("contacts", organization_id, [*added, contact])
        return contact

    # -- codes, grants and tokens ---------------------------------------------------------------

    def issue_code(self, data: dict[str, Any]) -> str:
        """Store a new single-use authorization code (counted as ``authorize``)."""
        code = secrets.token_urlsafe(32)
        self.set("code", code, data, timeout=CODE_TTL)
        self.incr("count", "authorize")
        return code

    def consume_code(self, code: str) -> dict[str, Any] | None:
        """A code's data for the one caller whose delete removed it, if it has not expired."""
        key = self.key("code", code)
        data: dict[str, Any] | None = self.cache.get(key)
        if data is None or not self.cache.delete(key):
            return None
        return data if self.clock() - data["issued_at"] <= CODE_LIFETIME else None

    def create_grant(
        self,
        client_id: str,
        organization_id: str | None,
        scopes: list[str],
        connection_name: str | None,
    ) -> dict[str, Any]:
        """Open a new connection to a company (see :meth:`find_company`) and issue its first
        token pair."""
        grant: Grant = {
            "connection_id": str(uuid.uuid4()),
            "client_id": client_id,
            "scopes": list(scopes),
            "connection_name": connection_name,
            "company": self.find_company(organization_id),
            "created_at": self.clock(),
            "access_token": "",
            "refresh_token": "",
        }
        with self.lock("grant-index"):  # the "Verbundene Apps" page lists the live grants
            self.set("grant-index", "", [*(self.get("grant-index") or []), grant["connection_id"]])
        return self._new_tokens(grant)

    def live_grants(self) -> list[Grant]:
        """The live grants (connections), oldest first."""
        found = (self.get("grant", cid) for cid in self.get("grant-index") or [])
        return [grant for grant in found if grant is not None]

    def _new_tokens(self, grant: Grant) -> dict[str, Any]:
        issued_at = self.clock()
        grant["access_token"] = _new_access_token(issued_at)
        grant["refresh_token"] = "".join(
            secrets.choice(_TOKEN_ALPHABET) for _ in range(REFRESH_TOKEN_LENGTH)
        )
        expires_at = issued_at + ACCESS_TOKEN_LIFETIME
        self.set("access", grant["access_token"], (grant["connection_id"], expires_at))
        self.set("refresh", grant["refresh_token"], grant["connection_id"])
        self.set("grant", grant["connection_id"], grant)
        return {
            "access_token": grant["access_token"],
            "expires_in": EXPIRES_IN,
            "refresh_token": grant["refresh_token"],
            "scope": _scope_echo(grant["scopes"]),
            "token_type": "Bearer",
        }

    def issue_tokens(
        self,
        client_id: str,
        *,
        organization_id: str | None = None,
        scopes: list[str] | None = None,
        connection_name: str | None = None,
    ) -> dict[str, Any]:
        """A new connection without the browser flow: a dict like Lexware's token response.

        ``organization_id``: an id or company name (default: the first company). ``scopes``
        default to what the client is provisioned for. Not counted in ``count("token")``.
        """
        client = self.get_client(client_id)
        if client is None:
            raise FakeLexwareError(f"client {client_id!r} is not registered")
        scopes = list(scopes) if scopes is not None else client["scopes"]
        bad = [scope for scope in scopes if scope not in client["scopes"]]
        if bad:
            raise FakeLexwareError(f"scopes not available to {client_id!r}: {bad}")
        return self.create_grant(client_id, organization_id, scopes, connection_name)

    def find_company(self, company: str | None) -> Company:
        """A company by organization id or name; ``None``: the first one."""
        companies = self.companies()
        for candidate in companies:
            if company in (None, candidate["organization_id"], candidate["company_name"]):
                return candidate
        raise FakeLexwareError(f"unknown company {company!r}")

    def grant_for_refresh_token(self, refresh_token: str) -> Grant | None:
        """The live grant whose CURRENT refresh token this is."""
        connection_id = self.get("refresh", refresh_token)
        grant: Grant | None = self.get("grant", connection_id) if connection_id else None
        return grant

    def grant_for_access_token(self, access_token: str) -> Grant | None:
        """The grant of a valid (known, unexpired, not revoked) access token."""
        record = self.get("access", access_token)
        if record is None or self.clock() >= record[1]:
            return None
        grant: Grant | None = self.get("grant", record[0])
        return grant if grant is not None and grant["access_token"] == access_token else None

    def rotate(self, refresh_token: str, client_id: str) -> dict[str, Any] | None:
        """The refresh grant: a new access AND refresh token, the old pair dead. ``None``:
        invalid_grant. A refresh token presented again after its rotation, as the second of
        two concurrent refreshes does, ends the connection: Lexware's "two concurrent
        refreshes with the same refresh token break the connection"."""
        connection_id = self.get("refresh", refresh_token) or self.get("spent", refresh_token)
        if connection_id is None:
            return None
        with self.lock(f"grant:{connection_id}"):  # one rotation or ending at a time
            grant: Grant | None = self.get("grant", connection_id)
            if grant is None or grant["client_id"] != client_id:
                return None
            if grant["refresh_token"] != refresh_token:
                self._delete_grant(grant)
                return None
            self.delete("refresh", refresh_token)
            self.delete("access", grant["access_token"])
            self.set("spent", refresh_token, connection_id)
            response = self._new_tokens(grant)
        self.incr("count", "refresh")
        self.incr("count-refresh", connection_id)
        return response

    def end_grant(self, grant: Grant) -> None:
        """End a connection: its current refresh and access token die with it, also when
        a rotation is under way."""
        with self.lock(f"grant:{grant['connection_id']}"):
            current: Grant | None = self.get("grant", grant["connection_id"])
            if current is not None:
                self._delete_grant(current)

    def _delete_grant(self, grant: Grant) -> None:
        self.delete("refresh", grant["refresh_token"])
        self.delete("access", grant["access_token"])
        self.delete("grant", grant["connection_id"])
        # Lexware deletes a revoked grant's event subscriptions with it.
        with self.lock("subscriptions"):
            kept = [s for s in self.subscriptions() if s["connectionId"] != grant["connection_id"]]
            self.set("subscriptions", "", kept)

    def subscriptions(self) -> list[dict[str, Any]]:
        """Every event subscription the fake holds (with ``connectionId``), oldest first."""
        return list(self.get("subscriptions") or [])

    def revoke_token(self, token: str, client_id: str) -> None:
        """RFC 7009 for one client: a refresh token ends its grant, an access token only
        itself; another client's token is left alone."""
        grant = self.grant_for_refresh_token(token)
        if grant is not None and grant["client_id"] == client_id:
            self.end_grant(grant)
            return
        owner = self.grant_for_access_token(token)
        if owner is not None and owner["client_id"] == client_id:
            self.delete("access", token)

    def is_refresh_token_valid(self, refresh_token: str) -> bool:
        """Whether this is the current refresh token of a live connection."""
        return self.grant_for_refresh_token(refresh_token) is not None

    def is_access_token_valid(self, access_token: str) -> bool:
        """Whether the API would accept this access token now."""
        return self.grant_for_access_token(access_token) is not None

    def invalidate_access_token(self, access_token: str) -> None:
        """Kill an access token early, as Lexware does after a password change: API -> 401."""
        self.delete("access", access_token)

    def connection_id_for(self, token: str) -> str | None:
        """The ``connectionId`` a current refresh or access token belongs to."""
        connection_id = self.get("refresh", token)
        if connection_id:
            return str(connection_id)
        record = self.get("access", token)
        return str(record[0]) if record else None

    def revoke_connection(self, token_or_connection_id: str) -> Grant:
        """The user ends the connection inside Lexware: the next refresh answers
        ``invalid_grant``. Takes a current refresh or access token of it, or its connectionId;
        returns the ended grant."""
        connection_id = self.connection_id_for(token_or_connection_id) or token_or_connection_id
        grant: Grant | None = self.get("grant", connection_id)
        if grant is None:
            raise FakeLexwareError("no live connection has this token or connectionId")
        self.end_grant(grant)
        return grant

    # -- the API's rate limit -------------------------------------------------------------------

    def set_rate_limit(
        self, rate: float | None = DEFAULT_RATE_LIMIT, burst: int | None = None
    ) -> None:
        """API requests per second per client id, for every process; ``None`` disables it.
        ``burst`` (the bucket size) defaults to the rate rounded up."""
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None to disable the limit)")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        self.set("ratelimit", "", (rate, burst))

    def rate_limit(self) -> tuple[float | None, int]:
        """``(rate, burst)`` in force: :meth:`set_rate_limit`'s, else the settings'."""
        rate, burst = self.get("ratelimit") or (
            getattr(settings, "LEXOFFICE_FAKE_RATE_LIMIT", DEFAULT_RATE_LIMIT),
            getattr(settings, "LEXOFFICE_FAKE_RATE_LIMIT_BURST", None),
        )
        if rate is None:
            return None, 0
        return float(rate), int(burst) if burst is not None else default_burst(float(rate))

    def allow(self, client_id: str) -> bool:
        """Take a token from the client's bucket; ``False`` means answer 429.

        Hand-written: it reproduces Lexware's server side, not a client's throttle. Under the
        lock, N processes get at most ``burst + rate * t`` requests in ``t`` seconds; a request
        that cannot get the lock in time is refused, as an overloaded gateway would.
        """
        rate, burst = self.rate_limit()
        if rate is None:
            return True
        try:
            with self.lock(f"bucket:{client_id}"):
                at = self.clock()
                tokens, since = self.get("bucket", client_id) or (float(burst), at)
                # max(): a test may move the clock backwards.
                tokens = min(float(burst), tokens + max(0.0, at - since) * rate)
                allowed = tokens >= 1.0
                self.set("bucket", client_id, (tokens - 1.0 if allowed else tokens, at), 3600)
        except CacheLockBusy:
            allowed = False
        if not allowed:
            self.incr("count", "rate_limited")
        return allowed

    # -- faults ---------------------------------------------------------------------------------

    def inject(
        self,
        endpoint: str,
        kind: str,
        *,
        times: int | None = 1,
        status: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """Make ``endpoint`` fail the next ``times`` requests (``None``: until cleared).

        ``status`` (500, 502, 503 or 504) applies to ``server_error`` only, ``seconds``
        (default 1) to ``slow`` only. Which kinds each endpoint accepts: ``FAULTS_BY_ENDPOINT``.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; choose from {ENDPOINTS}")
        if kind not in FAULTS_BY_ENDPOINT[endpoint]:
            raise ValueError(
                f"fault {kind!r} does not apply to endpoint {endpoint!r}; "
                f"choose from {FAULTS_BY_ENDPOINT[endpoint]}"
            )
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for every request)")
        if status is not None and (kind != "server_error" or status not in SERVER_ERROR_STATUSES):
            raise ValueError(
                f"status= applies to server_error only, one of {SERVER_ERROR_STATUSES}"
            )
        if seconds is not None and kind != "slow":
            raise ValueError("seconds= applies to the slow fault only")
        fault = {
            "kind": kind,
            "times": times,
            "status": status or 500,
            "seconds": 1.0 if seconds is None else float(seconds),
        }
        self.set("fault-used", endpoint, 0)
        self.set("fault", endpoint, fault)

    def clear_faults(self, endpoint: str | None = None) -> None:
        """Disarm the injected fault of one endpoint, or of all."""
        for name in (endpoint,) if endpoint else ENDPOINTS:
            self.delete("fault", name)

    def take_fault(self, endpoint: str) -> dict[str, Any] | None:
        """The fault for this request, if one is armed and not used up (each of ``times``
        shots goes to exactly one request, across processes)."""
        fault: dict[str, Any] | None = self.get("fault", endpoint)
        if fault is None or fault["times"] is None:
            return fault
        return fault if self.incr("fault-used", endpoint) <= fault["times"] else None


def _contact(organization_id: str, name: str, number: int, contact_id: uuid.UUID) -> dict[str, Any]:
    # A company contact in Lexware's shape (customer role).
    return {
        "id": str(contact_id),
        "organizationId": organization_id,
        "version": 1,
        "roles": {"customer": {"number": number}},
        "company": {"name": name},
        "archived": False,
    }
