"""The bodies Lexware answers with, as Django responses."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, JsonResponse

#: Attribute set on a response the client must never receive (see ``responses_adapter``):
#: ``"lost_response"`` / ``"connection_reset"`` (raise ``requests.ConnectionError`` in-process)
#: or ``"read_timeout"`` (raise ``requests.ReadTimeout``). Over real HTTP the status code stands in.
DROP_ATTRIBUTE = "fake_lexware_drop"

_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Endpoint request timed out",
}


def no_store(response: HttpResponse) -> HttpResponse:
    """RFC 6749 §5.1: token responses must not be cached."""
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def oauth_error(error: str, description: str, status: int = 400) -> HttpResponse:
    """RFC 6749 §5.2 error; ``invalid_client`` gets 401 and a Basic challenge."""
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="Lexware Office"'
    return no_store(response)


def token_response(body: Any) -> HttpResponse:
    """A successful token response."""
    return no_store(JsonResponse(dict(body)))


def message(status: int, text: str) -> HttpResponse:
    """The API gateway's ``{"message": ...}`` bodies (401, 403, 404, 429, 5xx)."""
    return JsonResponse({"message": text}, status=status)


def unauthorized() -> HttpResponse:
    """401 for a missing, unknown, expired or revoked access token."""
    return message(401, "Unauthorized")


def too_many_requests() -> HttpResponse:
    """429 exactly as Lexware: no ``Retry-After`` and no ``X-RateLimit-*`` headers."""
    return message(429, "Too Many Requests")


def server_error(status: int = 500) -> HttpResponse:
    """A 5xx with a JSON message."""
    return message(status, _REASONS.get(status, "Internal Server Error"))


def bad_gateway_html() -> HttpResponse:
    """An HTML error page from a proxy in front of Lexware: not JSON."""
    body = (
        "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
        "<body><h1>502 Bad Gateway</h1><p>The server encountered a temporary error.</p>"
        "</body></html>\n"
    )
    return HttpResponse(body, status=502, content_type="text/html; charset=utf-8")


def dropped(kind: str, response: HttpResponse) -> HttpResponse:
    """Mark a response as never reaching the client."""
    setattr(response, DROP_ATTRIBUTE, kind)
    return response


def lost() -> HttpResponse:
    """The gateway's timeout answer; in-process the client sees a connection error instead."""
    return dropped("lost_response", message(504, "Endpoint request timed out"))


def connection_reset() -> HttpResponse:
    """Over HTTP a bare 502; in-process a ``requests.ConnectionError``."""
    return dropped("connection_reset", HttpResponse(b"", status=502, content_type="text/plain"))
