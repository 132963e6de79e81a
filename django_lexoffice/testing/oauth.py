"""The token and revocation endpoints (RFC 6749 §4.1.3, §6, RFC 7009) as Lexware runs them."""

from __future__ import annotations

import base64
import binascii
import secrets

from django.http import HttpRequest, HttpResponse

from . import grants, pkce, replies
from .grants import CodeData
from .state import Client, FakeState

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def form_problem(request: HttpRequest) -> str | None:
    """Why a token/revoke request body is malformed, or ``None``."""
    if request.content_type != FORM_CONTENT_TYPE:
        return f"the request body must be {FORM_CONTENT_TYPE}"
    if request.GET:
        return "parameters must be sent in the request body, not in the URL"
    repeated = sorted(name for name, values in request.POST.lists() if len(values) > 1)
    if repeated:
        return f"parameters must not be repeated: {', '.join(repeated)}"
    return None


def _invalid_client(description: str) -> HttpResponse:
    return replies.oauth_error("invalid_client", description, status=401)


def authenticate_client(state: FakeState, request: HttpRequest) -> Client | HttpResponse:
    """client_secret_basic for confidential clients, ``client_id`` in the body for public ones.

    Lexware documents HTTP Basic only: a ``client_secret`` in the body is refused (``401``).
    """
    form = request.POST
    if "client_secret" in form:
        return _invalid_client(
            "client credentials must be sent with HTTP Basic authentication, not in the body"
        )
    body_client_id = form.get("client_id")
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return _invalid_client("unsupported client authentication scheme")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _invalid_client("malformed HTTP Basic credentials")
        client_id, colon, secret = decoded.partition(":")
        client = state.get_client(client_id) if colon else None
        if (
            client is None
            or not client["secret"]
            or not secrets.compare_digest(secret.encode(), client["secret"].encode())
        ):
            return _invalid_client("client authentication failed")
        if body_client_id is not None and body_client_id != client_id:
            return _invalid_client("client_id in the body does not match the authenticated client")
        return client
    if body_client_id:
        client = state.get_client(body_client_id)
        if client is None:
            return _invalid_client("client authentication failed")
        if client["secret"]:
            return _invalid_client("a confidential client must authenticate with HTTP Basic")
        return client  # a public client: PKCE protects the code exchange
    return _invalid_client("client authentication is required")


def token(request: HttpRequest, state: FakeState, codes: list[CodeData | None]) -> HttpResponse:
    """``POST /oauth2/token``. ``codes``: the codes this request presented, already consumed."""
    problem = form_problem(request)
    if problem:
        return replies.oauth_error("invalid_request", problem)
    client = authenticate_client(state, request)
    if isinstance(client, HttpResponse):
        return client
    grant_type = request.POST.get("grant_type")
    if not grant_type:
        return replies.oauth_error("invalid_request", "grant_type is missing")
    if grant_type == "authorization_code":
        return _authorization_code(request, state, client, codes[0] if codes else None)
    if grant_type == "refresh_token":
        return _refresh(request, state, client)
    return replies.oauth_error(
        "unsupported_grant_type", "only authorization_code and refresh_token are supported"
    )


def _authorization_code(
    request: HttpRequest, state: FakeState, client: Client, data: CodeData | None
) -> HttpResponse:
    form = request.POST
    if not form.get("code"):
        return replies.oauth_error("invalid_request", "code is missing")
    if data is None:
        return replies.oauth_error("invalid_grant", "the code is invalid or was already used")
    if grants.code_expired(state, data):
        return replies.oauth_error("invalid_grant", "the code has expired")
    if data["client_id"] != client["client_id"]:
        return replies.oauth_error("invalid_grant", "the code was issued to another client")
    redirect_uri = form.get("redirect_uri")
    if not redirect_uri:
        return replies.oauth_error("invalid_request", "redirect_uri is missing")
    if redirect_uri != data["redirect_uri"]:
        return replies.oauth_error(
            "invalid_grant", "redirect_uri does not match the authorization request"
        )
    verifier = form.get("code_verifier") or ""
    if not pkce.is_valid_verifier(verifier):
        return replies.oauth_error(
            "invalid_request", "code_verifier must be 43-128 unreserved characters"
        )
    if not pkce.verify(verifier, data["code_challenge"]):
        return replies.oauth_error("invalid_grant", "PKCE verification failed")
    company = state.get_company(data["organization_id"])
    if company is None:
        return replies.oauth_error("invalid_grant", "the company no longer exists")
    body = grants.create_grant(
        state,
        client_id=client["client_id"],
        company=company,
        scopes=data["scopes"],
        connection_name=data["connection_name"],
    )
    state.incr("count", "token")
    return replies.token_response(body)


def _refresh(request: HttpRequest, state: FakeState, client: Client) -> HttpResponse:
    form = request.POST
    refresh_token = form.get("refresh_token")
    if not refresh_token:
        return replies.oauth_error("invalid_request", "refresh_token is missing")
    scope = form.get("scope")
    grant = grants.grant_for_refresh_token(state, refresh_token)
    if scope is not None and grant is not None:
        if any(s not in grant["scopes"] for s in scope.split(" ")):
            return replies.oauth_error("invalid_scope", "scope exceeds the original grant")
    body = grants.rotate(state, refresh_token, client["client_id"])
    if body is None:
        return replies.oauth_error(
            "invalid_grant", "the refresh token is invalid, revoked or was already used"
        )
    return replies.token_response(body)


def revoke(request: HttpRequest, state: FakeState) -> HttpResponse:
    """``POST /oauth2/revoke``: 200 even for unknown tokens (RFC 7009 §2.2)."""
    problem = form_problem(request)
    if problem:
        return replies.oauth_error("invalid_request", problem)
    client = authenticate_client(state, request)
    if isinstance(client, HttpResponse):
        return client
    token_value = request.POST.get("token")
    if not token_value:
        return replies.oauth_error("invalid_request", "token is missing")
    grants.revoke(state, token_value, client["client_id"])
    state.incr("count", "revoke")
    return replies.no_store(HttpResponse(b"", status=200, content_type="application/json"))
