"""Admin for lexoffice connections: health at a glance, never a token.

The list never loads (so never decrypts) a token, and the read-only detail page
only says whether each token is "set". Where the rest lives:

* :mod:`~django_lexoffice.admin_actions`: the actions (refresh, revoke, sync, delete after
  revoking), their permissions, and the message each outcome gets.
* :mod:`~django_lexoffice.admin_webhooks`: the webhook and renewal fields, and received events.
* :mod:`~django_lexoffice.social_admin`: social-auth's association admin, token-free.
* ``static/django_lexoffice/admin.css``: the styles.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from . import social_admin
from .admin_actions import ConnectionActionsMixin
from .admin_webhooks import AuthorizationEndsFilter, ConnectionWebhooksAdminMixin
from .backends import LexofficeOAuth2
from .conf import settings as lexoffice_settings
from .dates import DURATION_UNITS, format_local
from .models import LexofficeConnection, LexofficeConnectionQuerySet
from .policy import current_capacity

SOCIAL_AUTH_PROVIDER = LexofficeOAuth2.name
__all__ = ["LexofficeConnectionAdmin", "social_admin"]  # social_admin registers on import

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[LexofficeConnection]
else:
    _ModelAdmin = admin.ModelAdmin


def expiry_in_words(expires_at: datetime, now: datetime | None = None) -> str:
    """Describe an access token's expiry relative to ``now``: "in 3 hours, 12 minutes",
    "expired 5 minutes ago" (Django's ``timeuntil`` / ``timesince``, translated)."""
    now = timezone.now() if now is None else now
    if expires_at > now:
        duration = timeuntil(expires_at, now, time_strings=DURATION_UNITS)
        return gettext("in %(duration)s") % {"duration": duration}
    duration = timesince(expires_at, now, time_strings=DURATION_UNITS)
    return gettext("expired %(duration)s ago") % {"duration": duration}


class ExpiryListFilter(admin.SimpleListFilter):
    """Filter by the access token's expiry, with ``LEXOFFICE_REFRESH_MARGIN`` as "soon"."""

    title = _("expiry")
    parameter_name = "expiry"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, Any]]:
        return [
            ("soon", _("Expires soon")),
            ("expired", _("Expired")),
            ("valid", _("Valid")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        now = timezone.now()
        soon = now + timedelta(seconds=lexoffice_settings.REFRESH_MARGIN)
        if self.value() == "soon":
            return queryset.filter(expires_at__gt=now, expires_at__lte=soon)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "valid":
            return queryset.filter(expires_at__gt=soon)
        return None


DETAIL_FIELDSETS: Any = (
    (
        None,
        {
            "fields": (
                "user_link",
                "company_name",
                "organization_id",
                "connection_id",
                "status_badge",
                "scopes_display",
            )
        },
    ),
    (
        _("Granted by (lexoffice user)"),
        {
            "fields": (
                "lexoffice_user_name",
                "lexoffice_user_email",
                "lexoffice_user_id",
                "social_auth_link",
            )
        },
    ),
    (
        _("Tokens"),
        {
            "fields": (
                "access_token_state",
                "refresh_token_state",
                "expires_at",
                "expiry",
                "last_refreshed_at",
                "next_attempt_at",
            )
        },
    ),
    (_("Last error"), {"fields": ("last_error_display", "last_error_at", "consecutive_failures")}),
    (_("Dates"), {"fields": ("created_at", "updated_at", "last_used_at")}),
    # Webhooks and the two-year renewal (issue 15).
    (
        _("Authorization"),
        {
            "fields": (
                "authorized_at",
                "authorization_ends",
                "ended_in_lexoffice",
                "reauthorization_due_sent_for",
                "subscriptions_display",
            )
        },
    ),
)


@admin.register(LexofficeConnection)
class LexofficeConnectionAdmin(ConnectionActionsMixin, ConnectionWebhooksAdminMixin, _ModelAdmin):
    """Every user's lexoffice connections, read-only, never showing a token.

    ``view_lexofficeconnection`` (or ``change_lexofficeconnection``) shows the list and
    the read-only detail pages: nothing here is editable, and there is no add page (users
    connect through ``lexoffice:login``). The actions' permissions are described in
    :class:`~django_lexoffice.admin_actions.ConnectionActionsMixin`.
    """

    # Fits a 1280 px window next to the admin's sidebar: the organization id (a UUID
    # that wraps over four lines), the last refresh and the scopes are on the detail
    # page; the organization id stays searchable.
    list_display = (
        "user_link",
        "company_name",
        "status_badge",
        "expiry",
        "failures",
    )
    list_display_links = ("company_name",)
    list_filter = ("status", ExpiryListFilter, "ended_in_lexoffice", AuthorizationEndsFilter)
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    search_help_text = _("Search by username, e-mail address, company or organization id.")
    fieldsets = DETAIL_FIELDSETS
    readonly_fields = tuple(flatten_fieldsets(DETAIL_FIELDSETS))
    actions = ("refresh_tokens", "revoke_connections", "sync_subscriptions", "delete_selected")

    class Media:
        css = {"all": ("django_lexoffice/admin.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[LexofficeConnection]:
        # The admin never needs a token's value: nothing is decrypted, neither in the
        # list nor on the detail page ("set" / "not set" comes from the raw column), so
        # both work when FIELD_ENCRYPTION_KEY is wrong.
        queryset = cast(LexofficeConnectionQuerySet, super().get_queryset(request))
        return queryset.without_tokens()

    # The actions refresh and revoke, which commit on their own: under ATOMIC_REQUESTS
    # they would refuse on SQLite and wait on the request's own row locks elsewhere.
    @transaction.non_atomic_requests
    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        # The refresh load in words ("1,200 connections need 0.08 req/s of 1.8 (4 %)"),
        # with the fix when it is too much (one query).
        context = {**(extra_context or {}), "lexoffice_capacity": current_capacity()}
        return super().changelist_view(request, extra_context=context)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        """Username, user e-mail, company, organization id and lexoffice e-mail: never a token."""
        user_model = get_user_model()
        return [
            f"user__{user_model.USERNAME_FIELD}",
            f"user__{user_model.get_email_field_name()}",
            "company_name",
            "organization_id",
            "lexoffice_user_email",
        ]

    # -- permissions ---------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Read-only for everyone; viewing needs the view (or change) permission.
        return False

    # -- columns and detail fields -------------------------------------------------------

    @admin.display(description=_("user"), ordering=f"user__{get_user_model().USERNAME_FIELD}")
    def user_link(self, obj: LexofficeConnection) -> str:
        """The connection's user, linked to their admin page when there is one."""
        return _admin_link(self.admin_site, obj.user) or str(obj.user)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: LexofficeConnection) -> SafeString:
        """The status as a coloured badge."""
        return format_html(
            '<span class="lexoffice-status lexoffice-status-{}">{}</span>',
            obj.status,
            gettext("Ended in lexoffice") if obj.ended_in_lexoffice else obj.get_status_display(),
        )

    @admin.display(description=_("expiry"), ordering="expires_at")
    def expiry(self, obj: LexofficeConnection) -> str:
        """The access token's expiry in words (red once expired), the exact time on hover."""
        if obj.expires_at is None:
            return self.get_empty_value_display()
        expired = obj.expires_at <= timezone.now()
        return format_html(
            '<span class="lexoffice-expiry{}" title="{}">{}</span>',
            " lexoffice-expired" if expired else "",
            format_local(obj.expires_at, "DATETIME_FORMAT"),
            expiry_in_words(obj.expires_at),
        )

    @admin.display(description=_("failures"), ordering="consecutive_failures")
    def failures(self, obj: LexofficeConnection) -> str:
        """Consecutive failed refreshes, in red when there are any."""
        if not obj.consecutive_failures:
            return "0"
        return format_html(
            '<strong class="lexoffice-failures">{}</strong>', obj.consecutive_failures
        )

    @admin.display(description=_("scopes"))
    def scopes_display(self, obj: LexofficeConnection) -> str:
        """The granted scopes, comma-separated."""
        scopes = obj.scopes if isinstance(obj.scopes, list) else [obj.scopes]
        return ", ".join(str(scope) for scope in scopes) or self.get_empty_value_display()

    @admin.display(description=_("access token"))
    def access_token_state(self, obj: LexofficeConnection) -> str:
        """Whether an access token is stored ("set" / "not set"), never the token."""
        return _set_or_not(obj.has_access_token)

    @admin.display(description=_("refresh token"))
    def refresh_token_state(self, obj: LexofficeConnection) -> str:
        """Whether a refresh token is stored ("set" / "not set"), never the token."""
        return _set_or_not(obj.has_refresh_token)

    @admin.display(description=_("last error"))
    def last_error_display(self, obj: LexofficeConnection) -> str:
        """Status and body of the last failed call to Lexware (recorded token-free)."""
        if not obj.last_error:
            return self.get_empty_value_display()
        return format_html('<pre class="lexoffice-pre">{}</pre>', obj.last_error)

    @admin.display(description=_("social-auth association"))
    def social_auth_link(self, obj: LexofficeConnection) -> str:
        """The ``UserSocialAuth`` row of the lexoffice user who granted access, if any."""
        association = _social_auth_association(obj.lexoffice_user_id)
        if association is None:
            return self.get_empty_value_display()
        label = f"{association.provider}: {association.uid}"
        return _admin_link(self.admin_site, association, label) or label


def _set_or_not(is_set: bool) -> str:
    return gettext("set") if is_set else gettext("not set")


def _admin_link(site: admin.AdminSite, obj: Model, label: str | None = None) -> str | None:
    """A link to ``obj``'s change page on ``site``, or ``None`` if it has none there."""
    if not site.is_registered(type(obj)):
        return None
    opts = obj._meta
    url = reverse(
        f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk], current_app=site.name
    )
    return format_html('<a href="{}">{}</a>', url, obj if label is None else label)


def _social_auth_association(uid: str) -> Any:
    if not uid:
        return None
    from social_django.models import UserSocialAuth

    return UserSocialAuth.objects.filter(provider=SOCIAL_AUTH_PROVIDER, uid=uid).first()
