"""Signal receivers: a deleted connection (or user) leaves no live grant at Lexware; a
revoked connection keeps no subscription records."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from .models import LexofficeConnection, LexofficeSubscription
from .signals import connection_revoked
from .tokens import revoke_before_delete


@receiver(pre_delete, sender=LexofficeConnection, dispatch_uid="django_lexoffice_revoke_on_delete")
def revoke_on_delete(sender: Any, instance: LexofficeConnection, **kwargs: Any) -> None:
    """Revoke the grant at Lexware before its row goes (best effort; GDPR erasure), under
    the row lock, and send ``connection_revoked``."""
    revoke_before_delete(instance)


@receiver(connection_revoked, dispatch_uid="django_lexoffice_forget_subscriptions")
def forget_subscriptions(sender: Any, connection: LexofficeConnection, **kwargs: Any) -> None:
    """Lexware deletes the subscriptions of a revoked grant: drop our records of them."""
    LexofficeSubscription.objects.filter(connection_id=connection.pk).delete()
