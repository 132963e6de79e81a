"""Datetimes shown to people: in the current time zone, or as stored without ``USE_TZ``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import npgettext_lazy

#: ``time_strings`` for Django's ``timeuntil``/``timesince`` where the duration follows "in"
#: or precedes "ago": German needs the dative there ("in 2 Tagen", "vor 2 Monaten"), and
#: Django's own units are nominative ("2 Tage"). Their context: "in/ago".
DURATION_UNITS: dict[str, Any] = {  # lazy strings, as Django's own TIME_STRINGS
    "year": npgettext_lazy("in/ago", "%(num)d year", "%(num)d years", "num"),
    "month": npgettext_lazy("in/ago", "%(num)d month", "%(num)d months", "num"),
    "week": npgettext_lazy("in/ago", "%(num)d week", "%(num)d weeks", "num"),
    "day": npgettext_lazy("in/ago", "%(num)d day", "%(num)d days", "num"),
    "hour": npgettext_lazy("in/ago", "%(num)d hour", "%(num)d hours", "num"),
    "minute": npgettext_lazy("in/ago", "%(num)d minute", "%(num)d minutes", "num"),
}


def format_local(value: datetime, format_name: str) -> str:
    """``value`` in the current time zone, formatted (``"DATETIME_FORMAT"``, ``"H:i"``).

    A naive value (a site with ``USE_TZ = False``) is already local time: ``localtime()``
    would refuse it.
    """
    return date_format(
        timezone.localtime(value) if timezone.is_aware(value) else value, format_name
    )
