"""Authorization codes, grants (connections) and their tokens, as Lexware keeps them.

A grant is one OAuth connection (``connectionId``). It has exactly one valid refresh token and
one valid access token at a time: a refresh rotates both, a revocation deletes both.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
import uuid
from typing import TypedDict

from . import constants
from .constants import Company
from .state import FakeState

_TOKEN_ALPHABET = string.ascii_letters + string.digits


class CodeData(TypedDict):
    """What an authorization code is bound to."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    scopes: list[str]
    organization_id: str
    connection_name: str | None
    issued_at: float


class Grant(TypedDict):
    """One connection: client, company snapshot, scopes and the current token pair."""

    connection_id: str
    client_id: str
    scopes: list[str]
    connection_name: str | None
    company: Company
    created_at: float
    access_token: str
    refresh_token: str


class AccessRecord(TypedDict):
    """An access token's grant and expiry (fake clock seconds)."""

    connection_id: str
    expires_at: float


class TokenResponse(TypedDict):
    """The JSON body of a successful token response."""

    access_token: str
    expires_in: int
    refresh_token: str
    scope: str
    token_type: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_access_token(issued_at: float) -> str:
    """An opaque access token shaped like a JWT (as Lexware's are); clients must not parse it."""
    header = {"alg": "RS256", "typ": "JWT"}
    payload = {
        "iss": "fake-lexware",
        "jti": str(uuid.uuid4()),
        "iat": int(issued_at),
        "exp": int(issued_at) + constants.ACCESS_TOKEN_LIFETIME,
    }
    return ".".join(
        (
            _b64(json.dumps(header).encode()),
            _b64(json.dumps(payload).encode()),
            _b64(secrets.token_bytes(256)),
        )
    )


def new_refresh_token() -> str:
    """A fresh 128-character refresh token."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(constants.REFRESH_TOKEN_LENGTH))


def scope_echo(scopes: list[str]) -> str:
    """Lexware echoes a coarse ``read``/``read write``, not the fine-grained list."""
    if any(not scope.endswith(".read") for scope in scopes):
        return "read write"
    return "read"


# -- authorization codes ------------------------------------------------------------------


def issue_code(
    state: FakeState,
    *,
    client_id: str,
    redirect_uri: str,
    code_challenge: str,
    scopes: list[str],
    organization_id: str,
    connection_name: str | None,
) -> str:
    """Store a new single-use authorization code and return it."""
    code = secrets.token_urlsafe(32)
    data: CodeData = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": code_challenge,
        "scopes": list(scopes),
        "organization_id": organization_id,
        "connection_name": connection_name,
        "issued_at": state.now(),
    }
    state.set("code", code, data, timeout=constants.CODE_TTL)
    state.incr("count", "authorize")
    return code


def consume_code(state: FakeState, code: str) -> CodeData | None:
    """Take a code: its data for exactly one caller, ``None`` for everyone else (single use)."""
    data: CodeData | None = state.consume("code", code)
    return data


def code_expired(state: FakeState, data: CodeData) -> bool:
    """Codes live ``CODE_LIFETIME`` seconds on the fake clock."""
    return state.now() - data["issued_at"] > constants.CODE_LIFETIME


# -- grants and tokens -------------------------------------------------------------------------


def _store_tokens(state: FakeState, grant: Grant) -> TokenResponse:
    now = state.now()
    grant["access_token"] = new_access_token(now)
    grant["refresh_token"] = new_refresh_token()
    access: AccessRecord = {
        "connection_id": grant["connection_id"],
        "expires_at": now + constants.ACCESS_TOKEN_LIFETIME,
    }
    state.set("access", grant["access_token"], access)
    state.set("refresh", grant["refresh_token"], grant["connection_id"])
    state.set("grant", grant["connection_id"], grant)
    return {
        "access_token": grant["access_token"],
        "expires_in": constants.EXPIRES_IN,
        "refresh_token": grant["refresh_token"],
        "scope": scope_echo(grant["scopes"]),
        "token_type": "Bearer",
    }


def create_grant(
    state: FakeState,
    *,
    client_id: str,
    company: Company,
    scopes: list[str],
    connection_name: str | None,
) -> TokenResponse:
    """Open a new connection and issue its first token pair."""
    grant: Grant = {
        "connection_id": str(uuid.uuid4()),
        "client_id": client_id,
        "scopes": list(scopes),
        "connection_name": connection_name,
        "company": company,
        "created_at": state.now(),
        "access_token": "",
        "refresh_token": "",
    }
    from .webhooks import remember_grant  # the "Verbundene Apps" page lists it

    remember_grant(state, grant["connection_id"])
    return _store_tokens(state, grant)


def get_grant(state: FakeState, connection_id: str) -> Grant | None:
    """A live grant by connection id."""
    grant: Grant | None = state.get("grant", connection_id)
    return grant


def grant_for_refresh_token(state: FakeState, refresh_token: str) -> Grant | None:
    """The grant whose CURRENT refresh token this is."""
    connection_id = state.get("refresh", refresh_token)
    return get_grant(state, connection_id) if connection_id else None


def rotate(state: FakeState, refresh_token: str, client_id: str) -> TokenResponse | None:
    """Refresh grant: a new access AND refresh token; the old pair is dead. ``None``: invalid_grant.

    Two concurrent refreshes with the same token: only the caller whose ``delete`` removed the
    refresh token rotates; the other gets ``None`` (Lexware answers ``invalid_grant``).
    """
    grant = grant_for_refresh_token(state, refresh_token)
    if grant is None or grant["client_id"] != client_id:
        return None
    if not state.delete("refresh", refresh_token):
        return None  # lost the race: someone else rotated or revoked it first
    state.delete("access", grant["access_token"])
    response = _store_tokens(state, grant)
    state.incr("count", "refresh")
    state.incr("count-refresh", grant["connection_id"])
    return response


def end_grant(state: FakeState, grant: Grant) -> None:
    """Delete a connection with its refresh and access token."""
    state.delete("refresh", grant["refresh_token"])
    state.delete("access", grant["access_token"])
    state.delete("grant", grant["connection_id"])


def revoke(state: FakeState, token: str, client_id: str) -> bool:
    """RFC 7009 for one client: a refresh token ends its grant, an access token only itself.

    Returns whether anything was revoked; the endpoint answers 200 either way. A token issued
    to another client is left alone.
    """
    grant = grant_for_refresh_token(state, token)
    if grant is not None:
        if grant["client_id"] != client_id or not state.delete("refresh", token):
            return False
        end_grant(state, grant)
        return True
    record: AccessRecord | None = state.get("access", token)
    if record is not None:
        owner = get_grant(state, record["connection_id"])
        if owner is not None and owner["client_id"] == client_id:
            return state.delete("access", token)
    return False


def grant_for_access_token(state: FakeState, access_token: str) -> Grant | None:
    """The grant of a valid (known, unexpired, not revoked) access token, else ``None``."""
    record: AccessRecord | None = state.get("access", access_token)
    if record is None or state.now() >= record["expires_at"]:
        return None
    grant = get_grant(state, record["connection_id"])
    if grant is None or grant["access_token"] != access_token:
        return None
    return grant


def invalidate_access_token(state: FakeState, access_token: str) -> bool:
    """Kill an access token early (password change, security): the API answers 401."""
    return state.delete("access", access_token)


def connection_id_for(state: FakeState, token: str) -> str | None:
    """The connection id a current refresh or access token belongs to."""
    connection_id = state.get("refresh", token)
    if connection_id:
        return str(connection_id)
    record: AccessRecord | None = state.get("access", token)
    return record["connection_id"] if record else None
