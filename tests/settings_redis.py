"""``tests.settings`` with the default cache on Redis, for the multi-process rate-limit test.

The worker processes of ``tests/test_ratelimit.py`` run with
``DJANGO_SETTINGS_MODULE=tests.settings_redis``; ``LEXOFFICE_TEST_REDIS_URL`` picks the server
(default ``redis://127.0.0.1:6379/15``, the database the test suite may use freely).
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("LEXOFFICE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    }
}
