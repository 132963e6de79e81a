"""Verify Lexware's webhook signature (``X-Lxo-Signature``).

Lexware signs the request body exactly as sent with RSA, SHA-512, PKCS#1 v1.5
("SHA512withRSA", what ``openssl dgst -sha512 -verify`` checks) and sends the signature
base64-encoded. The raw bytes are verified before anything parses them: re-serialized JSON
would differ in whitespace and escaping. Any of the configured keys may verify, so a key
rotation can list the old and the new key for a while.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .conf import LEXWARE_WEBHOOK_PUBLIC_KEY
from .conf import settings as lexoffice_settings

__all__ = [
    "LEXWARE_WEBHOOK_PUBLIC_KEY",
    "SIGNATURE_HEADER",
    "InvalidPublicKey",
    "configured_keys",
    "fingerprint",
    "load_public_key",
    "verify",
]

#: The header carrying the base64 signature (``request.headers`` spelling).
SIGNATURE_HEADER = "X-Lxo-Signature"
# base64 of a 16384-bit signature is 2732 characters; anything longer is not a signature.
_MAX_SIGNATURE_CHARS = 4096


class InvalidPublicKey(ValueError):
    """``LEXOFFICE_WEBHOOK_PUBLIC_KEY`` holds something that is not an RSA public key in PEM."""


@functools.lru_cache(maxsize=16)
def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """Parse an RSA public key (PEM ``SubjectPublicKeyInfo``); cached per PEM text, so
    requests do not parse the configured keys again."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError) as exc:
        raise InvalidPublicKey(f"not a PEM public key ({type(exc).__name__})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidPublicKey(f"not an RSA key but {type(key).__name__}")
    return key


def configured_keys() -> list[rsa.RSAPublicKey]:
    """The keys of ``LEXOFFICE_WEBHOOK_PUBLIC_KEY`` (default: Lexware's published key).

    Raises :class:`InvalidPublicKey` when one does not parse (system check
    ``lexoffice.E008`` reports it at start-up).
    """
    return [load_public_key(pem) for pem in lexoffice_settings.WEBHOOK_PUBLIC_KEYS]


def fingerprint(key: rsa.RSAPublicKey) -> str:
    """SHA-256 of the key's DER ``SubjectPublicKeyInfo``, hex (as LEXOFFICE.md gives it)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def verify(
    body: bytes, signature: str | None, keys: Iterable[rsa.RSAPublicKey] | None = None
) -> bool:
    """Whether ``signature`` (the header's base64 text) signs ``body`` under any of ``keys``
    (default: the configured keys). Never raises for a bad signature."""
    if not signature or len(signature) > _MAX_SIGNATURE_CHARS:
        return False
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    for key in configured_keys() if keys is None else keys:
        try:
            key.verify(raw, body, padding.PKCS1v15(), hashes.SHA512())
        except InvalidSignature:
            continue
        return True
    return False
