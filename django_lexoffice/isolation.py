"""Writes that must commit on their own, whatever transaction the caller holds.

When Lexware rotates a refresh token, the new one must reach the database even if the view
that triggered the refresh fails a moment later: under ``ATOMIC_REQUESTS = True`` (or any
``transaction.atomic()`` of the caller) the new pair would be rolled back with the view while
the old refresh token is already dead at Lexware. :func:`run_committed` runs such work in a
transaction of its own:

* outside any transaction of the caller, it simply runs (the work opens its own
  ``transaction.atomic()``); the atomic blocks of Django's ``TestCase`` do not count;
* inside one, on PostgreSQL and other servers, it runs in a short-lived thread with its own
  database connection, which commits independently; :func:`lock_timeout` bounds how long it
  waits for a row the caller's transaction may hold (PostgreSQL cannot see that deadlock);
* inside one, on SQLite, it refuses before anything is sent to Lexware: a second connection
  cannot write while the caller's transaction holds the database file.

Refresh, revoke and (later) webhooks and usage records go through here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.views.decorators.debug import sensitive_variables

from .conf import settings as lexoffice_settings
from .exceptions import ConnectionBusy, OwnTransactionUnavailable

T = TypeVar("T")

#: Set in the threads :func:`run_committed` starts beside a caller's transaction.
_beside_callers_transaction = threading.local()

#: PostgreSQL's SQLSTATE for lock_not_available (raised when lock_timeout expires).
_LOCK_NOT_AVAILABLE = "55P03"


def in_callers_transaction(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether the current thread holds an open transaction of its own on ``using``.

    The atomic blocks Django's ``TestCase`` (and pytest-django's ``db`` fixture) wrap
    around each test are not the caller's: their data would be invisible to a second
    connection, and a test's writes are rolled back anyway.
    """
    connection = connections[using]
    if not connection.in_atomic_block:
        return False
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def run_committed(func: Callable[[], T], *, using: str = DEFAULT_DB_ALIAS) -> T:
    """Run ``func`` so that the transactions it opens commit on their own.

    Raises :class:`OwnTransactionUnavailable` on SQLite inside the caller's transaction.
    """
    if not in_callers_transaction(using):
        return func()
    if connections[using].vendor == "sqlite":
        raise OwnTransactionUnavailable(
            "django-lexoffice must store Lexware's new tokens in a transaction of their own, "
            "but this code runs inside transaction.atomic() (or ATOMIC_REQUESTS) on SQLite, "
            "where a second connection cannot write. Call it outside the atomic block, "
            "mark the view with @transaction.non_atomic_requests, or use PostgreSQL."
        )
    outcome: dict[str, Any] = {}

    # Every frame below runs in another thread: error reports follow a frame's callers to
    # find sensitive_variables, and these lead to the thread's start, not to our caller's.
    @sensitive_variables()
    def target() -> None:
        _beside_callers_transaction.active = True
        try:
            outcome["value"] = func()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc
        finally:
            connections.close_all()  # this thread's connections only

    # Django's connections are per thread: a thread gets its own, outside the caller's
    # transaction. It is joined at once; nothing runs after the caller returns.
    worker = threading.Thread(target=target, name="django-lexoffice-own-transaction")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def lock_timeout_seconds() -> float:
    """How long to wait for a connection's row lock: a refresh by another worker holds it
    for at most one call to Lexware (``LEXOFFICE_TIMEOUT``), plus some slack."""
    connect, read = lexoffice_settings.TIMEOUT
    return connect + read + 10


@contextmanager
def lock_timeout(pk: Any, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Bound the wait for row locks in the current transaction (PostgreSQL); turn a timeout
    into :class:`ConnectionBusy`. Use inside ``transaction.atomic()``, around the block.

    Only a thread working beside the caller's transaction can wait on a lock that very
    transaction holds, a deadlock PostgreSQL cannot see; elsewhere the holder is another
    worker, done within one call to Lexware. So the bound (one more query) is set there only.
    """
    connection = connections[using]
    beside_caller = getattr(_beside_callers_transaction, "active", False)
    if beside_caller and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            milliseconds = int(lock_timeout_seconds() * 1000)
            cursor.execute(f"SET LOCAL lock_timeout = {milliseconds}")
    try:
        yield
    except OperationalError as exc:
        cause = exc.__cause__
        sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if sqlstate != _LOCK_NOT_AVAILABLE:
            raise
        raise ConnectionBusy(
            f"lexoffice connection {pk} stayed locked for {lock_timeout_seconds():.0f} s: "
            "another worker is refreshing it, or the caller's own transaction changed this "
            "connection before asking for a refresh. Refresh outside that transaction."
        ) from None
