"""One validation of Lexware's token responses, for the code exchange and the refresh alike.

Lexware rotates refresh tokens: once it answered a refresh with HTTP 200, the old refresh
token is dead. So a well-formed new refresh token is always worth keeping, even when the rest
of the answer is odd, and each part is judged on its own:

* the access token must be RFC 6750 ``b64token`` characters, at most 8,192 of them (Lexware's
  are up to 4,096): anything else (CR/LF, spaces, a 5 MB blob) is refused, because it would
  end up in an HTTP header or an error message;
* the refresh token must be printable ASCII (RFC 6749 A.17, ``%x20-7E``), at most 8,192;
* ``expires_in`` must be a finite number of seconds between 1 and one day (a numeric string
  is read as a number); missing, zero, negative, NaN, infinite or absurd values are replaced
  by a short safe default, so the next refresh comes early rather than never.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

#: Lexware's access tokens live 4 hours; an unknown lifetime is assumed to be one hour.
DEFAULT_EXPIRES_IN = 3600
MAX_EXPIRES_IN = 86400
MAX_TOKEN_LENGTH = 8192

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")


@dataclass(frozen=True)
class TokenResponse:
    """The usable parts of a token response. Its ``repr`` never shows a token.

    ``access_token`` / ``refresh_token`` are ``None`` when absent or refused;
    ``problems`` says what was wrong (token-free text, for logs and ``last_error``).
    """

    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: float
    refresh_token_refused: bool = False
    problems: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        """Whether a working connection can be made from this answer alone."""
        return self.access_token is not None and not self.refresh_token_refused


def parse_token_response(data: Any) -> TokenResponse:
    """Judge each part of a parsed token response (see the module docstring)."""
    if not isinstance(data, dict):
        return TokenResponse(None, None, DEFAULT_EXPIRES_IN, problems=("not a JSON object",))
    problems: list[str] = []
    access_token = data.get("access_token")
    if not is_access_token(access_token):
        problems.append("access_token missing or malformed")
        access_token = None
    refresh_token = data.get("refresh_token")
    refused = False
    if refresh_token is not None and not is_refresh_token(refresh_token):
        problems.append("refresh_token malformed")
        refresh_token, refused = None, True
    expires_in = _expires_in(data.get("expires_in"))
    if expires_in is None:
        problems.append(f"expires_in unusable; assumed {DEFAULT_EXPIRES_IN} s")
        expires_in = DEFAULT_EXPIRES_IN
    return TokenResponse(access_token, refresh_token, expires_in, refused, tuple(problems))


def is_access_token(value: Any) -> TypeGuard[str]:
    """RFC 6750 ``b64token``, 1 to 8,192 characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_LENGTH
        and _B64TOKEN.fullmatch(value) is not None
    )


def is_refresh_token(value: Any) -> TypeGuard[str]:
    """Printable ASCII (RFC 6749 A.17), 1 to 8,192 characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_LENGTH
        and _PRINTABLE_ASCII.fullmatch(value) is not None
    )


def _expires_in(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if 1 <= value <= MAX_EXPIRES_IN else None
