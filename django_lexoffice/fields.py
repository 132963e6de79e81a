"""The one field class that stores tokens encrypted at rest.

Values are Fernet tokens from ``cryptography``, written with the first key of
``FIELD_ENCRYPTION_KEY`` and read with any of them (``MultiFernet``): the same
storage format as django-encrypted-model-fields 0.6.5, so rows written by it
still decrypt, and the other way round. Written here instead of subclassing that
library because of three traps in it:

* it builds its encryptor when its module is imported, so a missing or invalid
  key crashed ``manage.py check`` with a traceback before the app's own check
  (``lexoffice.E002``) could say what to write, and ``override_settings`` had no
  effect; here the key is read when a value is first encrypted or decrypted;
* a key that cannot decrypt a value made it return the *ciphertext* as the value
  (which would then be sent to Lexware as a token); here it raises
  :class:`~django_lexoffice.exceptions.TokenDecryptionError`;
* SQL expressions (``bulk_update()``'s ``CASE WHEN``, ``update(f=Value(...))``)
  were encrypted as text, silently corrupting the row; here they are refused.
  The model's QuerySet refuses them earlier, before any SQL runs; this is the
  second line of defence.

An empty value is stored as an empty column (nothing secret in it), so whether a
token is stored can be answered without decrypting (see
``LexofficeConnectionQuerySet.without_tokens``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import FieldError
from django.db import models

from .exceptions import LexofficeConfigurationError, TokenDecryptionError, UnsafeTokenWriteError

#: Marks a serialized (dumpdata) value as ciphertext, so loaddata decrypts it.
SERIALIZED_PREFIX = "fernet:"
#: Length of the column for any value shorter than 16 characters, the empty one included
#: (a Fernet token of one 16-byte block). Longer columns always hold a non-empty value.
SHORT_CIPHERTEXT_LENGTH = 100

_KEY_HINT = (
    "Set FIELD_ENCRYPTION_KEY to a Fernet key, or a list of them (the first encrypts, all "
    "decrypt); system check lexoffice.E002 says how to generate one."
)


def encrypt(value: str) -> str:
    """``value`` as a Fernet token (text) made with the first key of ``FIELD_ENCRYPTION_KEY``."""
    return _crypter().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(ciphertext: str) -> str:
    """The plaintext of a Fernet token written with any key of ``FIELD_ENCRYPTION_KEY``.

    Raises :class:`cryptography.fernet.InvalidToken` when no key fits.
    """
    return _crypter().decrypt(ciphertext.encode("utf-8")).decode("utf-8")


def _crypter() -> MultiFernet:
    # Read at use time, so override_settings works and a bad key is reported by
    # the system check rather than by a crash at import.
    configured = getattr(settings, "FIELD_ENCRYPTION_KEY", None)
    if isinstance(configured, (str, bytes)):
        configured = [configured]
    if not isinstance(configured, (list, tuple)) or not configured:
        raise LexofficeConfigurationError(f"FIELD_ENCRYPTION_KEY is not set. {_KEY_HINT}")
    keys = tuple(configured)
    if not all(isinstance(key, (str, bytes)) for key in keys):
        raise LexofficeConfigurationError(f"FIELD_ENCRYPTION_KEY is not valid. {_KEY_HINT}")
    return _crypter_for(keys)


@functools.lru_cache(maxsize=8)
def _crypter_for(keys: tuple[str | bytes, ...]) -> MultiFernet:
    # Cached per key list: building Fernet objects per value would be wasted work.
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        raise LexofficeConfigurationError(
            f"FIELD_ENCRYPTION_KEY is not valid. {_KEY_HINT}"
        ) from None  # the cause's message could quote a key


if TYPE_CHECKING:
    _TextField = models.TextField[str, str]
else:
    _TextField = models.TextField


class EncryptedTokenField(_TextField):
    """A Fernet-encrypted text column that fails loudly instead of corrupting data."""

    description = "An OAuth token, encrypted at rest"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if value == "":
            return ""
        return self._decrypt(value)

    def _decrypt(self, ciphertext: str) -> str:
        try:
            return decrypt(ciphertext)
        except InvalidToken:
            raise TokenDecryptionError(
                f"Cannot decrypt {self.model.__name__}.{self.name} with any key in "
                "FIELD_ENCRYPTION_KEY. Put the key the value was written with in the "
                "list (FIELD_ENCRYPTION_KEY = [new_key, old_key])."
            ) from None

    def value_to_string(self, obj: Any) -> str:
        """Serialize (``dumpdata``) as ciphertext: a dump must hold no plaintext token."""
        value = self.value_from_object(obj)
        if not value:
            return ""
        return SERIALIZED_PREFIX + encrypt(value)

    def to_python(self, value: Any) -> Any:
        # Deserialization (loaddata) hands over what value_to_string() wrote; anything
        # without the marker is already plaintext and is never "decrypted" by guessing.
        if isinstance(value, str) and value.startswith(SERIALIZED_PREFIX):
            return self._decrypt(value[len(SERIALIZED_PREFIX) :])
        return value

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if hasattr(value, "resolve_expression"):
            raise UnsafeTokenWriteError(
                f"{self.model.__name__}.{self.name} cannot be written with a SQL "
                "expression; set the attribute and call save() on the instance."
            )
        value = super().get_db_prep_save(value, connection)
        if value is None or value == "":
            return value
        return encrypt(str(value))

    def get_lookup(self, lookup_name: str) -> Any:
        # Ciphertext is randomized: filtering on it can only give wrong answers.
        if lookup_name != "isnull":
            raise FieldError(
                f"Encrypted field {self.name!r} cannot be filtered on ({lookup_name!r})."
            )
        return super().get_lookup(lookup_name)
