"""The models: a user's ``LexofficeConnection``, the webhook events Lexware delivered,
and the event subscriptions this site made at Lexware."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models.functions import Length
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import policy
from .conf import settings as lexoffice_settings
from .exceptions import (
    ConnectionNotActive,
    ConnectionNotFound,
    MultipleConnections,
    TokenDecryptionError,
    UnsafeTokenWriteError,
)
from .fields import SHORT_CIPHERTEXT_LENGTH, EncryptedTokenField

TOKEN_FIELDS = frozenset({"access_token", "refresh_token"})
#: How long before the authorization ends the user is asked to connect again.
RENEWAL_NOTICE = timedelta(days=30)
# Annotation holding the raw (encrypted) column's length, set by without_tokens().
_STORED_LENGTH = "_{}_stored_length"

#: Seconds: an access token with less left than this is as good as expired. A caller about
#: to use it refreshes even while a failed refresh is waiting for its retry.
EXPIRY_SKEW = 30


class LexofficeConnectionQuerySet(models.QuerySet["LexofficeConnection"]):
    """Connections, with guards that keep encrypted tokens intact."""

    def active(self) -> LexofficeConnectionQuerySet:
        """Connections whose tokens are usable (status ``active``)."""
        return self.filter(status=LexofficeConnection.Status.ACTIVE)

    def expiring(
        self, within: timedelta | int | float | None = None
    ) -> LexofficeConnectionQuerySet:
        """Connections whose access token expires within ``within`` (a timedelta or
        seconds; default ``LEXOFFICE_REFRESH_MARGIN``), or whose expiry is unknown."""
        if within is None:
            within = lexoffice_settings.REFRESH_MARGIN
        if not isinstance(within, timedelta):
            within = timedelta(seconds=within)
        deadline = timezone.now() + within
        return self.filter(models.Q(expires_at__lte=deadline) | models.Q(expires_at__isnull=True))

    def due_for_refresh(
        self, within: timedelta | int | float | None = None
    ) -> LexofficeConnectionQuerySet:
        """The connections a refresh run refreshes now: ``needs_refresh()`` in SQL.

        Active, not waiting for the retry of a failed refresh, and due under
        ``LEXOFFICE_REFRESH_POLICY`` with ``within`` as the margin
        (:mod:`~django_lexoffice.policy`)."""
        return self.filter(policy.due_q(policy.Rules.from_settings(margin=within)))

    def waiting_for_retry(
        self, within: timedelta | int | float | None = None
    ) -> LexofficeConnectionQuerySet:
        """Active, expiring connections whose failed refresh waits for its retry (backoff)."""
        return self.active().expiring(within).filter(self._waiting_for_retry())

    @staticmethod
    def _waiting_for_retry() -> models.Q:
        return models.Q(next_attempt_at__gt=timezone.now())

    def narrowed_to(
        self, *, user: Any = None, organization_id: str | None = None
    ) -> LexofficeConnectionQuerySet:
        """Only ``user``'s connections and only ``organization_id``'s, where given (the
        ``--user`` and ``--organization`` options of the batch commands)."""
        queryset = self
        if user is not None:
            queryset = queryset.filter(user=user)
        if organization_id:
            queryset = queryset.filter(organization_id=organization_id)
        return queryset

    def get_for_user(self, user: Any, organization_id: str | None = None) -> LexofficeConnection:
        """``user``'s active connection to ``organization_id``, or their single active one.

        Raises :class:`~django_lexoffice.exceptions.ConnectionNotFound` (none),
        :class:`~django_lexoffice.exceptions.MultipleConnections` (several active: pass
        ``organization_id``) or :class:`~django_lexoffice.exceptions.ConnectionNotActive`
        (only revoked or re-authorization-required ones).
        """
        if not getattr(user, "is_authenticated", False):
            raise ConnectionNotFound("An anonymous user has no lexoffice connection.")
        connections = self.filter(user=user)
        if organization_id is not None:
            connection = connections.filter(organization_id=organization_id).first()
            if connection is None:
                raise ConnectionNotFound(
                    f"{user} has no lexoffice connection to organization {organization_id}."
                )
        else:
            candidates = list(connections.active()[:2])
            if len(candidates) > 1:
                raise MultipleConnections(
                    f"{user} has several active lexoffice connections; pass organization_id= "
                    "to choose one."
                )
            connection = candidates[0] if candidates else connections.first()
            if connection is None:
                raise ConnectionNotFound(
                    f"{user} has no lexoffice connection; send them to lexoffice:login."
                )
        connection.raise_unless_active()
        return connection

    def without_tokens(self) -> LexofficeConnectionQuerySet:
        """Connections with the token columns left unloaded, so nothing is decrypted.

        For pages that show connections but never use a token: they keep working when
        ``FIELD_ENCRYPTION_KEY`` cannot decrypt them. ``has_access_token`` and
        ``has_refresh_token`` still answer, from the length of the encrypted column.
        """
        return self.defer(*sorted(TOKEN_FIELDS)).annotate(
            **{_STORED_LENGTH.format(name): Length(name) for name in sorted(TOKEN_FIELDS)}
        )

    def update(self, **kwargs: Any) -> int:
        # django-encrypted-model-fields encrypts SQL expressions' text: refuse
        # before any SQL runs so the caller's transaction is not poisoned.
        _refuse_token_fields(kwargs, "update()")
        return super().update(**kwargs)

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        _refuse_token_fields(fields, "bulk_update()")
        return super().bulk_update(objs, fields, batch_size=batch_size)


class _WithoutTokensManager(models.Manager.from_queryset(LexofficeConnectionQuerySet)):  # type: ignore[misc]
    """The base manager: rows read for related lookups and for deletion decrypt nothing.

    Deleting a user collects their connections through it, so a ``FIELD_ENCRYPTION_KEY``
    that cannot read the tokens cannot block an erasure. A token still loads (and
    decrypts) when code reads it.
    """

    def get_queryset(self) -> LexofficeConnectionQuerySet:
        return super().get_queryset().without_tokens()  # type: ignore[no-any-return]


def _refuse_token_fields(fields: Any, operation: str) -> None:
    touched = TOKEN_FIELDS.intersection(fields)
    if touched:
        raise UnsafeTokenWriteError(
            f"{operation} cannot write {', '.join(sorted(touched))}: encrypted tokens are "
            "only written by save() on one row (django_lexoffice.tokens does this)."
        )


class LexofficeConnection(models.Model):
    """A user's OAuth connection to one lexoffice (Lexware Office) company.

    Tokens are encrypted at rest and never appear in ``str()``/``repr()``.
    Refresh and revoke them only through :mod:`django_lexoffice.tokens`.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        REAUTHORIZATION_REQUIRED = "reauthorization_required", _("Re-authorization required")
        REVOKED = "revoked", _("Revoked")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="lexoffice_connections",
        verbose_name=_("user"),
    )
    organization_id = models.CharField(_("organization id"), max_length=64)
    connection_id = models.CharField(_("connection id"), max_length=64, blank=True)
    company_name = models.CharField(_("company"), max_length=255, blank=True)
    lexoffice_user_id = models.CharField(_("lexoffice user id"), max_length=64, blank=True)
    lexoffice_user_name = models.CharField(_("lexoffice user name"), max_length=255, blank=True)
    lexoffice_user_email = models.CharField(_("lexoffice user e-mail"), max_length=254, blank=True)
    scopes = models.JSONField(_("scopes"), default=list, blank=True)
    access_token = EncryptedTokenField(_("access token"), blank=True, default="", editable=False)
    refresh_token = EncryptedTokenField(_("refresh token"), blank=True, default="", editable=False)
    expires_at = models.DateTimeField(_("access token expires at"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=32, choices=Status.choices, default=Status.ACTIVE, db_index=True
    )
    last_refreshed_at = models.DateTimeField(_("last refreshed at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    next_attempt_at = models.DateTimeField(
        _("next refresh attempt not before"), null=True, blank=True
    )
    # The last code exchange (a new connection or a reconnect); the pipeline sets it. A
    # ``token.revoked`` older than this belongs to a replaced grant, and Lexware's two-year
    # authorization lifetime counts from here.
    authorized_at = models.DateTimeField(_("authorized at"), default=timezone.now)
    #: The user (or Lexware) ended the connection inside lexoffice (``token.revoked``).
    ended_in_lexoffice = models.BooleanField(_("ended in lexoffice"), default=False)
    #: The ``authorized_at`` for which ``reauthorization_due`` was sent (once per authorization).
    reauthorization_due_sent_for = models.DateTimeField(
        _("renewal reminder sent for"), null=True, blank=True, editable=False
    )
    # Written at most once an hour by policy.record_use(), never by save(): the on_use
    # refresh policy keeps only recently used connections fresh.
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects: ClassVar[LexofficeConnectionQuerySet] = LexofficeConnectionQuerySet.as_manager()  # type: ignore[assignment]
    _rows_without_tokens = _WithoutTokensManager()  # the base manager, set below

    class Meta:
        verbose_name = _("lexoffice connection")
        verbose_name_plural = _("lexoffice connections")
        ordering = ("-created_at", "-pk")
        constraints = [
            models.UniqueConstraint(
                fields=("user", "organization_id"), name="lexoffice_unique_user_organization"
            )
        ]
        indexes = [models.Index(fields=("status", "expires_at"), name="lexoffice_status_expiry")]
        permissions = [
            ("refresh_lexofficeconnection", _("Can refresh lexoffice tokens")),
            ("revoke_lexofficeconnection", _("Can revoke lexoffice connections")),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.get_status_display()})"

    def __repr__(self) -> str:
        return (
            f"<LexofficeConnection pk={self.pk} user_id={self.user_id} "
            f"organization_id={self.organization_id!r} status={self.status!r}>"
        )

    def refresh_from_db(
        self, using: str | None = None, fields: Any = None, from_queryset: Any = None
    ) -> None:
        """Reload from the database, tokens included (the base manager leaves them out)."""
        if from_queryset is None:
            from_queryset = type(self).objects.db_manager(using, hints={"instance": self}).all()
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)

    @property
    def display_name(self) -> str:
        """How the connection is named to people: the company, or the organization id where
        Lexware gave no company name."""
        return self.company_name or self.organization_id

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def has_access_token(self) -> bool:
        """Whether an access token is stored (decrypts nothing after ``without_tokens()``)."""
        return self._token_is_stored("access_token")

    @property
    def has_refresh_token(self) -> bool:
        """Whether a refresh token is stored (decrypts nothing after ``without_tokens()``)."""
        return self._token_is_stored("refresh_token")

    def _token_is_stored(self, name: str) -> bool:
        if name in self.__dict__:  # loaded: already decrypted
            return bool(self.__dict__[name])
        length = getattr(self, _STORED_LENGTH.format(name), None)
        if length is not None and (length == 0 or length > SHORT_CIPHERTEXT_LENGTH):
            return bool(length)
        # Not annotated, or a short column: a value under 16 characters, or an empty value
        # encrypted by an earlier version. Only decrypting tells them apart.
        try:
            return bool(getattr(self, name))
        except TokenDecryptionError:
            return True  # something is stored, though this key cannot read it

    def set_tokens(
        self, access_token: str | None, refresh_token: str | None, expires_in: float | None
    ) -> None:
        """Take a new token pair from a token response (not saved).

        Lexware rotates refresh tokens: the new one replaces the old, which is kept
        only when the response carries none. Without a usable access token the row keeps
        none and counts as expired, so the next use refreshes. Clears the failure
        bookkeeping.
        """
        now = timezone.now()
        self.access_token = access_token or ""
        if refresh_token:
            self.refresh_token = refresh_token
        self.expires_at = now + timedelta(seconds=float(expires_in or 0))
        self.status = self.Status.ACTIVE
        self.last_refreshed_at = now
        self.consecutive_failures = 0
        self.next_attempt_at = None
        self.last_error = ""
        self.last_error_at = None

    @property
    def authorization_ends_at(self) -> datetime | None:
        """When Lexware ends this authorization (``authorized_at`` plus
        ``LEXOFFICE_AUTHORIZATION_LIFETIME``); ``None`` when the lifetime is off."""
        lifetime = lexoffice_settings.AUTHORIZATION_LIFETIME
        if lifetime is None or self.authorized_at is None:
            return None
        return self.authorized_at + lifetime

    @property
    def reauthorization_due(self) -> bool:
        """Active, and its authorization ends within :data:`RENEWAL_NOTICE` (30 days)."""
        ends_at = self.authorization_ends_at
        return self.is_active and ends_at is not None and ends_at <= timezone.now() + RENEWAL_NOTICE

    def expires_within(self, seconds: float) -> bool:
        """True when the access token is unknown or expires within ``seconds``."""
        if self.expires_at is None:
            return True
        return self.expires_at <= timezone.now() + timedelta(seconds=seconds)

    @property
    def is_waiting_for_retry(self) -> bool:
        """Whether a failed refresh waits for its retry (``next_attempt_at``, with backoff)."""
        return self.next_attempt_at is not None and self.next_attempt_at > timezone.now()

    def needs_refresh(self, margin: float | None = None, *, urgent: bool = False) -> bool:
        """Whether to refresh now.

        For a refresh run: what ``LEXOFFICE_REFRESH_POLICY`` decides (:func:`policy.is_due
        <django_lexoffice.policy.is_due>`: active, no failed refresh waiting for its retry,
        and the access token expiring within ``margin`` seconds, default
        ``LEXOFFICE_REFRESH_MARGIN``; under ``on_use`` only for a recently used connection, or
        an idle one to keep it alive). Its database counterpart is
        ``LexofficeConnection.objects.due_for_refresh()``.

        ``urgent`` is for a caller about to use the token: the policy does not matter, the
        token does. It expires within ``margin``, and a pending retry is waited for only
        while the token is not as good as expired (:data:`EXPIRY_SKEW`).
        """
        rules = policy.Rules.from_settings(margin=margin)
        if not urgent:
            return policy.is_due(self, rules, timezone.now())
        if not self.expires_within(rules.margin.total_seconds()):
            return False
        return not self.is_waiting_for_retry or self.expires_within(EXPIRY_SKEW)

    def raise_unless_active(self) -> None:
        """Raise :class:`~django_lexoffice.exceptions.ConnectionNotActive` unless active."""
        if not self.is_active:
            raise ConnectionNotActive(
                f"lexoffice connection {self.pk} is {self.status}; send the user to "
                "lexoffice:login to connect again."
            )


# Django's base manager (``_base_manager``: related lookups, deletion, and code that reaches
# for it) is a plain Manager; make it one with the guarded QuerySet, so token writes through
# it are refused before any SQL, as through ``objects``, and that decrypts nothing. Set here
# rather than as ``Meta.base_manager_name``, which would need a migration for a change with
# no schema.
LexofficeConnection._meta.base_manager_name = "_rows_without_tokens"


class LexofficeWebhookEvent(models.Model):
    """A verified webhook delivery from Lexware, kept a week (deduplication and the admin).

    Lexware retries a delivery for about 41 hours and its signature carries no timestamp,
    so a replay verifies: the first verified copy of an event (organization, type, resource,
    date) is ``verified``, later copies are recorded as ``duplicate`` and have no effect. A
    delivery whose handling failed is recorded as ``failed`` after the rollback; it does not
    count as seen, so Lexware's retry is handled as new.
    """

    class Status(models.TextChoices):
        VERIFIED = "verified", _("Verified")
        DUPLICATE = "duplicate", _("Duplicate")
        FAILED = "failed", _("Failed")

    organization_id = models.CharField(_("organization id"), max_length=64)
    event_type = models.CharField(_("event type"), max_length=64)
    resource_id = models.CharField(_("resource id"), max_length=64)
    event_date = models.DateTimeField(_("event date"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    detail = models.CharField(_("detail"), max_length=500, blank=True)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("lexoffice webhook event")
        verbose_name_plural = _("lexoffice webhook events")
        ordering = ("-received_at", "-pk")
        constraints = [
            # Only one verified copy of an event: the database settles two concurrent
            # deliveries of the same event, not a read-then-write in Python.
            models.UniqueConstraint(
                fields=("organization_id", "event_type", "resource_id", "event_date"),
                condition=models.Q(status="verified"),
                name="lexoffice_unique_verified_event",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.resource_id} ({self.get_status_display()})"


class LexofficeSubscription(models.Model):
    """An event subscription this site made at Lexware for a connection ("ours").

    A row without ``subscription_id`` records a subscription that failed (``last_error``):
    ``sync_lexoffice_subscriptions`` repairs it.
    """

    connection = models.ForeignKey(
        LexofficeConnection,
        on_delete=models.CASCADE,
        related_name="subscriptions",
        verbose_name=_("lexoffice connection"),
    )
    subscription_id = models.CharField(_("subscription id"), max_length=64, blank=True)
    event_type = models.CharField(_("event type"), max_length=64)
    callback_url = models.URLField(_("callback URL"), max_length=500)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_error = models.CharField(_("last error"), max_length=2000, blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)

    class Meta:
        verbose_name = _("lexoffice event subscription")
        verbose_name_plural = _("lexoffice event subscriptions")
        ordering = ("connection", "event_type", "pk")
        constraints = [
            models.UniqueConstraint(
                fields=("connection", "event_type", "callback_url"),
                name="lexoffice_unique_subscription",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type} -> {self.callback_url}"

    @property
    def is_subscribed(self) -> bool:
        return bool(self.subscription_id)
