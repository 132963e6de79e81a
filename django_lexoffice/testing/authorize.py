"""Validation of authorization requests, shared by the consent page and ``FakeLexware.approve``.

Order follows RFC 6749 §4.1.2.1: an unknown client or an unregistered ``redirect_uri`` must NOT
redirect (that would make Lexware an open redirector): :class:`AuthorizeErrorPage`. Every other
problem redirects back with ``error`` and ``state``: :class:`RedirectError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from . import grants
from .constants import CHALLENGE_RE, CONNECTION_NAME_RE, SCOPES
from .exceptions import AuthorizeErrorPage
from .state import Client, FakeState

#: Query parameters as lists of values (``QueryDict.lists()``, ``parse_qs``).
Params = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class AuthorizeRequest:
    """A fully validated authorization request."""

    client: Client
    redirect_uri: str
    state: str
    code_challenge: str
    scopes: tuple[str, ...]
    connection_name: str | None


def append_query(uri: str, params: Sequence[tuple[str, str]]) -> str:
    """Add parameters to a URI, keeping its own query string byte for byte."""
    parts = urlsplit(uri)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


class RedirectError(Exception):
    """An error Lexware reports by redirecting to the (valid) ``redirect_uri``."""

    def __init__(self, redirect_uri: str, error: str, description: str, state: str | None) -> None:
        super().__init__(f"{error}: {description}")
        self.redirect_uri = redirect_uri
        self.error = error
        self.description = description
        self.state = state

    @property
    def url(self) -> str:
        """Where the browser is sent: ``error``, ``error_description`` and ``state`` if any."""
        params = [("error", self.error), ("error_description", self.description)]
        if self.state:
            params.append(("state", self.state))
        return append_query(self.redirect_uri, params)


def _single(params: Params, name: str) -> str | None:
    values = params.get(name) or []
    return values[0] if len(values) == 1 else None


def validate(state: FakeState, params: Params) -> AuthorizeRequest:
    """Check an authorization request exactly as Lexware does.

    Raises :class:`AuthorizeErrorPage` (no redirect) or :class:`RedirectError`.
    """
    client_ids = params.get("client_id") or []
    if len(client_ids) != 1 or not client_ids[0]:
        raise AuthorizeErrorPage("invalid_client", "client_id is missing or repeated")
    client = state.get_client(client_ids[0])
    if client is None:
        raise AuthorizeErrorPage("invalid_client", f"unknown client_id {client_ids[0]!r}")
    redirect_uris = params.get("redirect_uri") or []
    if len(redirect_uris) != 1:
        raise AuthorizeErrorPage("invalid_redirect_uri", "redirect_uri is missing or repeated")
    redirect_uri = redirect_uris[0]
    # String equality, as Lexware: no normalization of case, slashes, ports or query strings.
    if redirect_uri not in client["redirect_uris"]:
        raise AuthorizeErrorPage(
            "invalid_redirect_uri",
            f"redirect_uri {redirect_uri!r} is not registered for client {client['client_id']!r}",
        )

    states = params.get("state") or []
    state_value = states[0] if len(states) == 1 and states[0] else None

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(redirect_uri, error, description, state_value)

    repeated = sorted(name for name, values in params.items() if len(values) > 1)
    if repeated:
        raise fail("invalid_request", f"parameters must not be repeated: {', '.join(repeated)}")
    response_type = _single(params, "response_type")
    if not response_type:
        raise fail("invalid_request", "response_type is missing")
    if response_type != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    if not state_value:
        raise fail("invalid_request", "state is missing")
    method = _single(params, "code_challenge_method")
    if method != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256 (PKCE is required)")
    challenge = _single(params, "code_challenge") or ""
    if not CHALLENGE_RE.fullmatch(challenge):
        raise fail(
            "invalid_request",
            "code_challenge must be the unpadded base64url SHA-256 of the verifier (43 chars)",
        )

    scope = _single(params, "scope")
    allowed = client["scopes"] if client["scopes"] is not None else list(SCOPES)
    if scope:
        # RFC 6749 §3.3: scope tokens separated by single spaces.
        requested = scope.split(" ")
        unknown = [s for s in requested if s not in SCOPES]
        if unknown:
            raise fail("invalid_scope", f"unknown scope(s): {' '.join(unknown) or '(empty)'}")
        forbidden = [s for s in requested if s not in allowed]
        if forbidden:
            raise fail("invalid_scope", f"scope(s) not provisioned: {' '.join(forbidden)}")
        scopes = tuple(dict.fromkeys(requested))
    else:
        scopes = tuple(allowed)  # without scope, all scopes provisioned for the client

    connection_name = _single(params, "connection_name")
    if connection_name is not None and not CONNECTION_NAME_RE.fullmatch(connection_name):
        raise fail("invalid_request", "connection_name contains characters Lexware does not allow")

    return AuthorizeRequest(
        client=client,
        redirect_uri=redirect_uri,
        state=state_value,
        code_challenge=challenge,
        scopes=scopes,
        connection_name=connection_name or None,
    )


def approve_url(state: FakeState, request: AuthorizeRequest, organization_id: str) -> str:
    """The user allowed: issue a code for the company and redirect with ``code`` and ``state``."""
    code = grants.issue_code(
        state,
        client_id=request.client["client_id"],
        redirect_uri=request.redirect_uri,
        code_challenge=request.code_challenge,
        scopes=list(request.scopes),
        organization_id=organization_id,
        connection_name=request.connection_name,
    )
    return append_query(request.redirect_uri, [("code", code), ("state", request.state)])


def deny_url(request: AuthorizeRequest) -> str:
    """The user said no: ``error=access_denied`` and ``state``."""
    return RedirectError(
        request.redirect_uri, "access_denied", "The user denied the request", request.state
    ).url
