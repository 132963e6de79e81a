"""Which connections refresh keeps fresh (``LEXOFFICE_REFRESH_POLICY``), and what that costs.

Lexware allows one client about 2 requests per second, refresh included, and an access token
lives 4 hours: keeping a connection fresh costs about six refreshes a day, so one client can
keep at most ~25,000 connections fresh with nothing left for the API. Two policies:

``keep_fresh`` (default)
    Every active connection is refreshed shortly before its access token expires.
``on_use``
    Only connections used through the client within ``LEXOFFICE_REFRESH_ACTIVE_WINDOW`` are
    kept fresh; an idle one is refreshed every ``LEXOFFICE_IDLE_REFRESH_INTERVAL`` only to keep
    its refresh token alive, and the client refreshes it when it is next used (the user then
    waits for one extra request).

The decision is written once, as pure functions on plain values (:func:`is_due`,
:func:`next_due`: any object with a connection's timestamps, a model instance or an in-memory
row, so the capacity simulation in ``benchmarks/`` drives this very code), with its QuerySet
counterpart :func:`due_q` / :func:`due_connections`. :func:`record_use` notes a use cheaply;
:func:`refresh_capacity` and :func:`current_capacity` say in plain words what share of the
client's request budget refresh needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext, ngettext

from .conf import DEFAULT_ACTIVE_WINDOW, DEFAULT_IDLE_REFRESH_INTERVAL
from .conf import settings as lexoffice_settings

if TYPE_CHECKING:
    from .models import LexofficeConnection

#: Lexware's access tokens live 4 hours (``expires_in`` is about 14399).
ACCESS_TOKEN_LIFETIME = timedelta(seconds=14399)
#: :func:`record_use` writes ``last_used_at`` at most this often per connection.
USE_RECORD_INTERVAL = timedelta(hours=1)
#: Above this share of the client's requests, refresh leaves too little for the API: warn.
CAPACITY_WARNING_SHARE = 0.5

_ACTIVE = "active"

#: The fields of a connection the decision reads (a row loaded without them cannot decide).
FIELDS = frozenset(
    {"status", "expires_at", "last_used_at", "last_refreshed_at", "created_at", "next_attempt_at"}
)


class RefreshPolicy(StrEnum):
    """The values of ``LEXOFFICE_REFRESH_POLICY``."""

    KEEP_FRESH = "keep_fresh"
    ON_USE = "on_use"


class RefreshState(Protocol):
    """What the decision reads of a connection (a model instance or an in-memory row)."""

    @property
    def status(self) -> str: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def last_used_at(self) -> datetime | None: ...
    @property
    def last_refreshed_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def next_attempt_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Rules:
    """A policy with its numbers; :meth:`from_settings` reads them from the settings."""

    policy: RefreshPolicy = RefreshPolicy.KEEP_FRESH
    margin: timedelta = timedelta(seconds=300)
    active_window: timedelta = DEFAULT_ACTIVE_WINDOW
    idle_interval: timedelta = DEFAULT_IDLE_REFRESH_INTERVAL

    @classmethod
    def from_settings(cls, *, margin: float | timedelta | None = None) -> Rules:
        """The configured rules; ``margin`` (seconds) overrides ``LEXOFFICE_REFRESH_MARGIN``."""
        if margin is None:
            margin = lexoffice_settings.REFRESH_MARGIN
        return cls(
            policy=RefreshPolicy(lexoffice_settings.REFRESH_POLICY),
            margin=margin if isinstance(margin, timedelta) else timedelta(seconds=margin),
            active_window=lexoffice_settings.REFRESH_ACTIVE_WINDOW,
            idle_interval=lexoffice_settings.IDLE_REFRESH_INTERVAL,
        )


# -- the decision on plain values --------------------------------------------------------------


def _expiring_from(row: RefreshState, rules: Rules) -> datetime | None:
    """When the access token enters the margin (``None``: expiry unknown, so at once)."""
    return None if row.expires_at is None else row.expires_at - rules.margin


def _alive_since(row: RefreshState) -> datetime:
    """When the refresh token last changed (the last refresh, else the connection's creation)."""
    return row.last_refreshed_at or row.created_at


def _kept_fresh_until(row: RefreshState, rules: Rules) -> datetime | None:
    """``on_use``: until when the connection counts as recently used (``None``: never used)."""
    return None if row.last_used_at is None else row.last_used_at + rules.active_window


def is_due(row: RefreshState, rules: Rules, now: datetime) -> bool:
    """Should a refresh run refresh ``row`` at ``now`` under ``rules``?

    Never while a backoff after a failure runs (``next_attempt_at``) or when the connection
    is not active. ``keep_fresh``: when the access token expires within the margin (or its
    expiry is unknown). ``on_use``: the same, but only for a connection used within the
    active window; and any connection whose refresh token is older than the idle interval.
    """
    if row.status != _ACTIVE:
        return False
    if row.next_attempt_at is not None and row.next_attempt_at > now:
        return False
    expiring_from = _expiring_from(row, rules)
    expiring = expiring_from is None or expiring_from <= now
    if rules.policy is RefreshPolicy.KEEP_FRESH:
        return expiring
    kept_until = _kept_fresh_until(row, rules)
    if expiring and kept_until is not None and now <= kept_until:
        return True
    return _alive_since(row) + rules.idle_interval <= now


def next_due(row: RefreshState, rules: Rules, *, after: datetime) -> datetime | None:
    """The first moment at or after ``after`` when :func:`is_due` holds, if nothing about
    ``row`` changes meanwhile (``None``: never). A scheduler (the capacity simulation) visits
    rows in this order instead of asking every row every minute.
    """
    if row.status != _ACTIVE:
        return None
    not_before = max(after, row.next_attempt_at) if row.next_attempt_at else after
    expiring_from = _expiring_from(row, rules)
    expiring_at = not_before if expiring_from is None else max(not_before, expiring_from)
    if rules.policy is RefreshPolicy.KEEP_FRESH:
        return expiring_at
    candidates = [max(not_before, _alive_since(row) + rules.idle_interval)]
    kept_until = _kept_fresh_until(row, rules)
    if kept_until is not None and expiring_at <= kept_until:
        candidates.append(expiring_at)
    return min(candidates)


# -- the same decision as a database filter ----------------------------------------------------


def due_q(rules: Rules | None = None, now: datetime | None = None) -> Q:
    """:func:`is_due` as a ``Q`` on ``LexofficeConnection`` (status, backoff and policy).

    ``rules`` default to :meth:`Rules.from_settings`, ``now`` to the current time.
    """
    rules = rules or Rules.from_settings()
    now = now or timezone.now()
    not_backing_off = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    expiring = Q(expires_at__isnull=True) | Q(expires_at__lte=now + rules.margin)
    if rules.policy is RefreshPolicy.KEEP_FRESH:
        wanted = expiring
    else:
        idle_since = now - rules.idle_interval
        idle_too_long = Q(last_refreshed_at__lte=idle_since) | Q(
            last_refreshed_at__isnull=True, created_at__lte=idle_since
        )
        recently_used = Q(last_used_at__gte=now - rules.active_window)
        wanted = (expiring & recently_used) | idle_too_long
    return Q(status=_ACTIVE) & not_backing_off & wanted


def due_connections(
    queryset: Any = None, *, rules: Rules | None = None, now: datetime | None = None
) -> Any:
    """``queryset`` (default: every connection) narrowed to those :func:`is_due` picks."""
    if queryset is None:
        from .models import LexofficeConnection

        queryset = LexofficeConnection.objects.all()
    return queryset.filter(due_q(rules, now))


# -- recording use -----------------------------------------------------------------------------


def record_use(connection: LexofficeConnection, *, now: datetime | None = None) -> bool:
    """Note that ``connection`` was just used (for ``on_use``), cheaply.

    At most one write per connection per :data:`USE_RECORD_INTERVAL`: skipped without a
    query when the instance shows a use within the hour, and the UPDATE itself matches only
    an older ``last_used_at``, so processes racing each other write once. Never inside the
    caller's transaction: there it runs after the transaction commits
    (``transaction.on_commit``; nothing is written if it rolls back), so a use never holds
    the caller's row lock nor fails its transaction. Returns whether the write was made
    (or scheduled).
    """
    from .models import LexofficeConnection

    now = now or timezone.now()
    since = now - USE_RECORD_INTERVAL
    if connection.pk is None or (
        connection.last_used_at is not None and connection.last_used_at > since
    ):
        return False
    connection.last_used_at = now  # this instance does not ask again within the hour
    pk = connection.pk
    db = connection._state.db or "default"

    def write() -> None:
        LexofficeConnection.objects.using(db).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=since), pk=pk
        ).update(last_used_at=now)

    transaction.on_commit(write, using=db)
    return True


# -- capacity in plain words -------------------------------------------------------------------


def refresh_interval(rules: Rules) -> timedelta:
    """How often a kept-fresh connection is refreshed: the access token's life less the margin."""
    return max(ACCESS_TOKEN_LIFETIME - rules.margin, timedelta(seconds=1))


@dataclass(frozen=True)
class Capacity:
    """What share of the client's request budget refresh needs (``str()`` says it in words)."""

    connections: int
    kept_fresh: int  # refreshed before every expiry
    idle: int  # refreshed only to stay alive (``on_use``)
    needed: float  # refresh requests per second
    budget: float  # the client's requests per second (``LEXOFFICE_RATE_LIMIT``)
    rules: Rules
    alternative: float | None = None  # what ``on_use`` would need, under ``keep_fresh``

    @property
    def share(self) -> float:
        return self.needed / self.budget

    @property
    def too_much(self) -> bool:
        """Refresh leaves too little for the API calls (above :data:`CAPACITY_WARNING_SHARE`)."""
        return self.share > CAPACITY_WARNING_SHARE

    def __str__(self) -> str:
        return ngettext(
            "%(count)s connection needs %(needed)s req/s of %(budget)s (%(percent)s %%) "
            'to refresh under "%(policy)s".',
            "%(count)s connections need %(needed)s req/s of %(budget)s (%(percent)s %%) "
            'to refresh under "%(policy)s".',
            self.connections,
        ) % {
            "count": number_format(self.connections, force_grouping=True),
            "needed": _requests_per_second(self.needed),
            "budget": _requests_per_second(self.budget),
            "percent": number_format(round(self.share * 100)),
            "policy": self.rules.policy.value,
        }

    @property
    def warning(self) -> str:
        """The fix, in words, when refresh needs too much; empty otherwise."""
        if not self.too_much:
            return ""
        second_client = gettext(
            "A site this size needs more than one Lexware client id, which django-lexoffice "
            "does not support yet."
        )
        if self.rules.policy is RefreshPolicy.KEEP_FRESH and self.alternative is not None:
            instead = gettext(
                "Refresh leaves too little of the rate limit for API calls. Set "
                'LEXOFFICE_REFRESH_POLICY = "on_use": it would need %(needed)s req/s '
                "(%(percent)s %%)."
            ) % {
                "needed": _requests_per_second(self.alternative),
                "percent": number_format(round(self.alternative / self.budget * 100)),
            }
            if self.alternative / self.budget > CAPACITY_WARNING_SHARE:
                return f"{instead} {second_client}"
            return instead
        return "{} {}".format(
            gettext(
                'Refresh leaves too little of the rate limit for API calls, even under "on_use".'
            ),
            second_client,
        )


def _requests_per_second(value: float) -> str:
    """``0.09``, ``1.8``, ``0.0001``: two decimals, more for tiny loads (localized, rounded;
    Django's ``number_format`` alone would cut the digits off)."""
    decimals = 2 if value >= 0.01 or value == 0 else 4
    return number_format(round(value, decimals))


def refresh_capacity(
    connections: int,
    *,
    recently_used: int | None = None,
    rules: Rules | None = None,
    rate: float | None = None,
) -> Capacity:
    """The refresh load of ``connections`` active connections under ``rules`` (default: the
    settings) against ``rate`` requests/s (default ``LEXOFFICE_RATE_LIMIT``).

    ``recently_used``: how many were used within the active window (``on_use`` keeps those
    fresh; unknown counts all). Steady state: a kept-fresh connection is refreshed once per
    :func:`refresh_interval`, an idle one once per idle interval.
    """
    rules = rules or Rules.from_settings()
    budget = float(rate if rate is not None else lexoffice_settings.RATE_LIMIT)
    connections = max(0, int(connections))
    used = connections if recently_used is None else min(connections, max(0, recently_used))
    fresh_rate = 1 / refresh_interval(rules).total_seconds()
    idle_rate = 1 / rules.idle_interval.total_seconds()
    on_use = used * fresh_rate + (connections - used) * idle_rate
    if rules.policy is RefreshPolicy.KEEP_FRESH:
        keep_fresh = connections * fresh_rate
        return Capacity(connections, connections, 0, keep_fresh, budget, rules, alternative=on_use)
    return Capacity(connections, used, connections - used, on_use, budget, rules)


def current_capacity(
    queryset: Any = None, *, rules: Rules | None = None, now: datetime | None = None
) -> Capacity:
    """:func:`refresh_capacity` for the active connections in the database (one query)."""
    from .models import LexofficeConnection

    rules = rules or Rules.from_settings()
    now = now or timezone.now()
    queryset = LexofficeConnection.objects.all() if queryset is None else queryset
    counts = queryset.filter(status=_ACTIVE).aggregate(
        total=Count("pk"), used=Count("pk", filter=Q(last_used_at__gte=now - rules.active_window))
    )
    return refresh_capacity(counts["total"], recently_used=counts["used"], rules=rules)
