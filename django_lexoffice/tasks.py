"""Celery tasks (optional extra: ``pip install "django-lexoffice[celery]"``).

Fan-out, one task per connection: the periodic
:func:`refresh_expiring_connections` finds the connections due for a refresh
(one query per batch, no Lexware call) and queues :func:`refresh_connection` for
each, so any number of workers share the work. Each task refreshes through
:func:`django_lexoffice.tokens.refresh`: the row lock makes it single-flight even
when a connection is queued twice, and the cache-backed token bucket keeps all
workers together within Lexware's rate limit (use a shared cache such as Redis).

Beat schedule example (settings.py)::

    CELERY_BEAT_SCHEDULE = {
        "refresh-lexoffice-tokens": {
            "task": "django_lexoffice.tasks.refresh_expiring_connections",
            "schedule": 120.0,  # seconds
        },
    }
"""

from __future__ import annotations

try:
    from celery import shared_task
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'django_lexoffice.tasks needs Celery: pip install "django-lexoffice[celery]"'
    ) from exc

from .batch import due_connections, iter_due
from .models import LexofficeConnection
from .tokens import RefreshOutcome, attempt_refresh


@shared_task(name="django_lexoffice.tasks.refresh_expiring_connections", ignore_result=True)
def refresh_expiring_connections(margin: float | None = None) -> int:
    """Queue one :func:`refresh_connection` per connection due for a refresh; return how many."""
    queued = 0
    for connection in iter_due(due_connections(margin=margin)):
        refresh_connection.delay(connection.pk, margin=margin)
        queued += 1
    return queued


@shared_task(name="django_lexoffice.tasks.refresh_connection", ignore_result=True)
def refresh_connection(pk: int, margin: float | None = None) -> str:
    """Refresh one connection if it is still due; return the outcome's name
    (a :class:`~django_lexoffice.tokens.RefreshOutcome` value).

    A row another worker holds is skipped (that worker is refreshing it), a
    fresh row is skipped, failures are recorded on the row by ``tokens.refresh``
    and retried by a later beat run after the row's backoff. Lexware refusing the
    client is raised, so Celery's error reporting sees it.
    """
    result = attempt_refresh(LexofficeConnection(pk=pk), margin=margin, skip_locked=True)
    if result.outcome is RefreshOutcome.CLIENT_REFUSED and result.error is not None:
        raise result.error
    return result.outcome.value
