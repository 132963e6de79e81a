"""The fake Lexware's server: the consent page, ``/oauth2/token``, ``/oauth2/revoke`` and the API.

One code path for both ways in: a live server runs these views, and ``FakeLexware.mock()`` hands
them ``requests``' calls in-process; ``FakeLexware.approve()`` and ``deny()`` run the consent
page's own :func:`consent`. The token, revoke and API endpoints
are machine-to-machine and therefore ``csrf_exempt``; the consent form is CSRF-protected.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import math
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import state as fake_state
from .constants import CHALLENGE_RE, CONNECTION_NAME_RE, SCOPES, VERIFIER_RE, scope_label
from .state import Client, FakeLexwareError, FakeState, Grant

#: ``request.META`` key through which ``FakeLexware.mock()`` passes the client's read timeout.
READ_TIMEOUT_META = "fake_lexware.read_timeout"
#: Attribute marking a response the client never receives: ``"lost_response"`` or
#: ``"connection_reset"`` (in-process: ``requests.ConnectionError``) or ``"read_timeout"``
#: (``requests.ReadTimeout``). Over real HTTP the status code stands in.
DROP_ATTRIBUTE = "fake_lexware_drop"
CHOOSE_DECISION = "Bitte wählen Sie „Zulassen“ oder „Ablehnen“."
CHOOSE_COMPANY = "Bitte wählen Sie eine Firma aus."
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 250
#: Lexware's timestamps carry Berlin's offset ("2023-04-11T08:25:07.000+02:00").
BERLIN = ZoneInfo("Europe/Berlin")
_SERVER_ERRORS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
_BAD_GATEWAY_HTML = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>502 Bad Gateway</h1><p>The server encountered a temporary error.</p></body></html>\n"
)


class AuthorizeErrorPage(FakeLexwareError):
    """Lexware shows an error page (HTTP 400) and does NOT redirect back (RFC 6749 §4.1.2.1):
    an unknown ``client_id`` or a ``redirect_uri`` not registered exactly; ``code`` names it."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class InjectedFaultError(FakeLexwareError):
    """An injected fault made the authorization page fail (``status``: what Lexware answered)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"an injected fault broke the authorization page: HTTP {status}")
        self.status = status


def pkce_challenge(verifier: str) -> str:
    """PKCE S256 (RFC 7636 §4.2), the only method Lexware accepts: base64url(SHA-256), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# -- answers ------------------------------------------------------------------------------------


def message(status: int, text: str) -> HttpResponse:
    """The API gateway's JSON error body (a 429 has no Retry-After, no X-RateLimit-*)."""
    return JsonResponse({"message": text}, status=status)


def _no_store(response: HttpResponse) -> HttpResponse:
    # RFC 6749 §5.1: token responses must not be cached.
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _oauth_error(error: str, description: str, status: int = 400) -> HttpResponse:
    # RFC 6749 §5.2; invalid_client gets 401 with a Basic challenge.
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="Lexware Office"'
    return _no_store(response)


def _dropped(kind: str, response: HttpResponse) -> HttpResponse:
    setattr(response, DROP_ATTRIBUTE, kind)
    return response


def _fault_answer(fault: dict[str, Any]) -> HttpResponse | None:
    # The answer of a fault that replaces processing; None for slow and lost_response.
    kind = fault["kind"]
    if kind == "server_error":
        text = _SERVER_ERRORS.get(fault["status"], "Endpoint request timed out")
        return message(fault["status"], text)
    if kind == "non_json":
        return HttpResponse(_BAD_GATEWAY_HTML, status=502, content_type="text/html; charset=utf-8")
    if kind == "rate_limit":
        return message(429, "Too Many Requests")
    if kind == "rate_limit_500":
        return message(500, "Internal server error or rate limit exceeded")
    if kind == "connection_reset":
        return _dropped(
            "connection_reset", HttpResponse(b"", status=502, content_type="text/plain")
        )
    if kind in ("invalid_grant", "unauthorized_client"):
        return _oauth_error(kind, f"injected fault: {kind}")
    return None


def _delay(fault: dict[str, Any] | None, read_timeout: float | None) -> bool:
    # The slow fault; True when the client's read timeout (known in-process only) ran out
    # first. Then we sleep only as long as the client would wait, and process anyway.
    if fault is None or fault["kind"] != "slow":
        return False
    if read_timeout is not None and read_timeout < fault["seconds"]:
        fake_state.sleep(read_timeout)
        return True
    fake_state.sleep(fault["seconds"])
    return False


def _with_faults(
    request: HttpRequest,
    state: FakeState,
    endpoint: str,
    handler: Callable[[], HttpResponse],
    on_answering_fault: Callable[[dict[str, Any]], None] | None = None,
) -> HttpResponse:
    """Run ``handler`` under whatever fault is armed for ``endpoint``: the one fault path of
    every endpoint. ``on_answering_fault`` adds an endpoint's own effect of a fault that
    answers in place of the handler (it may raise)."""
    fault = state.take_fault(endpoint)
    answer = _fault_answer(fault) if fault is not None else None
    if fault is not None and answer is not None:
        if on_answering_fault is not None:
            on_answering_fault(fault)
        return answer
    timed_out = _delay(fault, request.META.get(READ_TIMEOUT_META))
    response = handler()
    if timed_out:
        return _dropped("read_timeout", response)
    if fault is not None and fault["kind"] == "lost_response":
        return _dropped("lost_response", message(504, "Endpoint request timed out"))
    return response


# -- the authorization request ------------------------------------------------------------------


def append_query(uri: str, params: Sequence[tuple[str, str]]) -> str:
    """Add parameters to a URI, keeping its own query string byte for byte."""
    parts = urlsplit(uri)
    extra = urlencode(params)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


class RedirectError(Exception):
    """An error Lexware reports by redirecting to the (valid) ``redirect_uri``; ``url`` is where."""

    def __init__(self, redirect_uri: str, error: str, description: str, state: str | None) -> None:
        super().__init__(f"{error}: {description}")
        params = [("error", error), ("error_description", description)]
        self.url = append_query(redirect_uri, [*params, *([("state", state)] if state else [])])


def validate(state: FakeState, request: HttpRequest) -> dict[str, Any]:
    """Check an authorization request as Lexware does, in RFC 6749 §4.1.2.1's order.

    An unknown client or an unregistered ``redirect_uri`` raises :class:`AuthorizeErrorPage`
    (a redirect would make Lexware an open redirector); every other problem
    :class:`RedirectError`, with ``error`` and ``state``.
    """
    params = dict(request.GET.lists())
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
    single = {name: values[0] for name, values in params.items()}
    if not single.get("response_type"):
        raise fail("invalid_request", "response_type is missing")
    if single["response_type"] != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    if not state_value:
        raise fail("invalid_request", "state is missing")
    if single.get("code_challenge_method") != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256 (PKCE is required)")
    challenge = single.get("code_challenge", "")
    if not CHALLENGE_RE.fullmatch(challenge):
        raise fail(
            "invalid_request",
            "code_challenge must be the unpadded base64url SHA-256 of the verifier (43 chars)",
        )
    scopes = client["scopes"]  # without scope: every scope provisioned for the client
    if single.get("scope"):
        requested = single["scope"].split(" ")  # RFC 6749 §3.3: single spaces
        unknown = [s for s in requested if s not in SCOPES]
        if unknown:
            raise fail("invalid_scope", f"unknown scope(s): {' '.join(unknown) or '(empty)'}")
        forbidden = [s for s in requested if s not in client["scopes"]]
        if forbidden:
            raise fail("invalid_scope", f"scope(s) not provisioned: {' '.join(forbidden)}")
        scopes = list(dict.fromkeys(requested))
    connection_name = single.get("connection_name")
    if connection_name is not None and not CONNECTION_NAME_RE.fullmatch(connection_name):
        raise fail("invalid_request", "connection_name contains characters Lexware does not allow")
    return {
        "client_id": client["client_id"],
        "redirect_uri": redirect_uri,
        "state": state_value,
        "code_challenge": challenge,
        "scopes": scopes,
        "connection_name": connection_name or None,
    }


def _consent_page(
    request: HttpRequest, state: FakeState, auth: dict[str, Any], error: str = ""
) -> HttpResponse:
    companies = state.companies()
    context = {
        "client_id": auth["client_id"],
        "companies": companies,
        "selected": companies[0]["organization_id"],  # the demo companies are always there
        "scopes": [(scope, scope_label(scope)) for scope in auth["scopes"]],
        "connection_name": auth["connection_name"],
        # The form posts back to the same URL: the POST validates the query string again.
        "action": request.get_full_path(),
        "error": error,
    }
    return render(
        request, "django_lexoffice/fake/authorize.html", context, status=400 if error else 200
    )


def consent(request: HttpRequest, state: FakeState) -> HttpResponse:
    """The consent page's logic, for its view and ``FakeLexware.approve``/``deny``: ``GET``
    takes the armed ``authorize`` fault, validates and shows the page; ``POST`` validates again
    and follows the user's decision. Raises :class:`AuthorizeErrorPage` and
    :class:`RedirectError` where Lexware shows its error page or redirects with an error."""

    def deactivated(fault: dict[str, Any]) -> None:
        # The client was deactivated: Lexware checks the request, then redirects with the error.
        if fault["kind"] == "unauthorized_client":
            auth = validate(state, request)
            raise RedirectError(
                auth["redirect_uri"], fault["kind"], "injected fault", auth["state"]
            )

    def page() -> HttpResponse:
        return _consent_page(request, state, validate(state, request))

    if request.method == "GET":
        return _with_faults(request, state, "authorize", page, deactivated)
    auth = validate(state, request)
    decision = request.POST.get("decision")
    if decision == "deny":
        raise RedirectError(
            auth["redirect_uri"], "access_denied", "The user denied the request", auth["state"]
        )
    if decision != "allow":
        return _consent_page(request, state, auth, error=CHOOSE_DECISION)
    try:
        company = state.find_company(request.POST.get("company", ""))
    except FakeLexwareError:
        return _consent_page(request, state, auth, error=CHOOSE_COMPANY)
    code = state.issue_code(
        {**auth, "organization_id": company["organization_id"], "issued_at": state.clock()}
    )
    return HttpResponseRedirect(
        append_query(auth["redirect_uri"], [("code", code), ("state", auth["state"])])
    )


@csrf_protect
@xframe_options_deny
@never_cache
@require_http_methods(["GET", "POST"])
def authorize(request: HttpRequest) -> HttpResponse:
    """``GET``: the login-and-consent page. ``POST``: the user's decision."""
    try:
        return consent(request, FakeState())
    except AuthorizeErrorPage as exc:
        return render(request, "django_lexoffice/fake/error.html", {"error": exc}, status=400)
    except RedirectError as exc:
        return HttpResponseRedirect(exc.url)


# -- /oauth2/token and /oauth2/revoke (RFC 6749 §4.1.3, §6, RFC 7009) ----------------------------


def _authenticate_client(state: FakeState, request: HttpRequest) -> Client | HttpResponse:
    """The client of a token or revoke request, or the error answer: the form first, then HTTP
    Basic for confidential clients (Lexware documents nothing else: a client_secret in the body
    is refused), client_id in the body for public ones."""
    repeated = sorted(name for name, values in request.POST.lists() if len(values) > 1)
    if request.content_type != FORM_CONTENT_TYPE:
        return _oauth_error("invalid_request", f"the request body must be {FORM_CONTENT_TYPE}")
    if request.GET:
        return _oauth_error(
            "invalid_request", "parameters must be sent in the request body, not in the URL"
        )
    if repeated:
        return _oauth_error(
            "invalid_request", f"parameters must not be repeated: {', '.join(repeated)}"
        )

    def refuse(description: str) -> HttpResponse:
        return _oauth_error("invalid_client", description, status=401)

    if "client_secret" in request.POST:
        return refuse(
            "client credentials must be sent with HTTP Basic authentication, not in the body"
        )
    body_client_id = request.POST.get("client_id")
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        client = state.get_client(body_client_id) if body_client_id else None
        if client is None:
            return refuse(
                "client authentication is required"
                if not body_client_id
                else "client authentication failed"
            )
        if client["secret"]:
            return refuse("a confidential client must authenticate with HTTP Basic")
        return client  # a public client: PKCE protects the code exchange
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return refuse("unsupported client authentication scheme")
    try:
        client_id, colon, secret = (
            base64.b64decode(value.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return refuse("malformed HTTP Basic credentials")
    client = state.get_client(client_id) if colon else None
    if (
        client is None
        or not client["secret"]
        or not secrets.compare_digest(secret.encode(), client["secret"].encode())
    ):
        return refuse("client authentication failed")
    if body_client_id is not None and body_client_id != client_id:
        return refuse("client_id in the body does not match the authenticated client")
    return client


def _exchange_code(
    request: HttpRequest, state: FakeState, client: Client, data: dict[str, Any] | None
) -> HttpResponse:
    form = request.POST
    if not form.get("code"):
        return _oauth_error("invalid_request", "code is missing")
    if data is None:
        return _oauth_error("invalid_grant", "the code is invalid, expired or was already used")
    if data["client_id"] != client["client_id"]:
        return _oauth_error("invalid_grant", "the code was issued to another client")
    if not form.get("redirect_uri"):
        return _oauth_error("invalid_request", "redirect_uri is missing")
    if form["redirect_uri"] != data["redirect_uri"]:
        return _oauth_error(
            "invalid_grant", "redirect_uri does not match the authorization request"
        )
    verifier = form.get("code_verifier") or ""
    if not VERIFIER_RE.fullmatch(verifier):
        return _oauth_error("invalid_request", "code_verifier must be 43-128 unreserved characters")
    if not secrets.compare_digest(pkce_challenge(verifier), data["code_challenge"]):
        return _oauth_error("invalid_grant", "PKCE verification failed")
    # Companies are never removed (reset() orphans the codes too), so the code's company exists.
    body = state.create_grant(
        client["client_id"], data["organization_id"], data["scopes"], data["connection_name"]
    )
    state.incr("count", "token")
    return _no_store(JsonResponse(body))


def _refresh(request: HttpRequest, state: FakeState, client: Client) -> HttpResponse:
    refresh_token = request.POST.get("refresh_token")
    if not refresh_token:
        return _oauth_error("invalid_request", "refresh_token is missing")
    scope = request.POST.get("scope")
    grant = state.grant_for_refresh_token(refresh_token)
    if (
        scope is not None
        and grant is not None
        and any(s not in grant["scopes"] for s in scope.split(" "))
    ):
        return _oauth_error("invalid_scope", "scope exceeds the original grant")
    body = state.rotate(refresh_token, client["client_id"])
    if body is None:
        return _oauth_error(
            "invalid_grant", "the refresh token is invalid, revoked or was already used"
        )
    return _no_store(JsonResponse(body))


def _token(
    request: HttpRequest, state: FakeState, codes: list[dict[str, Any] | None]
) -> HttpResponse:
    client = _authenticate_client(state, request)
    if isinstance(client, HttpResponse):
        return client
    grant_type = request.POST.get("grant_type")
    if not grant_type:
        return _oauth_error("invalid_request", "grant_type is missing")
    if grant_type == "authorization_code":
        return _exchange_code(request, state, client, codes[0] if codes else None)
    if grant_type == "refresh_token":
        return _refresh(request, state, client)
    return _oauth_error(
        "unsupported_grant_type", "only authorization_code and refresh_token are supported"
    )


@csrf_exempt
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    """``POST /oauth2/token``: the code exchange (fault endpoint ``token``) and the refresh
    grant (fault endpoint ``refresh``)."""
    state = FakeState()
    endpoint = "refresh" if request.POST.get("grant_type") == "refresh_token" else "token"
    # Lexware: any error during the code exchange consumes the code. Take every presented code
    # before anything can fail, so no error path leaves a code usable.
    codes = (
        [state.consume_code(code) for code in request.POST.getlist("code")]
        if endpoint == "token"
        else []
    )

    def end_refreshed_grant(fault: dict[str, Any]) -> None:
        # An injected invalid_grant on refresh means "this connection is gone": make it so.
        grant = state.grant_for_refresh_token(request.POST.get("refresh_token") or "")
        if fault["kind"] == "invalid_grant" and grant is not None:
            state.end_grant(grant)

    return _with_faults(
        request, state, endpoint, lambda: _token(request, state, codes), end_refreshed_grant
    )


def _revoke(request: HttpRequest, state: FakeState) -> HttpResponse:
    client = _authenticate_client(state, request)
    if isinstance(client, HttpResponse):
        return client
    if not request.POST.get("token"):
        return _oauth_error("invalid_request", "token is missing")
    state.revoke_token(request.POST["token"], client["client_id"])
    state.incr("count", "revoke")
    # 200 even for unknown tokens (RFC 7009 §2.2).
    return _no_store(HttpResponse(b"", status=200, content_type="application/json"))


@csrf_exempt
@require_POST
def revoke(request: HttpRequest) -> HttpResponse:
    """``POST /oauth2/revoke`` (RFC 7009)."""
    state = FakeState()
    return _with_faults(request, state, "revoke", lambda: _revoke(request, state))


# -- the API ------------------------------------------------------------------------------------


#: An API endpoint's answer for an authenticated, rate-limited request with the right scope.
Answer = Callable[[HttpRequest, FakeState, Grant], HttpResponse]


def bearer_grant(request: HttpRequest, state: FakeState) -> Grant | HttpResponse:
    """The grant of the request's bearer token (RFC 6750 §2.1 only: a request with a token in
    the query string is refused outright, such tokens end up in logs), else a 401; a 429 when
    the client's bucket is empty (then nothing is performed)."""
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = value.strip()
    grant = None
    if scheme.lower() == "bearer" and token and "access_token" not in request.GET:
        grant = state.grant_for_access_token(token)
    if grant is None:
        return message(401, "Unauthorized")
    if not state.allow(grant["client_id"]):
        return message(429, "Too Many Requests")
    return grant


def api_endpoint(
    fault_endpoint: str, scope: str
) -> Callable[[Answer], Callable[..., HttpResponse]]:
    """Turn an answer into a ``GET /v1/...`` view: faults, then :func:`bearer_grant`
    (authentication and the rate limit), then the scope."""

    def decorate(answer: Answer) -> Callable[..., HttpResponse]:
        def authenticated(request: HttpRequest, state: FakeState) -> HttpResponse:
            grant = bearer_grant(request, state)
            if isinstance(grant, HttpResponse):
                return grant
            if scope not in grant["scopes"]:
                return message(403, "Forbidden")
            return answer(request, state, grant)

        @csrf_exempt
        @require_GET
        @functools.wraps(answer)
        def view(request: HttpRequest) -> HttpResponse:
            state = FakeState()
            return _with_faults(
                request, state, fault_endpoint, lambda: authenticated(request, state)
            )

        return view

    return decorate


@api_endpoint("profile", "profile.read")
def profile(request: HttpRequest, state: FakeState, grant: Grant) -> HttpResponse:
    """``GET /v1/profile``: the company the user picked and this connection."""
    company = grant["company"]
    created = datetime.fromtimestamp(grant["created_at"], BERLIN)
    state.incr("count", "profile")
    return JsonResponse(
        {
            "organizationId": company["organization_id"],
            "companyName": company["company_name"],
            "connectionId": grant["connection_id"],
            "created": {
                "userId": company["user_id"],
                "userName": company["user_name"],
                "userEmail": company["user_email"],
                "date": created.isoformat(timespec="milliseconds"),  # 2017-01-03T13:15:45.000+01:00
            },
            "businessFeatures": list(company["business_features"]),
            "features": list(company["features"]),
            "subscriptionStatus": company["subscription_status"],
            "taxType": company["tax_type"],
            "smallBusiness": company["small_business"],
        }
    )


@api_endpoint("api", "contacts.read")
def contacts(request: HttpRequest, state: FakeState, grant: Grant) -> HttpResponse:
    """``GET /v1/contacts?page=0&size=25``: a Spring-style page, as Lexware answers."""
    try:
        (page,) = request.GET.getlist("page") or ["0"]
        (size,) = request.GET.getlist("size") or [str(DEFAULT_PAGE_SIZE)]
    except ValueError:  # a repeated parameter
        return message(400, "Bad Request")
    if not (page.isdigit() and size.isdigit() and 1 <= int(size) <= MAX_PAGE_SIZE):
        return message(400, "Bad Request")
    number, size_ = int(page), int(size)
    items = state.contacts(grant["company"]["organization_id"])
    total_pages = math.ceil(len(items) / size_)
    content = items[number * size_ : (number + 1) * size_]
    state.incr("count", "api")
    return JsonResponse(
        {
            "content": content,
            "first": number == 0,
            "last": number + 1 >= total_pages,
            "totalPages": total_pages,
            "totalElements": len(items),
            "numberOfElements": len(content),
            "size": size_,
            "number": number,
        }
    )
