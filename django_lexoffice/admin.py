"""Admin for lexoffice connections: health at a glance, never a token."""

from __future__ import annotations

from django.contrib import admin

from .models import LexofficeConnection


@admin.register(LexofficeConnection)
class LexofficeConnectionAdmin(admin.ModelAdmin):
    list_display = ("company_name", "organization_id", "user", "status", "expires_at")
    list_filter = ("status",)
    search_fields = ("user__username", "user__email", "company_name", "organization_id")
    list_select_related = ("user",)
    exclude = ("access_token", "refresh_token")
    readonly_fields = tuple(
        f.name for f in LexofficeConnection._meta.fields if f.name not in {"access_token", "refresh_token"}
    )

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
