"""Django views of the fake Lexware; thin wrappers that add fault injection to the handlers.

``token``, ``revoke`` and the API are machine-to-machine endpoints and therefore ``csrf_exempt``;
the consent form is a browser form and is protected by Django's CSRF check.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import authorize as authorization
from . import faults, grants, oauth, resources
from .constants import scope_label
from .exceptions import AuthorizeErrorPage
from .faults import Fault
from .state import FakeState

#: ``request.META`` key through which the in-process adapter passes the client's read timeout.
READ_TIMEOUT_META = "fake_lexware.read_timeout"

ERROR_TEMPLATE = "django_lexoffice/fake/error.html"
CONSENT_TEMPLATE = "django_lexoffice/fake/authorize.html"
CHOOSE_DECISION = "Bitte wählen Sie „Zulassen“ oder „Ablehnen“."
CHOOSE_COMPANY = "Bitte wählen Sie eine Firma aus."


def _with_faults(
    request: HttpRequest,
    state: FakeState,
    endpoint: str,
    handler: Callable[[], HttpResponse],
    on_early_fault: Callable[[Fault], None] | None = None,
) -> HttpResponse:
    """Run ``handler`` under whatever fault is armed for ``endpoint``."""
    fault = faults.take(state, endpoint)
    if fault is not None:
        early = faults.early_response(fault)
        if early is not None:
            if on_early_fault is not None:
                on_early_fault(fault)
            return early
    timed_out = faults.delay(fault, request.META.get(READ_TIMEOUT_META))
    return faults.finish(fault, handler(), timed_out)


# -- authorization server ----------------------------------------------------------------------


def _error_page(request: HttpRequest, error: AuthorizeErrorPage) -> HttpResponse:
    return render(request, ERROR_TEMPLATE, {"error": error}, status=400)


def _consent_page(
    request: HttpRequest,
    state: FakeState,
    auth: authorization.AuthorizeRequest,
    *,
    error: str = "",
    selected: str = "",
) -> HttpResponse:
    companies = state.companies()
    context = {
        "client_id": auth.client["client_id"],
        "companies": companies,
        "selected": selected or (companies[0]["organization_id"] if companies else ""),
        "scopes": [(scope, scope_label(scope)) for scope in auth.scopes],
        "connection_name": auth.connection_name,
        # The form posts back to the same URL: the POST re-validates the query string.
        "action": request.get_full_path(),
        "error": error,
    }
    return render(request, CONSENT_TEMPLATE, context, status=400 if error else 200)


@csrf_protect
@xframe_options_deny
@never_cache
@require_http_methods(["GET", "POST"])
def authorize(request: HttpRequest) -> HttpResponse:
    """``GET``: the login-and-consent page. ``POST``: the user's decision."""
    state = FakeState()
    fault = faults.take(state, "authorize") if request.method == "GET" else None
    if fault is not None:
        early = faults.early_response(fault) if fault["kind"] != "unauthorized_client" else None
        if early is not None:
            return early
        faults.delay(fault, None)
    try:
        auth = authorization.validate(state, dict(request.GET.lists()))
    except AuthorizeErrorPage as exc:
        return _error_page(request, exc)
    except authorization.RedirectError as exc:
        return HttpResponseRedirect(exc.url)
    if fault is not None and fault["kind"] == "unauthorized_client":
        return HttpResponseRedirect(
            authorization.RedirectError(
                auth.redirect_uri, "unauthorized_client", "injected fault", auth.state
            ).url
        )
    if request.method == "GET":
        return _consent_page(request, state, auth)

    decision = request.POST.get("decision")
    if decision == "deny":
        return HttpResponseRedirect(authorization.deny_url(auth))
    if decision != "allow":
        return _consent_page(request, state, auth, error=CHOOSE_DECISION)
    organization_id = request.POST.get("company", "")
    if state.get_company(organization_id) is None:
        return _consent_page(request, state, auth, error=CHOOSE_COMPANY)
    return HttpResponseRedirect(authorization.approve_url(state, auth, organization_id))


@csrf_exempt
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    """``POST /oauth2/token``: code exchange (fault endpoint ``token``) and refresh grant
    (fault endpoint ``refresh``)."""
    state = FakeState()
    grant_type = request.POST.get("grant_type")
    endpoint = "refresh" if grant_type == "refresh_token" else "token"
    # Lexware: any error during the code exchange consumes the code. Take every presented code
    # before anything can fail, so no error path can leave a code usable.
    codes = (
        [grants.consume_code(state, code) for code in request.POST.getlist("code")]
        if endpoint == "token"
        else []
    )

    def on_early_fault(fault: Fault) -> None:
        # invalid_grant on refresh means "this connection is gone": make it so.
        if endpoint == "refresh" and fault["kind"] == "invalid_grant":
            grant = grants.grant_for_refresh_token(state, request.POST.get("refresh_token") or "")
            if grant is not None:
                grants.end_grant(state, grant)

    return _with_faults(
        request, state, endpoint, lambda: oauth.token(request, state, codes), on_early_fault
    )


@csrf_exempt
@require_POST
def revoke(request: HttpRequest) -> HttpResponse:
    """``POST /oauth2/revoke`` (RFC 7009)."""
    state = FakeState()
    return _with_faults(request, state, "revoke", lambda: oauth.revoke(request, state))


# -- API ---------------------------------------------------------------------------------------


@csrf_exempt
@require_GET
def profile(request: HttpRequest) -> HttpResponse:
    """``GET /v1/profile`` (scope ``profile.read``)."""
    state = FakeState()
    return _with_faults(
        request,
        state,
        "profile",
        lambda: resources.api_call(
            request, state, "profile.read", lambda grant: resources.profile(state, grant)
        ),
    )


@csrf_exempt
@require_GET
def contacts(request: HttpRequest) -> HttpResponse:
    """``GET /v1/contacts`` (scope ``contacts.read``), paged."""
    state = FakeState()
    return _with_faults(
        request,
        state,
        "api",
        lambda: resources.api_call(
            request,
            state,
            "contacts.read",
            lambda grant: resources.contacts(request, state, grant),
        ),
    )
