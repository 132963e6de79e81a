"""Settings for worker processes started by the multi-process tests.

They connect to the test database the parent test created and to the fake
Lexware the parent serves over HTTP; both are passed in the environment.
"""

import os

from tests.settings import *  # noqa: F403

DATABASES["default"]["NAME"] = os.environ["LEXOFFICE_WORKER_DB_NAME"]  # noqa: F405
LEXOFFICE_AUTH_BASE_URL = os.environ["LEXOFFICE_WORKER_FAKE_URL"]
LEXOFFICE_API_BASE_URL = os.environ["LEXOFFICE_WORKER_FAKE_URL"]

# The "view" mode of tests.refresh_worker runs a view the way most production sites do.
DATABASES["default"]["ATOMIC_REQUESTS"] = True  # noqa: F405

# Workers that must share the rate limit and the refresh claims (a real deploy's Redis).
if os.environ.get("LEXOFFICE_WORKER_REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["LEXOFFICE_WORKER_REDIS_URL"],
        }
    }
