"""Route ``requests`` calls to the fake in-process, with the ``responses`` library.

Each registered callback turns the ``PreparedRequest`` into a Django request (method, path,
query string, body and every header, ``Authorization`` included) with ``RequestFactory`` and
calls the same view a live server would run, so in-process and over-HTTP behaviour cannot drift.
Anything not registered here fails loudly (``responses`` refuses unmatched requests).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
import responses
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import resolve

from django_lexoffice.conf import settings as lexoffice_settings

from . import webhooks
from .replies import DROP_ATTRIBUTE
from .views import READ_TIMEOUT_META

URLCONF = "django_lexoffice.testing.urls"

#: (method, base setting, path) of every endpoint the fake serves.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "auth", "/oauth2/authorize"),
    ("POST", "auth", "/oauth2/authorize"),
    ("POST", "auth", "/oauth2/token"),
    ("POST", "auth", "/oauth2/revoke"),
    ("GET", "api", "/v1/profile"),
    ("GET", "api", "/v1/contacts"),
)

_SKIPPED_HEADERS = {"content-type", "content-length", "host"}

#: ``responses`` accepts headers as a list of pairs (several ``Set-Cookie``), though its
#: annotations say ``Mapping``.
Reply = tuple[int, Any, bytes]
Callback = Callable[[requests.PreparedRequest], Reply]


def _read_timeout(request: requests.PreparedRequest) -> float | None:
    timeout = getattr(request, "req_kwargs", {}).get("timeout")
    if isinstance(timeout, tuple):
        timeout = timeout[1]
    return float(timeout) if timeout is not None else None


def _headers(response: HttpResponse) -> list[tuple[str, str]]:
    headers = list(response.items())
    headers += [("Set-Cookie", morsel.OutputString()) for morsel in response.cookies.values()]
    return headers


def _make_callback(path: str) -> Callback:
    def callback(prepared: requests.PreparedRequest) -> Reply:
        url = urlsplit(str(prepared.url))
        body: Any = prepared.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        extra: dict[str, Any] = {READ_TIMEOUT_META: _read_timeout(prepared)}
        request = RequestFactory().generic(
            str(prepared.method),
            f"{path}?{url.query}" if url.query else path,
            data=body,
            content_type=prepared.headers.get("Content-Type", ""),
            secure=url.scheme == "https",
            headers={
                name: value
                for name, value in prepared.headers.items()
                if name.lower() not in _SKIPPED_HEADERS
            },
            **extra,
        )
        match = resolve(path, urlconf=URLCONF)
        request.resolver_match = match
        response: HttpResponse = match.func(request, *match.args, **match.kwargs)
        drop = getattr(response, DROP_ATTRIBUTE, None)
        if drop == "read_timeout":
            raise requests.ReadTimeout(f"fake Lexware: read timed out ({path})", request=prepared)
        if drop is not None:
            raise requests.ConnectionError(f"fake Lexware: {drop} ({path})", request=prepared)
        return response.status_code, _headers(response), response.content

    return callback


def register(mock: responses.RequestsMock) -> None:
    """Add the fake's endpoints to a ``RequestsMock``; base URLs are read from settings now."""
    bases = {"auth": lexoffice_settings.AUTH_BASE_URL, "api": lexoffice_settings.API_BASE_URL}
    for method, base, path in ROUTES:
        url = re.compile(re.escape(bases[base] + path) + r"(\?.*)?\Z")
        mock.add_callback(method, url, callback=_make_callback(path), content_type=None)
    webhooks.register_routes(mock, bases["api"], _make_callback)


def new_mock() -> responses.RequestsMock:
    """A ``RequestsMock`` routing Lexware's hosts to the fake (not yet started)."""
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    register(mock)
    return mock
