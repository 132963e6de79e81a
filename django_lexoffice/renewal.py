"""The two-year renewal: Lexware ends a partner app's authorization after
``LEXOFFICE_AUTHORIZATION_LIFETIME`` (two years; LEXOFFICE.md, "Other").

From :data:`~django_lexoffice.models.RENEWAL_NOTICE` (30 days) before the end, the user's
connections page asks to connect again, and :func:`send_reauthorization_due` sends
``reauthorization_due`` once per authorization (the row stores the ``authorized_at`` it was
sent for; a reconnect resets it). ``refresh_lexoffice_tokens`` and its Celery task call it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .conf import settings as lexoffice_settings
from .models import RENEWAL_NOTICE, LexofficeConnection, LexofficeConnectionQuerySet
from .signals import reauthorization_due

logger = logging.getLogger(__name__)


def due_for_renewal(now: datetime | None = None) -> LexofficeConnectionQuerySet:
    """Active connections whose authorization ends within 30 days and whose user was not yet
    told (for this authorization). Empty when the lifetime is ``None``."""
    lifetime = lexoffice_settings.AUTHORIZATION_LIFETIME
    if lifetime is None:
        return LexofficeConnection.objects.none()
    now = now or timezone.now()
    return (
        LexofficeConnection.objects.active()
        .filter(authorized_at__lte=now + RENEWAL_NOTICE - lifetime)
        .filter(
            Q(reauthorization_due_sent_for__isnull=True)
            | ~Q(reauthorization_due_sent_for=F("authorized_at"))
        )
    )


def send_reauthorization_due(
    report: Callable[[LexofficeConnection, datetime], None] | None = None,
) -> list[LexofficeConnection]:
    """Send ``reauthorization_due(connection, ends_at)`` once per authorization for every
    connection due; return them. Safe from several processes at once (row lock, skip locked)."""
    sent: list[LexofficeConnection] = []
    for pk in list(due_for_renewal().order_by("pk").values_list("pk", flat=True)):
        with transaction.atomic():
            connection = due_for_renewal().select_for_update(skip_locked=True).filter(pk=pk).first()
            if connection is None:
                continue  # another run has it, or it was reconnected meanwhile
            connection.reauthorization_due_sent_for = connection.authorized_at
            connection.save(update_fields=["reauthorization_due_sent_for", "updated_at"])
        ends_at = connection.authorization_ends_at
        assert ends_at is not None
        logger.info(
            "lexoffice connection %s: authorization ends on %s; reauthorization_due sent",
            connection.pk,
            ends_at.date().isoformat(),
        )
        reauthorization_due.send(sender=LexofficeConnection, connection=connection, ends_at=ends_at)
        if report is not None:
            report(connection, ends_at)
        sent.append(connection)
    return sent
