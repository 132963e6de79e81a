"""Datetimes shown to people: in the current time zone, or as stored without ``USE_TZ``."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.formats import date_format


def format_local(value: datetime, format_name: str) -> str:
    """``value`` in the current time zone, formatted (``"DATETIME_FORMAT"``, ``"H:i"``).

    A naive value (a site with ``USE_TZ = False``) is already local time: ``localtime()``
    would refuse it.
    """
    return date_format(
        timezone.localtime(value) if timezone.is_aware(value) else value, format_name
    )
