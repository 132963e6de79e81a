"""The one field class that stores tokens encrypted at rest.

A thin subclass of django-encrypted-model-fields' ``EncryptedTextField`` that
closes two traps of version 0.6.5:

* a key that cannot decrypt a value made it return the *ciphertext* as the
  value (which would then be sent to Lexware as a token); here it raises
  :class:`~django_lexoffice.exceptions.TokenDecryptionError`;
* SQL expressions (``bulk_update()``'s ``CASE WHEN``, ``update(f=Value(...))``)
  were encrypted as text, silently corrupting the row; here they are refused.
  The model's QuerySet refuses them earlier, before any SQL runs; this is the
  second line of defence for other managers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.fernet import InvalidToken
from django.core.exceptions import FieldError
from django.db import models
from encrypted_model_fields import fields as encrypted_fields

from .exceptions import TokenDecryptionError, UnsafeTokenWriteError

#: Marks a serialized (dumpdata) value as ciphertext, so loaddata decrypts it.
SERIALIZED_PREFIX = "fernet:"

if TYPE_CHECKING:
    # The library is untyped; to type checkers the field is a TextField of str.
    _EncryptedTextField = models.TextField[str, str]
else:
    _EncryptedTextField = encrypted_fields.EncryptedTextField


class EncryptedTokenField(_EncryptedTextField):
    """A Fernet-encrypted text column that fails loudly instead of corrupting data."""

    description = "An OAuth token, encrypted at rest"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        return self._decrypt(value)

    def _decrypt(self, ciphertext: str) -> str:
        try:
            return str(encrypted_fields.decrypt_str(ciphertext))
        except InvalidToken:
            # The library's own to_python() would return the ciphertext here.
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
        ciphertext: bytes = encrypted_fields.encrypt_str(value)
        return SERIALIZED_PREFIX + ciphertext.decode("utf-8")

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
        return super().get_db_prep_save(value, connection)

    def get_lookup(self, lookup_name: str) -> Any:
        # Ciphertext is randomized: filtering on it can only give wrong answers.
        if lookup_name != "isnull":
            raise FieldError(
                f"Encrypted field {self.name!r} cannot be filtered on ({lookup_name!r})."
            )
        return super().get_lookup(lookup_name)
