"""``lexoffice:webhook``: Lexware's signed event deliveries, and what each one does.

The order is the point (SECURITY.md 20-22): size cap (64 KiB, 413) -> signature over the
raw bytes -> JSON of exactly four keys -> deduplication -> the event is recorded and its
built-in effect (``token.revoked``) applied in one transaction -> 2xx. When that
transaction fails, the answer is a 5xx and nothing of the event is kept, so Lexware's retry
is handled as new. ``event_received`` receivers run after the commit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from . import signature, tokens
from .conf import WEBHOOK_EVENT_TYPES
from .conf import settings as lexoffice_settings
from .models import LexofficeConnection, LexofficeWebhookEvent
from .signals import event_received

logger = logging.getLogger(__name__)

#: Largest body accepted; Lexware's events are four short fields.
MAX_BODY_BYTES = 64 * 1024
#: Received events are kept this long (Lexware retries for about 41 hours).
EVENT_RETENTION = timedelta(days=7)
EVENT_KEYS = frozenset({"organizationId", "eventType", "resourceId", "eventDate"})
TOKEN_REVOKED = "token.revoked"
_MAX_FIELD_CHARS = 64


class InvalidEvent(ValueError):
    """A verified body that is not one of Lexware's events; the message says why."""


@dataclass(frozen=True)
class Event:
    """One delivered event, parsed."""

    organization_id: str
    event_type: str
    resource_id: str
    event_date: datetime

    def signal_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``event_received``, ``connections`` included."""
        return {
            "event_type": self.event_type,
            "resource_id": self.resource_id,
            "organization_id": self.organization_id,
            "event_date": self.event_date,
            "connections": LexofficeConnection.objects.active().filter(
                organization_id=self.organization_id
            ),
        }


def parse_event(body: bytes) -> Event:
    """Parse a verified body: a JSON object with exactly Lexware's four string fields."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: deep nesting
        raise InvalidEvent("the body is not JSON") from None
    if not isinstance(data, dict) or set(data) != EVENT_KEYS:
        raise InvalidEvent(f"expected a JSON object with exactly the keys {sorted(EVENT_KEYS)}")
    for key in sorted(EVENT_KEYS):
        value = data[key]
        if not isinstance(value, str) or not value.strip() or len(value) > _MAX_FIELD_CHARS:
            raise InvalidEvent(f"{key} must be a non-empty string of at most 64 characters")
        # Control characters and lone surrogates ("\ud800" in the JSON) are valid JSON, but
        # no event has them and databases refuse some (NUL on PostgreSQL).
        if not value.isprintable():
            raise InvalidEvent(f"{key} contains control characters or lone surrogates")
    return Event(
        organization_id=data["organizationId"],
        event_type=data["eventType"],
        resource_id=data["resourceId"],
        event_date=_event_date(data["eventDate"]),
    )


def _event_date(value: str) -> datetime:
    """``eventDate`` as the site's datetimes are: aware, or naive local time without
    ``USE_TZ``."""
    try:
        event_date = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("eventDate is not an ISO 8601 date and time") from None
    if timezone.is_naive(event_date):
        raise InvalidEvent("eventDate has no UTC offset")
    try:
        # Checked here, not when the database converts it: year 9999 at -14:00 is in year
        # 10000 in UTC.
        event_date.astimezone(UTC)
        return event_date if django_settings.USE_TZ else timezone.make_naive(event_date)
    except OverflowError:
        raise InvalidEvent("eventDate is out of range") from None


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _read_body(request: HttpRequest) -> bytes | None:
    """The raw body, or ``None`` when it is larger than :data:`MAX_BODY_BYTES`.

    Refuses on a declared ``Content-Length`` before reading, and never reads more than the
    cap plus one byte, whatever the header says.
    """
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        return None
    body = request.read(MAX_BODY_BYTES + 1)
    return None if len(body) > MAX_BODY_BYTES else body


@csrf_exempt  # Lexware has no CSRF token; the signature authenticates the request
@login_not_required
@never_cache
@transaction.non_atomic_requests  # our own transaction decides what is kept, not ATOMIC_REQUESTS
@require_http_methods(["POST", "HEAD"])
def webhook(request: HttpRequest) -> HttpResponse:
    """Receive one of Lexware's event deliveries (POST), or its certificate check (HEAD)."""
    if request.method == "HEAD":
        return HttpResponse(status=200)
    body = _read_body(request)
    if body is None:
        logger.warning("lexoffice webhook: body over %d bytes refused", MAX_BODY_BYTES)
        return _text(413, "request body too large")
    try:
        verified = signature.verify(body, request.headers.get(signature.SIGNATURE_HEADER))
    except signature.InvalidPublicKey as exc:
        logger.error("LEXOFFICE_WEBHOOK_PUBLIC_KEY is unusable (%s): see check lexoffice.E008", exc)
        return _text(503, "webhook verification is not configured")
    if not verified:
        # No body in the log: it is unauthenticated input.
        logger.warning(
            "lexoffice webhook: invalid signature (%d bytes from %s)",
            len(body),
            request.META.get("REMOTE_ADDR", "?"),
        )
        return _text(403, "invalid signature")
    try:
        event = parse_event(body)
    except InvalidEvent as exc:
        logger.warning("lexoffice webhook: signed but invalid event: %s", exc)
        return _text(400, f"invalid event: {exc}")
    try:
        with transaction.atomic(durable=True):
            status = record_and_apply(event)
    except Exception as exc:
        logger.exception("lexoffice webhook: handling %s failed", event.event_type)
        _record_failure(event, exc)
        return _text(500, "the event could not be processed; please retry")
    return _text(200, status)


def record_and_apply(event: Event) -> str:
    """Record ``event`` once and apply its built-in effect; return the record's status.

    Call inside a transaction: the record and the effect commit together. A copy of an
    event already recorded is kept as ``duplicate`` and changes nothing.
    """
    fields = {
        "organization_id": event.organization_id,
        "event_type": event.event_type,
        "resource_id": event.resource_id,
        "event_date": event.event_date,
    }
    duplicate = LexofficeWebhookEvent.objects.filter(
        status=LexofficeWebhookEvent.Status.VERIFIED, **fields
    ).exists()
    if not duplicate:
        try:
            with transaction.atomic():  # a savepoint: a concurrent copy may win the index
                LexofficeWebhookEvent.objects.create(
                    status=LexofficeWebhookEvent.Status.VERIFIED,
                    detail=_detail(event),
                    **fields,
                )
        except IntegrityError:
            duplicate = True
    if duplicate:
        LexofficeWebhookEvent.objects.create(
            status=LexofficeWebhookEvent.Status.DUPLICATE, **fields
        )
        logger.info("lexoffice webhook: duplicate %s ignored", event.event_type)
        return LexofficeWebhookEvent.Status.DUPLICATE.value
    if event.event_type == TOKEN_REVOKED:
        end_connections(event)
    elif event.event_type not in WEBHOOK_EVENT_TYPES:
        logger.warning(
            "lexoffice webhook: unknown event type %r recorded and acknowledged", event.event_type
        )
    transaction.on_commit(lambda: dispatch_event_received(event), robust=True)
    return LexofficeWebhookEvent.Status.VERIFIED.value


def _detail(event: Event) -> str:
    return "" if event.event_type in WEBHOOK_EVENT_TYPES else "unknown event type"


def end_connections(event: Event) -> int:
    """``token.revoked``: end the connections of that grant (``connectionId`` =
    ``resourceId``, same organization) authorized before the event; return how many."""
    ended = 0
    matching = LexofficeConnection.objects.filter(
        connection_id=event.resource_id, organization_id=event.organization_id
    ).order_by("pk")
    for connection in matching:
        if tokens.end_from_lexware(connection, event_date=event.event_date):
            ended += 1
    if not ended:
        logger.info("lexoffice webhook: token.revoked ended no connection here")
    return ended


def dispatch_event_received(event: Event) -> None:
    """Send ``event_received`` inline, or queue it as a Celery task when
    ``LEXOFFICE_WEBHOOK_USE_CELERY`` is true."""
    if lexoffice_settings.WEBHOOK_RECEIVERS_IN_CELERY:
        from .tasks import send_event_received

        send_event_received.delay(
            event.event_type, event.resource_id, event.organization_id, event.event_date.isoformat()
        )
        return
    dispatch_inline(event)


def dispatch_inline(event: Event) -> None:
    """Send ``event_received`` now, in this process."""
    event_received.send(sender=LexofficeConnection, **event.signal_kwargs())


def _record_failure(event: Event, exc: Exception) -> None:
    """Keep a ``failed`` record for the admin (it does not count as seen); best effort."""
    try:
        LexofficeWebhookEvent.objects.create(
            organization_id=event.organization_id,
            event_type=event.event_type,
            resource_id=event.resource_id,
            event_date=event.event_date,
            status=LexofficeWebhookEvent.Status.FAILED,
            detail=type(exc).__name__,
        )
    except Exception:
        logger.exception("lexoffice webhook: could not record the failure either")


def prune_events(*, older_than: timedelta = EVENT_RETENTION) -> int:
    """Delete event records received more than ``older_than`` ago; return how many."""
    cutoff = timezone.now() - older_than
    deleted, _ = LexofficeWebhookEvent.objects.filter(received_at__lt=cutoff).delete()
    return deleted
