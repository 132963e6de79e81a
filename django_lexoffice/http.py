"""HTTP calls to Lexware's authorization server, and safe descriptions of responses.

Client authentication is HTTP Basic ``base64(client_id:client_secret)`` for a
confidential client (the only method Lexware documents); a public client sends
``client_id`` in the body and no secret. Timeouts always apply and TLS
certificates are always verified.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from django.views.decorators.debug import sensitive_variables

from .conf import settings as lexoffice_settings
from .exceptions import LexofficeConfigurationError, LexofficeHTTPError

BODY_LIMIT = 500
REDACTED = "[redacted]"
_TOKEN_KEY = re.compile(r"token|secret|code|verifier|password|authorization", re.IGNORECASE)
# Anything shaped like a bearer token or JWT in free text.
_TOKEN_LIKE = re.compile(
    r"[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{20,}(\.[A-Za-z0-9_\-]+)?|[A-Za-z0-9_\-]{60,}"
)


def require_secure_url(url: str) -> None:
    """Refuse to send credentials anywhere but https (plain http only to loopback, for tests).

    Raises :class:`~django_lexoffice.exceptions.LexofficeConfigurationError` before any
    byte leaves the machine.
    """
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return
    raise LexofficeConfigurationError(
        f"Refusing to send lexoffice credentials to {parts.scheme}://{parts.hostname}: "
        "LEXOFFICE_AUTH_BASE_URL and LEXOFFICE_API_BASE_URL must use https "
        "(plain http is allowed only to 127.0.0.1 or localhost, for tests)."
    )


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


@sensitive_variables()  # form data and client credentials, also in the frames below
def post_form(url: str, data: dict[str, str]) -> requests.Response:
    """POST ``data`` form-encoded to Lexware's authorization server with client auth."""
    require_secure_url(url)
    client_id = lexoffice_settings.CLIENT_ID
    secret = lexoffice_settings.CLIENT_SECRET
    auth: tuple[str, str] | None
    if secret:
        auth = (client_id, secret)
    else:
        auth = None
        data = {**data, "client_id": client_id}
    try:
        return requests.post(
            url,
            data=data,
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=lexoffice_settings.TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException:
        raise  # classified by the caller
    except Exception as exc:
        # Anything else is a bug below us. Re-raised without its chain: the
        # frames inside requests hold the form data (tokens, secret), and Django's
        # error reports would show them.
        raise LexofficeHTTPError(
            f"Unexpected {type(exc).__name__} while calling Lexware: {exc}"[:300]
        ) from None


def error_code(data: Any) -> str | None:
    """The RFC 6749 §5.2 ``error`` of a parsed response body, if any."""
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) else None


def redact(value: Any) -> Any:
    """Replace token-like values in parsed JSON (and token-shaped text) by ``[redacted]``."""
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and _TOKEN_KEY.search(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return _TOKEN_LIKE.sub(REDACTED, value)
    return value


def describe_body(text: str, secrets: Iterable[str] = ()) -> str:
    """A short, token-free rendering of a response body for logs and ``last_error``."""
    try:
        rendered = json.dumps(redact(json.loads(text)), ensure_ascii=False, sort_keys=True)
    except ValueError:
        rendered = redact(" ".join(text.split()))
    for secret in secrets:
        if secret:
            rendered = rendered.replace(secret, REDACTED)
    if len(rendered) > BODY_LIMIT:
        rendered = rendered[:BODY_LIMIT] + "…"
    return rendered


def describe_response(response: requests.Response) -> str:
    """``HTTP 503: {"message": ...}``, never a token."""
    body = describe_body(response.text or "")
    return f"HTTP {response.status_code}: {body}" if body else f"HTTP {response.status_code}"
