"""social-auth pipeline steps for lexoffice.

``save_connection`` is the step that matters: it stores the tokens encrypted in
:class:`~django_lexoffice.models.LexofficeConnection` and removes every token from
``UserSocialAuth.extra_data``. The backend appends it to social-auth's default
pipeline when the site configures none; a site with its own
``SOCIAL_AUTH_PIPELINE`` adds it after ``load_extra_data``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from social_core.exceptions import AuthPolicyError
from social_core.utils import user_is_active

from .backends import TOKEN_KEYS, LexofficeOAuth2
from .conf import settings as lexoffice_settings
from .exceptions import TokenDecryptionError
from .http import revoke_token
from .models import LexofficeConnection
from .signals import connection_created
from .subscriptions import subscribe_after_login

logger = logging.getLogger(__name__)

_USER_FIELDS = ("first_name", "last_name", "email")


@sensitive_variables()  # the token response and the replaced refresh token pass through here
def save_connection(
    backend: Any,
    user: Any = None,
    response: dict[str, Any] | None = None,
    social: Any = None,
    *args: Any,
    **kwargs: Any,
) -> dict[str, Any] | None:
    """Create or update the user's connection for the profile's organization.

    Keeps the stored refresh token when Lexware's response carries none, stores
    the scopes that were requested (Lexware's ``scope`` echo is coarse) and
    scrubs tokens from the social-auth association. A reconnect that brings a new
    ``connectionId`` replaces a grant nobody holds any more: it is revoked at Lexware
    once the new one is committed. An inactive user gets no connection.
    """
    if getattr(backend, "name", None) != LexofficeOAuth2.name or user is None or not response:
        return None
    _refuse_inactive_user(backend, user)
    created_by = response.get("created") or {}
    with transaction.atomic():
        # Tokens unloaded: a reconnect must work even when the stored ones cannot be
        # decrypted any more (a lost or wrongly rotated FIELD_ENCRYPTION_KEY).
        queryset = LexofficeConnection.objects.select_for_update().without_tokens()
        connection, created = queryset.get_or_create(
            user=user, organization_id=str(response["organizationId"])
        )
        connection_id = str(response.get("connectionId") or "")[:64]
        replaced = ""
        if not created and connection.connection_id != connection_id:
            replaced = _replaced_refresh_token(connection)
        connection.connection_id = connection_id
        connection.company_name = str(response.get("companyName") or "")[:255]
        connection.lexoffice_user_id = str(created_by.get("userId") or "")[:64]
        connection.lexoffice_user_name = str(created_by.get("userName") or "")[:255]
        connection.lexoffice_user_email = str(created_by.get("userEmail") or "")[:254]
        connection.scopes = lexoffice_settings.SCOPES
        connection.set_tokens(
            response["access_token"], response.get("refresh_token"), response.get("expires_in")
        )
        # Every code exchange is a new authorization: Lexware's two-year lifetime restarts,
        # and a connection that had ended in lexoffice is live again.
        connection.authorized_at = timezone.now()
        connection.ended_in_lexoffice = False
        connection.reauthorization_due_sent_for = None
        connection.save()
        scrub_extra_data(social)
        if replaced:
            transaction.on_commit(lambda: _revoke_replaced_grant(connection.pk, replaced))
        # A new grant has no subscriptions at Lexware yet: subscribe once the login commits.
        subscribe_after_login(connection)

    request = getattr(backend.strategy, "request", None)
    if request is not None:
        # The callback view reads this to know the flow really finished.
        request.lexoffice_connection = connection
    if created:
        connection_created.send(
            sender=LexofficeConnection, connection=connection, user=user, request=request
        )
    return {"lexoffice_connection": connection}


def _refuse_inactive_user(backend: Any, user: Any) -> None:
    """Raise ``AuthPolicyError`` for an inactive user, as social-core refuses to log them in.

    Unless ``SOCIAL_AUTH_ALLOW_INACTIVE_USERS_LOGIN`` lets them in (read as ``do_complete``
    reads it), an inactive user gets no connection: the tokens would serve nobody, and the
    callback would report a connection the user cannot use. The callback revokes the grant.
    """
    if user_is_active(user) or backend.strategy.setting("ALLOW_INACTIVE_USERS_LOGIN", False):
        return
    raise AuthPolicyError(backend, code="authentication_disallowed", stage="pipeline")


def _replaced_refresh_token(connection: LexofficeConnection) -> str:
    """The stored refresh token a reconnect replaces, or "" when this key cannot read it."""
    try:
        return connection.refresh_token or ""
    except TokenDecryptionError:
        logger.warning(
            "lexoffice connection %s was reconnected; its replaced grant cannot be revoked: "
            "FIELD_ENCRYPTION_KEY cannot decrypt the stored refresh token",
            connection.pk,
        )
        return ""


@sensitive_variables("refresh_token")
def _revoke_replaced_grant(pk: Any, refresh_token: str) -> None:
    error = revoke_token(refresh_token)
    if error:
        logger.warning(
            "lexoffice connection %s was reconnected; revoking the replaced grant failed: %s",
            pk,
            error,
        )


def scrub_extra_data(social: Any) -> None:
    """Remove every token from a ``UserSocialAuth.extra_data`` and save it."""
    if social is None or not isinstance(getattr(social, "extra_data", None), dict):
        return
    if any(key in social.extra_data for key in TOKEN_KEYS):
        for key in TOKEN_KEYS:
            social.extra_data.pop(key, None)
        social.save(update_fields=["extra_data"])


def fill_user_details(
    backend: Any, user: Any = None, details: dict[str, Any] | None = None, *args: Any, **kwargs: Any
) -> None:
    """Fill a user's empty name and e-mail fields from lexoffice, never overwrite them.

    social-core's ``user_details`` would replace the names of a user who merely
    connects a company with those of the Lexware user who granted access.
    """
    if user is None or not details:
        return
    changed = []
    for field in _USER_FIELDS:
        value = details.get(field)
        if value and hasattr(user, field) and not getattr(user, field):
            setattr(user, field, value)
            changed.append(field)
    if changed:
        user.save(update_fields=changed)
