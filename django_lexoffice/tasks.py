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

from datetime import datetime

from . import ratelimit
from .batch import Selection, due_connections, iter_due, load_row
from .renewal import send_reauthorization_due
from .subscriptions import subscribe_connection as subscribe
from .subscriptions import sync_all
from .tokens import RefreshOutcome, attempt_refresh
from .webhooks import Event, dispatch_inline, prune_events


@shared_task(name="django_lexoffice.tasks.refresh_expiring_connections", ignore_result=True)
def refresh_expiring_connections(margin: float | None = None) -> int:
    """Queue one :func:`refresh_connection` per connection due for a refresh; return how many."""
    queued = 0
    for connection in iter_due(due_connections(Selection(margin=margin))):
        refresh_connection.delay(connection.pk, margin=margin)
        queued += 1
    # The two-year renewal (issue 15): remind once per authorization, like the command.
    send_reauthorization_due()
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
    # The row as it is now: a task queued twice, or for a row refreshed since the beat run
    # saw it, is skipped without spending a rate-limit slot.
    connection = load_row(pk)
    if connection is None:
        return RefreshOutcome.NOT_ACTIVE.value
    with ratelimit.background():
        result = attempt_refresh(connection, margin=margin, skip_locked=True)
    if result.outcome is RefreshOutcome.CLIENT_REFUSED and result.error is not None:
        raise result.error
    return result.outcome.value


@shared_task(name="django_lexoffice.tasks.send_event_received", ignore_result=True)
def send_event_received(
    event_type: str, resource_id: str, organization_id: str, event_date: str
) -> None:
    """Send ``event_received`` for a webhook event, outside the request Lexware waits on
    (``LEXOFFICE_WEBHOOK_USE_CELERY = True``). ``event_date``: ISO 8601 with offset."""
    dispatch_inline(
        Event(
            organization_id=organization_id,
            event_type=event_type,
            resource_id=resource_id,
            event_date=datetime.fromisoformat(event_date),
        )
    )


@shared_task(name="django_lexoffice.tasks.subscribe_connection", ignore_result=True)
def subscribe_connection(pk: int) -> list[str]:
    """Subscribe a freshly authorized connection to ``LEXOFFICE_WEBHOOK_EVENTS`` (queued on
    commit of the login with ``LEXOFFICE_WEBHOOK_USE_CELERY``); return the errors."""
    return subscribe(pk)


@shared_task(name="django_lexoffice.tasks.sync_subscriptions", ignore_result=True)
def sync_subscriptions() -> dict[str, int]:
    """``sync_lexoffice_subscriptions`` as a task (beat, e.g. daily): repair subscriptions
    and prune webhook event records older than a week."""
    summary = sync_all()
    pruned = prune_events()
    return {
        "connections": summary.connections,
        "created": summary.created,
        "deleted": summary.deleted,
        "failed": summary.failed,
        "pruned": pruned,
    }
