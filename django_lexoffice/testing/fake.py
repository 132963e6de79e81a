"""``FakeLexware``: what tests use to drive and inspect the fake, and its ``responses`` adapter.

The adapter turns each ``requests`` call to an endpoint in :mod:`.urls` into a Django request and
runs the same view a live server would, so in-process and over-HTTP behaviour cannot drift.
``responses`` is imported only when routing starts: a site that mounts the fake's URLs needs no
test dependency.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver
from django.utils import timezone

from django_lexoffice.conf import settings as lexoffice_settings

from . import urls, views
from .state import FakeLexwareError
from .webhooks import FakeWebhooks

if TYPE_CHECKING:
    import responses

    from django_lexoffice.models import LexofficeConnection

_SKIPPED_HEADERS = {"content-type", "content-length", "host"}


def _run_view(
    route: URLPattern | URLResolver, base: str, prepared: requests.PreparedRequest
) -> tuple[int, Any, bytes]:
    """Answer a ``requests`` call with the fake's view: ``(status, headers, body)``."""
    url = urlsplit(str(prepared.url))
    match = route.resolve(urlsplit(str(prepared.url)[len(base) :]).path)
    assert match is not None  # responses matched the route's own regex
    path = url.path
    body: Any = prepared.body or b""
    timeout = getattr(prepared, "req_kwargs", {}).get("timeout")
    read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
    extra: dict[str, Any] = {views.READ_TIMEOUT_META: read_timeout}
    request = RequestFactory().generic(
        str(prepared.method),
        f"{path}?{url.query}" if url.query else path,
        data=body.encode() if isinstance(body, str) else body,
        content_type=prepared.headers.get("Content-Type", ""),
        secure=url.scheme == "https",
        headers={k: v for k, v in prepared.headers.items() if k.lower() not in _SKIPPED_HEADERS},
        **extra,
    )
    response = match.func(request, *match.args, **match.kwargs)
    drop = getattr(response, views.DROP_ATTRIBUTE, None)
    if drop == "read_timeout":
        raise requests.ReadTimeout(f"fake Lexware: read timed out ({path})", request=prepared)
    if drop is not None:
        raise requests.ConnectionError(f"fake Lexware: {drop} ({path})", request=prepared)
    # A list of pairs keeps several Set-Cookie headers (responses accepts it).
    headers = [
        *response.items(),
        *(("Set-Cookie", m.OutputString()) for m in response.cookies.values()),
    ]
    return response.status_code, headers, response.content


class FakeLexware(FakeWebhooks):
    """A strict fake of Lexware's authorization server and API, steered from tests.

    Every instance sees the same state (the cache named by ``LEXOFFICE_FAKE_CACHE``), so a
    ``FakeLexware()`` in a test steers a fake served by ``runserver`` or ``live_server`` too.
    """

    #: The active ``responses.RequestsMock`` while :meth:`mock` is in effect: add other hosts'
    #: responses to it (every other host is refused meanwhile).
    requests_mock: responses.RequestsMock | None = None

    @classmethod
    @contextmanager
    def activate(cls) -> Iterator[FakeLexware]:
        """A reset fake routed in-process for the block, with the configured client
        (``SOCIAL_AUTH_LEXOFFICE_KEY``/``_SECRET``) registered for the test client's callback
        URL and ``LEXOFFICE_REDIRECT_URI``; reset again afterwards."""
        fake = cls()
        fake.reset()
        fake.register_configured_client()
        try:
            with fake.mock():
                yield fake
        finally:
            fake.reset()

    def register_configured_client(self, redirect_uris: list[str] | None = None) -> None:
        """Register ``SOCIAL_AUTH_LEXOFFICE_KEY``/``_SECRET`` (if a key is set) for
        ``redirect_uris``, by default :func:`default_redirect_uris`."""
        if lexoffice_settings.CLIENT_ID:
            self.register_client(
                lexoffice_settings.CLIENT_ID,
                secret=lexoffice_settings.CLIENT_SECRET,
                redirect_uris=redirect_uris or default_redirect_uris(),
            )

    def connect(
        self, user: Any, *, company: str | None = None, expires_in: float | None = None
    ) -> LexofficeConnection:
        """``user``'s stored connection to ``company`` (default "Testfirma GmbH"), holding a
        grant the fake issued to the configured client for ``LEXOFFICE_SCOPES``, as a
        completed login leaves it. ``expires_in`` (seconds) replaces the access token's stored
        expiry, e.g. to make the connection due for a refresh.
        """
        # Imported here: test modules and conftest files may import the fake before Django's
        # apps are ready.
        from django_lexoffice.models import LexofficeConnection

        found = self.find_company(company)
        scopes = list(lexoffice_settings.SCOPES)
        issued = self.issue_tokens(
            lexoffice_settings.CLIENT_ID, organization_id=found["organization_id"], scopes=scopes
        )
        lifetime = issued["expires_in"] if expires_in is None else expires_in
        return LexofficeConnection.objects.create(
            user=user,
            organization_id=found["organization_id"],
            connection_id=self.connection_id_for(issued["access_token"]) or "",
            company_name=found["company_name"],
            lexoffice_user_id=found["user_id"],
            lexoffice_user_name=found["user_name"],
            lexoffice_user_email=found["user_email"],
            scopes=scopes,
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            expires_at=timezone.now() + timedelta(seconds=lifetime),
        )

    @contextmanager
    def mock(
        self, requests_mock: responses.RequestsMock | None = None
    ) -> Iterator[responses.RequestsMock]:
        """Route ``requests`` to the fake in-process while the block runs; yields the mock.

        Reads ``LEXOFFICE_AUTH_BASE_URL``/``LEXOFFICE_API_BASE_URL`` now. Any other host is
        refused with ``requests.ConnectionError`` unless added to the yielded mock
        (``mock.add_passthru(url)`` or ``mock.add(...)``). Pass an active ``RequestsMock`` to
        add the fake's routes to it instead: two active mocks do not stack.
        """
        import responses  # only here: serving the fake over HTTP needs no responses

        mock = requests_mock or responses.RequestsMock(assert_all_requests_are_fired=False)
        for group in urls.urlpatterns:
            if not isinstance(group, URLResolver):
                continue  # Verbundene Apps: a page for people, not an endpoint
            setting = urls.BASE_URL_SETTINGS[str(group.pattern)]
            base = f"{getattr(lexoffice_settings, setting)}/{group.pattern}"
            for route in group.url_patterns:
                # The route's own regex, anchored to the base URL, with any query string.
                regex = route.pattern.regex.pattern.removeprefix("^").removesuffix(r"\Z")
                url = re.compile(re.escape(base) + regex + r"(\?.*)?\Z")
                callback = functools.partial(_run_view, route, base)
                for method in ("GET", "POST", "DELETE"):
                    mock.add_callback(method, url, callback=callback, content_type=None)
        self.requests_mock = mock
        try:
            with nullcontext() if requests_mock is not None else mock:
                yield mock
        finally:
            self.requests_mock = None

    def approve(self, authorize_url: str, company: str | None = None) -> str:
        """The user logs in and clicks "Zulassen": returns the callback URL.

        ``authorize_url`` goes through the consent page's own checks and ``authorize`` faults.
        ``company``: an organization id or company name (default: "Testfirma GmbH"). Returns
        the redirect with ``code`` and ``state``, or with ``error`` where Lexware redirects
        with one; raises :class:`AuthorizeErrorPage` where Lexware shows an error page, and
        :class:`InjectedFaultError` when an injected fault broke the page.
        """
        organization_id = self.find_company(company)["organization_id"]
        return self._consent(authorize_url, {"decision": "allow", "company": organization_id})

    def deny(self, authorize_url: str) -> str:
        """The user clicks "Ablehnen": the callback URL with ``error=access_denied``."""
        return self._consent(authorize_url, {"decision": "deny"})

    def _consent(self, authorize_url: str, decision: dict[str, str]) -> str:
        # The browser's walk through the consent page: open it, then send the user's decision.
        parts = urlsplit(authorize_url)
        endpoint = lexoffice_settings.AUTHORIZE_URL
        if f"{parts.scheme}://{parts.netloc}{parts.path}" != endpoint:
            raise FakeLexwareError(
                f"{authorize_url!r} is not the authorization endpoint {endpoint!r}"
            )
        path = f"{parts.path}?{parts.query}"
        try:
            page = views.consent(RequestFactory().get(path), self)
            if page.status_code == 200:
                page = views.consent(RequestFactory().post(path, decision), self)
        except views.RedirectError as exc:
            return exc.url
        if page.status_code != 302:
            raise views.InjectedFaultError(page.status_code)
        return str(page["Location"])


def default_redirect_uris() -> list[str]:
    """``LEXOFFICE_REDIRECT_URI`` if set, and the test client's callback URL."""
    uris = ["http://testserver/lexoffice/callback/"]
    configured = lexoffice_settings.REDIRECT_URI
    return [configured, *uris] if configured and configured not in uris else uris
