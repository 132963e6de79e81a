"""Views of the ``lexoffice`` URL namespace: login, callback, connections, disconnect, remove."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

import requests
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_not_required, login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods
from social_core.actions import do_auth, do_complete
from social_core.exceptions import (
    AuthAssociationError,
    AuthCanceled,
    AuthConfigurationError,
    AuthCredentialError,
    AuthInputError,
    AuthPolicyError,
    AuthSessionError,
    SocialAuthBaseException,
)
from social_django.utils import load_backend, load_strategy

from . import tokens
from .backends import LexofficeOAuth2
from .conf import settings as lexoffice_settings
from .exceptions import LexofficeConfigurationError
from .models import LexofficeConnection

logger = logging.getLogger(__name__)

BACKEND_PATH = f"{LexofficeOAuth2.__module__}.{LexofficeOAuth2.__qualname__}"
#: Session key of the validated ``next`` URL, stored before leaving for Lexware.
NEXT_SESSION_KEY = "lexoffice_next"
# do_complete() must not pick a redirect target of its own from the session.
_UNUSED_REDIRECT_NAME = "lexoffice_unused_redirect"

#: Failure reasons of the callback and their HTTP status.
CALLBACK_FAILURES: dict[str, int] = {
    "access_denied": 400,
    "state": 400,
    "missing_code": 400,
    "code_rejected": 400,
    "already_connected": 409,
    "not_allowed": 403,
    "lexware_error": 502,
    "lexware_unreachable": 502,
    "configuration": 503,
    "incomplete": 400,
    "server_error": 500,
}


def _safe_next(request: HttpRequest, value: str | None) -> str | None:
    if not value or len(value) > 2048:
        return None
    allowed = url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return value if allowed else None


def _load_backend(request: HttpRequest) -> Any:
    strategy = load_strategy(request)
    redirect_uri = lexoffice_settings.REDIRECT_URI or reverse("lexoffice:callback")
    return load_backend(strategy, LexofficeOAuth2.name, redirect_uri=redirect_uri)


#: The callback's URL holds the code and the state: the next page's ``Referer`` and
#: ``document.referrer`` get the origin only. Never ``no-referrer``: with it browsers send
#: ``Origin: null`` on the next page's form POSTs, and Django's CSRF check refuses them.
REFERRER_POLICY = "strict-origin"

_View = Callable[..., HttpResponse]


def strict_origin_referrer(view: _View) -> _View:
    """Send ``Referrer-Policy: strict-origin`` with every response of ``view``, whatever branch."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = REFERRER_POLICY
        return response

    return wrapper


def post_only(view: _View) -> _View:
    """Like ``require_POST``, but a wrong method gets a short page linking back to the
    connections page (browsers show an empty 405 as "This page isn't working")."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            response = render(
                request,
                "django_lexoffice/method_not_allowed.html",
                {
                    "connections_url": reverse("lexoffice:connections"),
                    # A language switch comes back to a page that answers a GET.
                    "page_url": reverse("lexoffice:connections"),
                },
                status=405,
            )
            response["Allow"] = "POST"
            return response
        return view(request, *args, **kwargs)

    return wrapper


@strict_origin_referrer
@xframe_options_deny
@never_cache
@login_not_required
@csrf_protect
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    """GET: a page with a "Connect" button. POST (CSRF-protected): start the flow."""
    source = request.POST if request.method == "POST" else request.GET
    next_url = _safe_next(request, source.get(REDIRECT_FIELD_NAME))
    if request.method == "GET":
        return render(request, "django_lexoffice/login.html", {"next": next_url or ""})
    if next_url:
        request.session[NEXT_SESSION_KEY] = next_url
    else:
        request.session.pop(NEXT_SESSION_KEY, None)
    if not lexoffice_settings.CLIENT_ID:
        logger.error("SOCIAL_AUTH_LEXOFFICE_KEY is not set (system check lexoffice.E001)")
        return _failure_page(request, "configuration")
    user = request.user if request.user.is_authenticated else None
    try:
        response: HttpResponse = do_auth(
            _load_backend(request), redirect_name=_UNUSED_REDIRECT_NAME, user=user
        )
    except (SocialAuthBaseException, LexofficeConfigurationError):
        logger.exception("Cannot start the lexoffice authorization")
        return _failure_page(request, "configuration")
    return response


def _do_login(backend: Any, user: Any, social_user: Any) -> None:
    auth_login(backend.strategy.request, user, backend=BACKEND_PATH)


def _classify(exc: Exception) -> str:
    if isinstance(exc, AuthCanceled):
        return "access_denied"
    if isinstance(exc, AuthSessionError) or (
        isinstance(exc, AuthInputError) and exc.parameter == "state"
    ):
        return "state"
    if isinstance(exc, AuthInputError):
        return "missing_code"
    if isinstance(exc, AuthCredentialError):
        return "code_rejected"
    if isinstance(exc, AuthAssociationError):
        return "already_connected"
    if isinstance(exc, AuthPolicyError):
        return "not_allowed"
    if isinstance(exc, (AuthConfigurationError, LexofficeConfigurationError)):
        return "configuration"
    if isinstance(exc, requests.RequestException):
        return "lexware_unreachable"
    return "lexware_error"


@strict_origin_referrer
@xframe_options_deny
@never_cache
@login_not_required
@require_GET
@sensitive_variables("backend", "result")
def callback(request: HttpRequest) -> HttpResponse:
    """Lexware's redirect back: state first, then ``error``, then the code exchange.

    Success redirects to a clean URL (the validated ``next``, else the
    connections page); every failure answers a page saying what to try next.
    Either way with ``Referrer-Policy: strict-origin``: this URL holds the code.
    """
    next_url = request.session.pop(NEXT_SESSION_KEY, None)
    user = request.user if request.user.is_authenticated else None
    try:
        backend = _load_backend(request)
        # One transaction for the whole pipeline: a failure after the user or the
        # association was created must not leave them behind without a connection.
        with transaction.atomic():
            result = do_complete(backend, _do_login, user=user, redirect_name=_UNUSED_REDIRECT_NAME)
    except (SocialAuthBaseException, LexofficeConfigurationError, requests.RequestException) as exc:
        reason = _classify(exc)
        log = logger.info if reason in {"access_denied", "state"} else logger.warning
        log("lexoffice callback failed: %s (%s)", reason, type(exc).__name__)
        return _failure_page(request, reason)
    except Exception:
        # A bug or an outage (e.g. the database). Answered here rather than by
        # Django's error page, whose report would show this URL's code and state;
        # the traceback still reaches the logs (without frame locals).
        logger.exception("Unexpected error in the lexoffice callback")
        return _failure_page(request, "server_error")
    connection = getattr(request, "lexoffice_connection", None)
    if connection is None:
        if isinstance(result, HttpResponse) and not isinstance(result, HttpResponseRedirect):
            return result  # a pipeline step asked for something
        return _failure_page(request, "incomplete")
    messages.success(
        request, _("%(company)s is connected.") % {"company": _name(connection)}, fail_silently=True
    )
    target = next_url if _safe_next(request, next_url) else reverse("lexoffice:connections")
    return HttpResponseRedirect(target)


def _failure_page(request: HttpRequest, reason: str) -> HttpResponse:
    login_url = reverse("lexoffice:login")
    context = {
        "reason": reason,
        "login_url": login_url,
        # Where forms and links that come back "here" (a language switch) should point:
        # this page's own URL holds the code and the state.
        "page_url": login_url,
        "lexware_url": lexoffice_settings.AUTH_BASE_URL + "/",
    }
    return render(
        request, "django_lexoffice/callback_error.html", context, status=CALLBACK_FAILURES[reason]
    )


def _name(connection: LexofficeConnection) -> str:
    return connection.company_name or connection.organization_id


#: Lexware's user names start with a salutation ("Frau Erika Musterfrau"), which
#: German would have to decline after "von" ("Herrn"); the name alone reads right.
_SALUTATIONS = ("Herr ", "Frau ")


def without_salutation(name: str) -> str:
    """``"Herr Max Schmidt"`` -> ``"Max Schmidt"``; other names unchanged."""
    for salutation in _SALUTATIONS:
        if name.startswith(salutation) and name[len(salutation) :].strip():
            return name[len(salutation) :].strip()
    return name


def _user(request: HttpRequest) -> Any:
    """The logged-in user (the views using this are ``login_required``)."""
    return request.user


@xframe_options_deny
@never_cache
@login_required
@require_GET
def connections(request: HttpRequest) -> HttpResponse:
    """The logged-in user's own lexoffice connections."""
    user_connections = list(
        LexofficeConnection.objects.filter(user=_user(request)).order_by("company_name", "pk")
    )
    for connection in user_connections:
        granted_by = without_salutation(connection.lexoffice_user_name)
        connection.granted_by = granted_by  # type: ignore[attr-defined]
    return render(
        request,
        "django_lexoffice/connections.html",
        {"connections": user_connections, "next": reverse("lexoffice:connections")},
    )


@xframe_options_deny
@never_cache
@login_required
@post_only
@csrf_protect
def disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke one of the user's own connections at Lexware and clear its tokens."""
    connection = get_object_or_404(LexofficeConnection, pk=pk, user=_user(request))
    name = _name(connection)
    if tokens.revoke(connection):
        messages.success(
            request, _("%(company)s is disconnected.") % {"company": name}, fail_silently=True
        )
    else:
        messages.warning(
            request,
            _(
                "%(company)s is disconnected here; lexoffice could not be reached to confirm. "
                "You can also end the connection in lexoffice's settings."
            )
            % {"company": name},
            fail_silently=True,
        )
    return HttpResponseRedirect(reverse("lexoffice:connections"))


#: Connections a user may remove from their list: Lexware no longer honours them.
REMOVABLE_STATUSES = (
    LexofficeConnection.Status.REVOKED,
    LexofficeConnection.Status.REAUTHORIZATION_REQUIRED,
)


@xframe_options_deny
@never_cache
@login_required
@post_only
@csrf_protect
def remove(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete one of the user's own revoked or re-authorization-required connections.

    An active connection answers 404 (disconnect it first). The social-auth association
    stays, so the user can still log in with lexoffice.
    """
    connection = get_object_or_404(
        LexofficeConnection, pk=pk, user=_user(request), status__in=REMOVABLE_STATUSES
    )
    name = _name(connection)
    connection.delete()
    messages.success(
        request,
        _("%(company)s is removed from your connections.") % {"company": name},
        fail_silently=True,
    )
    return HttpResponseRedirect(reverse("lexoffice:connections"))
