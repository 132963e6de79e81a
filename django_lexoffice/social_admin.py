"""social_django's ``UserSocialAuth`` admin, replaced by one that never shows a token.

The pipeline scrubs tokens from ``extra_data``, but rows written before (or by another
pipeline) may still hold one: every token-like key and token-shaped value is masked, and
``extra_data`` is never editable. Imported by :mod:`django_lexoffice.admin`.
"""

from __future__ import annotations

import json
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .redaction import redact


def masked_extra_data(extra_data: Any) -> str:
    """``extra_data`` as indented JSON, each token-like key's value and token-shaped
    string replaced by ``[redacted]``."""
    return json.dumps(redact(extra_data), indent=2, ensure_ascii=False, sort_keys=True)


# Without social_django the site fails its system checks (lexoffice.E004); importing
# its models here would crash the admin's autodiscovery before those could tell why.
if apps.is_installed("social_django"):  # pragma: no branch
    # Importing social_django's admin first makes its registration happen now,
    # whatever the order of INSTALLED_APPS, so it can be replaced here.
    from social_django.admin import UserSocialAuthOption
    from social_django.models import UserSocialAuth

    class TokenFreeUserSocialAuthAdmin(UserSocialAuthOption):
        """social_django's ``UserSocialAuth`` admin; ``extra_data`` masked, never editable."""

        exclude = ("extra_data",)

        class Media:
            css = {"all": ("django_lexoffice/admin.css",)}

        def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
            return (*super().get_readonly_fields(request, obj), "extra_data_masked")

        @admin.display(description=_("extra data"))
        def extra_data_masked(self, obj: UserSocialAuth) -> str:
            """``extra_data`` with every token-like key and value replaced by ``[redacted]``."""
            masked = masked_extra_data(obj.extra_data)
            return format_html('<pre class="lexoffice-pre">{}</pre>', masked)

    # An app earlier in INSTALLED_APPS may have unregistered it already (NotRegistered
    # would break the whole admin); ours is registered either way, so no token shows.
    if admin.site.is_registered(UserSocialAuth):
        admin.site.unregister(UserSocialAuth)
    admin.site.register(UserSocialAuth, TokenFreeUserSocialAuthAdmin)
