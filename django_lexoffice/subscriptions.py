"""Event subscriptions at Lexware: every active connection subscribed to
``LEXOFFICE_WEBHOOK_EVENTS`` at ``LEXOFFICE_WEBHOOK_URL``, and nothing else of ours left.

A subscription belongs to the grant whose token created it (Lexware deletes it with the
grant), so each code exchange subscribes again (:func:`subscribe_after_login`, on commit of
the login). Those calls have a short timeout and never break a login: a failure is recorded
as a :class:`~django_lexoffice.models.LexofficeSubscription` without id, and
:func:`sync_connection` (``manage.py sync_lexoffice_subscriptions`` and its Celery task)
repairs it. While Lexware handles a subscription it checks the callback URL with a HEAD
request: a single-process server cannot answer that while it waits here, so run the
subscription calls in Celery (``LEXOFFICE_WEBHOOK_USE_CELERY``) or with several workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from django.db import transaction
from django.utils import timezone

from . import ratelimit
from .client import LexofficeClient
from .conf import settings as lexoffice_settings
from .exceptions import LexofficeError
from .http import require_secure_url
from .models import LexofficeConnection, LexofficeSubscription
from .redaction import json_or_none

logger = logging.getLogger(__name__)

PATH = "/v1/event-subscriptions"
#: Seconds each subscription call may take (connect, read): a login waits for them.
TIMEOUT = (5.0, 5.0)


class SubscriptionError(LexofficeError):
    """A subscription call failed; the message says which and why (no token)."""


@dataclass
class SyncResult:
    """What :func:`sync_connection` did (or would do, with ``dry_run``) for one connection."""

    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def callback_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a callback URL, or ``None``: absolute https (plain http only to
    loopback, for tests), and no credentials, query or fragment (it must carry no secret)."""
    parts = urlsplit(url)
    if parts.username or parts.password or parts.query or parts.fragment:
        return "it must not carry credentials, a query string or a fragment"
    try:
        require_secure_url(url)
    except LexofficeError:
        return "it must be an absolute https URL"
    return None


def wanted() -> set[tuple[str, str]]:
    """(event type, callback URL) pairs every active connection should have."""
    url = lexoffice_settings.WEBHOOK_URL
    if not url or callback_url_problem(url):
        return set()
    return {(event, url) for event in lexoffice_settings.WEBHOOK_EVENTS}


def _client(connection: LexofficeConnection) -> LexofficeClient:
    return LexofficeClient(connection, timeout=TIMEOUT, max_retries=1)


def _create(client: LexofficeClient, event_type: str, url: str) -> str | None:
    """POST one subscription; its id, or ``None`` when Lexware already has it (409)."""
    response = client.post(
        PATH, json={"eventType": event_type, "callbackUrl": url}, raise_for_status=False
    )
    if response.status_code == 409:
        return None
    if response.status_code != 201:
        raise SubscriptionError(f"subscribing to {event_type} answered HTTP {response.status_code}")
    return str(_json_object(response, f"subscribing to {event_type}").get("id") or "")


def _record(connection: LexofficeConnection, event_type: str, url: str, **values: Any) -> None:
    LexofficeSubscription.objects.update_or_create(
        connection=connection, event_type=event_type, callback_url=url, defaults=values
    )


def _list(client: LexofficeClient) -> list[dict[str, Any]]:
    content = _json_object(client.get(PATH), "listing subscriptions").get("content") or []
    if not isinstance(content, list):
        raise SubscriptionError("listing subscriptions: unexpected answer, 'content' is not a list")
    return [item for item in content if isinstance(item, dict)]


def _json_object(response: requests.Response, what: str) -> dict[str, Any]:
    """The JSON object of a successful answer to ``what``.

    Anything else (``[]``, ``null``, not JSON) raises :class:`SubscriptionError`, which the
    sync and the login handle, where an ``AttributeError`` would stop a whole sync run. The
    message names the call and status only, never the body."""
    body = json_or_none(response)
    if not isinstance(body, dict):
        raise SubscriptionError(
            f"{what} answered HTTP {response.status_code}: unexpected answer, not a JSON object"
        )
    return body


def subscribe(connection: LexofficeConnection) -> list[str]:
    """Subscribe ``connection`` to every wanted event; return the errors (recorded, not raised).

    Our old records of the connection are dropped first: they belonged to the grant this
    code exchange replaced.
    """
    LexofficeSubscription.objects.filter(connection=connection).delete()
    errors: list[str] = []
    pairs = sorted(wanted())
    if not pairs:
        return errors
    with _client(connection) as client:
        known: dict[tuple[str, str], str] | None = None
        for event_type, url in pairs:
            try:
                subscription_id = _create(client, event_type, url)
                if subscription_id is None:  # 409: already there; learn its id
                    if known is None:
                        known = {
                            (str(i.get("eventType")), str(i.get("callbackUrl"))): str(
                                i.get("subscriptionId") or ""
                            )
                            for i in _list(client)
                        }
                    subscription_id = known.get((event_type, url), "")
            except (LexofficeError, ValueError) as exc:
                message = f"{type(exc).__name__}: {exc}"[:2000]
                errors.append(message)
                _record(
                    connection,
                    event_type,
                    url,
                    subscription_id="",
                    last_error=message,
                    last_error_at=timezone.now(),
                )
                logger.warning(
                    "Subscribing lexoffice connection %s to %s failed: %s",
                    connection.pk,
                    event_type,
                    message,
                )
                continue
            _record(connection, event_type, url, subscription_id=subscription_id, last_error="")
    return errors


def subscribe_connection(pk: int) -> list[str]:
    """Subscribe the connection ``pk`` if it is still active; never raises."""
    connection = LexofficeConnection.objects.filter(pk=pk).first()
    if connection is None or not connection.is_active:
        return []
    try:
        return subscribe(connection)
    except Exception as exc:  # a login must never fail because of this
        logger.exception("Subscribing lexoffice connection %s failed", pk)
        return [type(exc).__name__]


def subscribe_after_login(connection: LexofficeConnection) -> None:
    """After the login commits, subscribe the connection (inline, or as a Celery task with
    ``LEXOFFICE_WEBHOOK_USE_CELERY``). Does nothing without ``LEXOFFICE_WEBHOOK_URL``."""
    if not lexoffice_settings.WEBHOOK_URL:
        return
    pk = connection.pk

    def start() -> None:
        if lexoffice_settings.WEBHOOK_RECEIVERS_IN_CELERY:
            from .tasks import subscribe_connection as task

            task.delay(pk)
        else:
            subscribe_connection(pk)

    transaction.on_commit(start, robust=True)


def sync_connection(connection: LexofficeConnection, *, dry_run: bool = False) -> SyncResult:
    """List the connection's subscriptions at Lexware, create what is missing and delete ours
    that are no longer wanted (another event type or an old callback URL)."""
    result = SyncResult()
    want = wanted()
    ours = {
        record.subscription_id: record
        for record in LexofficeSubscription.objects.filter(connection=connection)
        if record.subscription_id
    }
    with _client(connection) as client:
        present: set[tuple[str, str]] = set()
        for item in _list(client):
            pair = (str(item.get("eventType")), str(item.get("callbackUrl")))
            subscription_id = str(item.get("subscriptionId") or "")
            if pair in want and pair not in present:
                present.add(pair)
                result.kept.append(pair[0])
                if not dry_run:
                    _record(connection, *pair, subscription_id=subscription_id, last_error="")
            elif subscription_id in ours:
                result.deleted.append(pair[0])
                if not dry_run:
                    response = client.delete(f"{PATH}/{subscription_id}", raise_for_status=False)
                    if response.status_code not in (204, 404):
                        raise SubscriptionError(
                            f"deleting subscription {subscription_id} answered "
                            f"HTTP {response.status_code}"
                        )
                    ours.pop(subscription_id).delete()
        if not dry_run:
            # Records Lexware no longer knows (deleted there) go; failures are retried below.
            LexofficeSubscription.objects.filter(connection=connection).exclude(
                event_type__in=[e for e, u in present], callback_url__in=[u for e, u in present]
            ).delete()
        for event_type, url in sorted(want - present):
            result.created.append(event_type)
            if not dry_run:
                subscription_id = _create(client, event_type, url) or ""
                _record(connection, event_type, url, subscription_id=subscription_id, last_error="")
    return result


@dataclass
class SyncSummary:
    """Counts of one :func:`sync_all` run."""

    connections: int = 0
    created: int = 0
    deleted: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def sync_all(
    *,
    dry_run: bool = False,
    user: Any = None,
    organization_id: str | None = None,
    report: Callable[[LexofficeConnection, SyncResult | None, str], None] | None = None,
) -> SyncSummary:
    """:func:`sync_connection` for every active connection (optionally one user's or one
    organization's), by primary key in batches. ``report(connection, result, error)`` is
    called once per connection. A batch job: its calls take only the rate-limit slots
    interactive callers leave (:func:`~django_lexoffice.ratelimit.background`)."""
    with ratelimit.background():
        return _sync_all(dry_run=dry_run, user=user, organization_id=organization_id, report=report)


def _sync_all(
    *,
    dry_run: bool,
    user: Any,
    organization_id: str | None,
    report: Callable[[LexofficeConnection, SyncResult | None, str], None] | None,
) -> SyncSummary:
    summary = SyncSummary()
    queryset = LexofficeConnection.objects.active().narrowed_to(
        user=user, organization_id=organization_id
    )
    for connection in queryset.order_by("pk").iterator(chunk_size=100):
        summary.connections += 1
        try:
            result = sync_connection(connection, dry_run=dry_run)
        except (LexofficeError, ValueError) as exc:
            summary.failed += 1
            error = f"{type(exc).__name__}: {exc}"
            summary.errors.append(error)
            if report is not None:
                report(connection, None, error)
            continue
        summary.created += len(result.created)
        summary.deleted += len(result.deleted)
        if report is not None:
            report(connection, result, "")
    return summary
