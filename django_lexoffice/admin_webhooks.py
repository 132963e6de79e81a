"""Admin for webhooks and the renewal: received events (read-only), each connection's
subscriptions and authorization end, and the "authorization ends" filter.

``LexofficeConnectionAdmin`` takes :class:`ConnectionWebhooksAdminMixin`; the event list is
registered here. The "Sync subscriptions" action is in :mod:`~django_lexoffice.admin_actions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .conf import settings as lexoffice_settings
from .dates import format_local
from .models import RENEWAL_NOTICE, LexofficeConnection, LexofficeWebhookEvent

if TYPE_CHECKING:
    _EventAdmin = admin.ModelAdmin[LexofficeWebhookEvent]
else:
    _EventAdmin = admin.ModelAdmin


class AuthorizationEndsFilter(admin.SimpleListFilter):
    """Connections whose authorization at Lexware ends soon (the two-year lifetime)."""

    title = _("authorization ends")
    parameter_name = "authorization_ends"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("30d", _("within 30 days"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        lifetime = lexoffice_settings.AUTHORIZATION_LIFETIME
        if self.value() != "30d":
            return queryset
        if lifetime is None:
            return queryset.none()
        return queryset.filter(authorized_at__lte=timezone.now() + RENEWAL_NOTICE - lifetime)


class ConnectionWebhooksAdminMixin:
    """Read-only webhook and renewal fields for ``LexofficeConnectionAdmin``."""

    @admin.display(description=_("authorization ends"))
    def authorization_ends(self, obj: LexofficeConnection) -> str:
        """When Lexware ends the authorization (red within 30 days)."""
        ends_at = obj.authorization_ends_at
        if ends_at is None:
            return "-"
        text = format_local(ends_at, "DATE_FORMAT")
        if obj.reauthorization_due:
            return format_html('<strong class="lexoffice-ends-soon">{}</strong>', text)
        return text

    @admin.display(description=_("event subscriptions"))
    def subscriptions_display(self, obj: LexofficeConnection) -> str:
        """The subscriptions this site made for the connection (failed ones with their error)."""
        rows = list(obj.subscriptions.all())
        if not rows:
            return "-"
        return format_html_join(
            "",
            "<div>{} &rarr; {} <small>{}</small></div>",
            (
                (
                    row.event_type,
                    row.callback_url,
                    row.subscription_id or gettext("failed: %(error)s") % {"error": row.last_error},
                )
                for row in rows
            ),
        )


@admin.register(LexofficeWebhookEvent)
class LexofficeWebhookEventAdmin(_EventAdmin):
    """Webhook events Lexware delivered (kept a week), read-only."""

    list_display = ("received_at", "event_type", "resource_id", "organization_id", "status")
    list_filter = ("status", "event_type")
    search_fields = ("organization_id", "resource_id")
    date_hierarchy = "received_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


__all__ = [
    "AuthorizationEndsFilter",
    "ConnectionWebhooksAdminMixin",
    "LexofficeWebhookEventAdmin",
]
