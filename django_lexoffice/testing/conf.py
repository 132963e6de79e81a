"""The fake's own settings, read from ``django.conf.settings`` at use time.

``LEXOFFICE_FAKE_CACHE`` (default ``"default"``)
    Cache alias holding the fake's state. Point several processes at one shared cache
    (Redis, Memcached, database) and they share one fake.
``LEXOFFICE_FAKE_CLIENTS`` (default ``{}``)
    ``{"client-id": {"secret": "...", "redirect_uris": [...], "scopes": [...]}}``; an empty
    secret registers a public client, a missing ``scopes`` allows every scope.
``LEXOFFICE_FAKE_RATE_LIMIT`` (default ``2.0``)
    API requests per second per client id, like Lexware; ``None`` disables the limit.
``LEXOFFICE_FAKE_RATE_LIMIT_BURST`` (default: the rate rounded up, at least 1)
    Size of the bucket: how many requests may come at once.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings as django_settings

DEFAULT_RATE_LIMIT = 2.0
_UNSET = object()


def cache_alias() -> str:
    """The cache alias holding the fake's state."""
    return str(getattr(django_settings, "LEXOFFICE_FAKE_CACHE", "default") or "default")


def clients() -> dict[str, dict[str, Any]]:
    """Clients registered through settings, by client id."""
    value = getattr(django_settings, "LEXOFFICE_FAKE_CLIENTS", None) or {}
    return {str(client_id): dict(config) for client_id, config in value.items()}


def default_burst(rate: float) -> int:
    """Bucket size for a rate when none is given: at least one request."""
    return max(1, math.ceil(rate))


def rate_limit() -> tuple[float | None, int]:
    """``(rate, burst)`` from settings; ``rate`` is ``None`` when the limit is disabled."""
    value: Any = getattr(django_settings, "LEXOFFICE_FAKE_RATE_LIMIT", _UNSET)
    if value is _UNSET:
        value = DEFAULT_RATE_LIMIT
    if value is None:
        return None, 0
    rate = float(value)
    burst = getattr(django_settings, "LEXOFFICE_FAKE_RATE_LIMIT_BURST", None)
    return rate, int(burst) if burst is not None else default_burst(rate)
