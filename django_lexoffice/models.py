"""The ``LexofficeConnection`` model: one lexoffice company connected by one user."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .exceptions import UnsafeTokenWriteError
from .fields import EncryptedTokenField

TOKEN_FIELDS = frozenset({"access_token", "refresh_token"})


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
        from .conf import settings as lexoffice_settings

        if within is None:
            within = lexoffice_settings.REFRESH_MARGIN
        if not isinstance(within, timedelta):
            within = timedelta(seconds=within)
        deadline = timezone.now() + within
        return self.filter(models.Q(expires_at__lte=deadline) | models.Q(expires_at__isnull=True))

    def due_for_refresh(
        self, within: timedelta | int | float | None = None
    ) -> LexofficeConnectionQuerySet:
        """Active, expiring connections not waiting out a backoff after a failure."""
        now = timezone.now()
        return (
            self.active()
            .expiring(within)
            .filter(models.Q(next_attempt_at__isnull=True) | models.Q(next_attempt_at__lte=now))
        )

    def update(self, **kwargs: Any) -> int:
        # django-encrypted-model-fields encrypts SQL expressions' text: refuse
        # before any SQL runs so the caller's transaction is not poisoned.
        _refuse_token_fields(kwargs, "update()")
        return super().update(**kwargs)

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        _refuse_token_fields(fields, "bulk_update()")
        return super().bulk_update(objs, fields, batch_size=batch_size)


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
    # Written at most once an hour by policy.record_use(), never by save(): the on_use
    # refresh policy keeps only recently used connections fresh.
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects: ClassVar[LexofficeConnectionQuerySet] = LexofficeConnectionQuerySet.as_manager()  # type: ignore[assignment]

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
        return f"{self.company_name or self.organization_id} ({self.get_status_display()})"

    def __repr__(self) -> str:
        return (
            f"<LexofficeConnection pk={self.pk} user_id={self.user_id} "
            f"organization_id={self.organization_id!r} status={self.status!r}>"
        )

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def has_access_token(self) -> bool:
        return bool(self.access_token)

    @property
    def has_refresh_token(self) -> bool:
        return bool(self.refresh_token)

    def set_tokens(
        self, access_token: str, refresh_token: str | None, expires_in: float | None
    ) -> None:
        """Take a new token pair from a token response (not saved).

        Lexware rotates refresh tokens: the new one replaces the old, which is kept
        only when the response carries none. Clears the failure bookkeeping.
        """
        now = timezone.now()
        self.access_token = access_token
        if refresh_token:
            self.refresh_token = refresh_token
        self.expires_at = now + timedelta(seconds=float(expires_in)) if expires_in else None
        self.status = self.Status.ACTIVE
        self.last_refreshed_at = now
        self.consecutive_failures = 0
        self.next_attempt_at = None
        self.last_error = ""
        self.last_error_at = None

    def expires_within(self, seconds: float) -> bool:
        """True when the access token is unknown or expires within ``seconds``."""
        if self.expires_at is None:
            return True
        return self.expires_at <= timezone.now() + timedelta(seconds=seconds)
