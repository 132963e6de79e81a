"""PKCE S256 (RFC 7636 §4.2), the only method Lexware accepts."""

from __future__ import annotations

import base64
import hashlib
import secrets

from .constants import VERIFIER_RE


def challenge(verifier: str) -> str:
    """base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_valid_verifier(verifier: str) -> bool:
    """43 to 128 characters from the unreserved set."""
    return bool(VERIFIER_RE.fullmatch(verifier))


def verify(verifier: str, expected_challenge: str) -> bool:
    """Whether a well-formed verifier matches the stored challenge (constant-time compare)."""
    return is_valid_verifier(verifier) and secrets.compare_digest(
        challenge(verifier), expected_challenge
    )


def new_verifier() -> str:
    """A fresh verifier, for tests that build authorization URLs by hand."""
    return secrets.token_urlsafe(48)[:64]
