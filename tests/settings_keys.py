"""Settings for the encryption-key subprocess tests: the key and a file database
come from the environment (django-encrypted-model-fields reads the key at import)."""

import json
import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["LEXOFFICE_KEYS_DB"]}
}
_keys = os.environ.get("LEXOFFICE_KEYS")
if _keys is None:
    del FIELD_ENCRYPTION_KEY  # noqa: F821
else:
    FIELD_ENCRYPTION_KEY = json.loads(_keys)
