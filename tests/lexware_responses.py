"""Small helpers to answer Lexware's token endpoint with ``responses`` (faults, shapes)."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs

import responses

TOKEN_URL = "https://app.lexware.de/oauth2/token"
REVOKE_URL = "https://app.lexware.de/oauth2/revoke"
BASIC = "Basic " + base64.b64encode(b"test-client-id:test-client-secret-0123456789").decode()
NEW_ACCESS = "new-access-token-" + "N" * 40
NEW_REFRESH = "new-refresh-token-" + "M" * 110


def token_response(access=NEW_ACCESS, refresh=NEW_REFRESH, expires_in=14399, **extra):
    body = {
        "access_token": access,
        "expires_in": expires_in,
        "token_type": "Bearer",
        "scope": "read write",
        **extra,
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    return body


def form(call) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(call.request.body).items()}


def add_refresh(rsps: responses.RequestsMock, status=200, json=None, body=None, **kwargs):
    if body is None and json is None:
        json = token_response()
    rsps.add(responses.POST, TOKEN_URL, status=status, json=json, body=body, **kwargs)
