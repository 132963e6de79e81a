"""Views of the ``lexoffice`` URL namespace: login, callback, connections, disconnect, remove."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING, Any

import requests
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_not_required, login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_exempt
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
from .conf import BACKEND_PATH
from .conf import settings as lexoffice_settings
from .exceptions import LexofficeConfigurationError, LexofficeError, TokenDecryptionError
from .models import LexofficeConnection

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


class AuthenticatedHttpRequest(HttpRequest):
    """The request of a ``login_required`` view (django-stubs' recommended typing)."""

    user: User


#: Key of the validated ``next`` URL, stored before leaving for Lexware in the session's
#: record of that flow (under its state): each flow has its own, given back only to the
#: callback that spends that state.
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
    "busy": 503,
    "incomplete": 400,
    "bad_request": 400,
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
                    "reason": "method_not_allowed",
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


def csrf_protect_with_page(page_name: str) -> Callable[[_View], _View]:
    """``csrf_protect``, but a failed check answers the app's page (403) that says the form
    expired and links to ``page_name``'s page, not Django's bare "CSRF verification failed".

    The same check (``CsrfViewMiddleware``, which also logs the rejection); only the page
    differs. The usual cause is a token rotated by a login in another tab.
    """

    def decorate(view: _View) -> _View:
        @csrf_exempt  # the site-wide middleware leaves the check to us
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            middleware = CsrfViewMiddleware(view)
            middleware.process_request(request)
            if middleware.process_view(request, view, args, kwargs) is not None:
                page_url = reverse(page_name)
                context = {"reason": "csrf_failure", "page_url": page_url}
                return render(request, "django_lexoffice/csrf_failure.html", context, status=403)
            response = view(request, *args, **kwargs)
            middleware.process_response(request, response)  # sets the CSRF cookie if due
            return response

        return wrapper

    return decorate


def connection_action(view: _View) -> _View:
    """The guards of a button on the connections page that changes one of the user's own
    connections: logged in, POST only (:func:`post_only`), CSRF-checked, never cached or
    framed, and outside ``ATOMIC_REQUESTS``: the change calls Lexware and commits on its own,
    so a failure later in the request cannot roll back what Lexware already did."""
    view = transaction.non_atomic_requests(view)
    view = csrf_protect_with_page("lexoffice:connections")(view)
    view = post_only(view)
    view = _login_required_back_to_connections(view)
    view = never_cache(view)
    return xframe_options_deny(view)


def _login_required_back_to_connections(view: _View) -> _View:
    """``login_required``, but the login leads back to the connections page: the action
    itself answers only POST, and a session that expired before the click would end on
    the "only works through its button" page."""

    @login_not_required  # checked here, with our own next (LoginRequiredMiddleware too)
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(reverse("lexoffice:connections"))
        return view(request, *args, **kwargs)

    return wrapper


@strict_origin_referrer
@xframe_options_deny
@never_cache
@login_not_required
@csrf_protect_with_page("lexoffice:login")
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    """GET: a page with a "Connect" button. POST (CSRF-protected): start the flow."""
    source = request.POST if request.method == "POST" else request.GET
    next_url = _safe_next(request, source.get(REDIRECT_FIELD_NAME))
    if request.method == "GET":
        return render(request, "django_lexoffice/login.html", {"next": next_url or ""})
    if not lexoffice_settings.CLIENT_ID:
        logger.error("SOCIAL_AUTH_LEXOFFICE_KEY is not set (system check lexoffice.E001)")
        return _failure_page(request, "configuration")
    user = request.user if request.user.is_authenticated else None
    try:
        backend = _load_backend(request)
        response: HttpResponse = do_auth(backend, redirect_name=_UNUSED_REDIRECT_NAME, user=user)
    except (SocialAuthBaseException, LexofficeConfigurationError):
        logger.exception("Cannot start the lexoffice authorization")
        return _failure_page(request, "configuration")
    if next_url:
        backend.keep_with_flow(NEXT_SESSION_KEY, next_url)
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
    if isinstance(exc, LexofficeError):  # the shared rate limit is busy or its cache is down
        return "busy"
    return "lexware_error"


def _forget_query_afterwards(view: Any) -> Any:
    """After ``view``, drop the request's query string (it holds code and state).

    Everything that looks at the request after the view - Django's ``django.request``
    logger, error e-mails to ``ADMINS`` (``AdminEmailHandler``), error reports, a
    request's ``repr`` in a traceback - then sees the path only.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            response: HttpResponse = view(request, *args, **kwargs)
        finally:
            _forget_query(request)
        return response

    return wrapper


#: ``request.META`` keys that may hold the request's URI with its query: uWSGI and
#: mod_wsgi (``REQUEST_URI``), gunicorn (``RAW_URI``), proxies that pass the original URI on.
_URI_KEYS = (
    "REQUEST_URI",
    "RAW_URI",
    "HTTP_X_ORIGINAL_URI",
    "HTTP_X_ORIGINAL_URL",
    "HTTP_X_REWRITE_URL",
    "HTTP_X_FORWARDED_URI",
)


def _forget_query(request: HttpRequest) -> None:
    """Drop the query (code and state) from ``request``: ``GET``, ``QUERY_STRING`` and the
    URI-carrying keys of ``META``. Every other key stays as it is."""
    if not request.META.get("QUERY_STRING"):
        return
    # A copy: the WSGI environ itself stays as the server handed it over.
    meta = dict(request.META)
    meta["QUERY_STRING"] = ""
    for key in _URI_KEYS:
        value = meta.get(key)
        if isinstance(value, str):
            # Everything after "?", in whatever encoding the server or proxy kept it.
            meta[key] = value.partition("?")[0]
    request.META = meta
    request.GET = QueryDict()


@_forget_query_afterwards
@strict_origin_referrer
@xframe_options_deny
@never_cache
@login_not_required
@require_GET
@transaction.non_atomic_requests  # the pipeline has its own transaction; tokens commit on their own
@sensitive_variables()  # the request's URL holds code and state; tokens pass below
def callback(request: HttpRequest) -> HttpResponse:
    """Lexware's redirect back: state first, then ``error``, then the code exchange.

    Success redirects to a clean URL (the validated ``next``, else the
    connections page); every failure answers a page saying what to try next.
    Either way with ``Referrer-Policy: strict-origin``: this URL holds the code.
    The state is spent by the first callback that presents it, whatever follows.
    """
    try:
        request.GET  # noqa: B018 (parsed now: too many parameters is the caller's fault)
    except SuspiciousOperation as exc:
        logger.info("lexoffice callback refused: %s", type(exc).__name__)
        return _failure_page(request, "bad_request")
    try:
        backend = _load_backend(request)  # takes its copy of the query (backend.data)
        # From here on the request shows no code or state, also to error reports of
        # failures inside the pipeline.
        _forget_query(request)
        user = request.user if request.user.is_authenticated else None
        _spend_state(request, backend)
        # Only now: a forged callback (wrong state) must not touch a pending flow's next.
        next_url = backend.kept_with_flow(NEXT_SESSION_KEY)
        # One transaction for the whole pipeline: a failure after the user or the
        # association was created must not leave them behind without a connection.
        with _revoke_grant_on_failure(backend), transaction.atomic():
            result = do_complete(backend, _do_login, user=user, redirect_name=_UNUSED_REDIRECT_NAME)
    except (SocialAuthBaseException, LexofficeError, requests.RequestException) as exc:
        reason = _classify(exc)
        log = logger.info if reason in {"access_denied", "state"} else logger.warning
        log("lexoffice callback failed: %s (%s)", reason, type(exc).__name__)
        return _failure_page(request, reason)
    except Exception:
        # A bug or an outage (e.g. the database). Answered here rather than by
        # Django's error page, whose report would show this URL's code and state;
        # the traceback still reaches the logs (frame locals hidden from error reports).
        logger.exception("Unexpected error in the lexoffice callback")
        return _failure_page(request, "server_error")
    connection = getattr(request, "lexoffice_connection", None)
    if connection is None:
        if isinstance(result, HttpResponse) and not isinstance(result, HttpResponseRedirect):
            return result  # a pipeline step asked for something
        return _failure_page(request, "incomplete")
    messages.success(
        request,
        _("%(company)s is connected.") % {"company": connection.display_name},
        fail_silently=True,
    )
    if not isinstance(next_url, str) or not _safe_next(request, next_url):
        next_url = reverse("lexoffice:connections")
    return HttpResponseRedirect(next_url)


def _spend_state(request: HttpRequest, backend: LexofficeOAuth2) -> None:
    """Check the callback's state and spend it for good, before anything can fail.

    Spent inside the pipeline's transaction, a failure would roll the spending back;
    and ``SessionMiddleware`` does not save the session of a 5xx answer. So the
    ``Nonce`` row goes in a transaction of its own and the session is saved here.
    """
    with transaction.atomic():
        backend.spend_state()
    request.session.save()


@contextmanager
def _revoke_grant_on_failure(backend: LexofficeOAuth2) -> Iterator[None]:
    """When the block fails after the code exchange, revoke the grant it created.

    Entered outside the pipeline's transaction, so the revocation comes after the rollback:
    no row holds the grant then, and Lexware would keep it alive for nobody.
    """
    try:
        yield
    except Exception:
        backend.revoke_issued_grant()
        raise


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


#: Lexware's user names start with a salutation ("Frau Erika Musterfrau"), which
#: German would have to decline after "von" ("Herrn"); the name alone reads right.
_SALUTATIONS = ("Herr ", "Frau ")


def without_salutation(name: str) -> str:
    """``"Herr Max Schmidt"`` -> ``"Max Schmidt"``; other names unchanged."""
    for salutation in _SALUTATIONS:
        if name.startswith(salutation) and name[len(salutation) :].strip():
            return name[len(salutation) :].strip()
    return name


@xframe_options_deny
@never_cache
@login_required
@require_GET
def connections(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The logged-in user's own lexoffice connections."""
    # No token is needed here: none is decrypted (the page works with a wrong key).
    user_connections = list(
        LexofficeConnection.objects.without_tokens()
        .filter(user=request.user)
        .order_by("company_name", "pk")
    )
    for connection in user_connections:
        granted_by = without_salutation(connection.lexoffice_user_name)
        connection.granted_by = granted_by  # type: ignore[attr-defined]
    return render(
        request,
        "django_lexoffice/connections.html",
        {"connections": user_connections, "next": reverse("lexoffice:connections")},
    )


@connection_action  # revoking commits on its own
def disconnect(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Revoke one of the user's own connections at Lexware and clear its tokens."""
    connection = get_object_or_404(
        LexofficeConnection.objects.without_tokens(), pk=pk, user=request.user
    )
    name = connection.display_name
    if connection.status == LexofficeConnection.Status.REVOKED:  # a second tab, a replay
        messages.info(
            request,
            _("%(company)s is already disconnected.") % {"company": name},
            fail_silently=True,
        )
        return HttpResponseRedirect(reverse("lexoffice:connections"))
    try:
        confirmed = tokens.revoke(connection)
    except TokenDecryptionError:
        # Revoking needs the refresh token; the site's key cannot read it. Nothing changed.
        logger.error(
            "Cannot disconnect lexoffice connection %s: FIELD_ENCRYPTION_KEY cannot decrypt "
            "its tokens",
            connection.pk,
        )
        return render(
            request,
            "django_lexoffice/encryption_key_error.html",
            {"reason": "encryption_key"},
            status=503,
        )
    if confirmed:
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


@connection_action  # deleting revokes at Lexware first
def remove(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Delete one of the user's own revoked or re-authorization-required connections.

    One removed already (a second tab) or active again (reconnected meanwhile) stays as it
    is, with a message; so does another user's, which looks the same as one that is gone.
    The social-auth association stays, so the user can still log in with lexoffice.
    """
    connections = LexofficeConnection.objects.without_tokens().filter(user=request.user)
    connection = connections.filter(pk=pk).first()
    if connection is None or connection.status not in REMOVABLE_STATUSES:
        message = (
            _("That connection is no longer in your list.")
            if connection is None
            else _("%(company)s is connected again and stays in your list.")
            % {"company": connection.display_name}
        )
        messages.info(request, message, fail_silently=True)
        return HttpResponseRedirect(reverse("lexoffice:connections"))
    name = connection.display_name
    connection.delete()
    messages.success(
        request,
        _("%(company)s is removed from your connections.") % {"company": name},
        fail_silently=True,
    )
    return HttpResponseRedirect(reverse("lexoffice:connections"))
