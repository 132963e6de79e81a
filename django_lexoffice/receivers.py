"""Signal receivers: a deleted connection (or user) leaves no live grant at Lexware."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from .models import LexofficeConnection
from .tokens import revoke_at_lexware

logger = logging.getLogger(__name__)


@receiver(pre_delete, sender=LexofficeConnection, dispatch_uid="django_lexoffice_revoke_on_delete")
def revoke_before_delete(sender: Any, instance: LexofficeConnection, **kwargs: Any) -> None:
    """Revoke the grant at Lexware before its row goes (best effort; GDPR erasure)."""
    if instance.status == LexofficeConnection.Status.REVOKED:
        return
    if not revoke_at_lexware(instance):
        logger.warning(
            "lexoffice connection %s was deleted, but Lexware could not confirm the revocation; "
            "the user can end it in lexoffice's settings.",
            instance.pk,
        )
