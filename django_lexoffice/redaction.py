"""Token-free descriptions of Lexware's answers, for logs, ``last_error`` and exceptions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import requests

BODY_LIMIT = 500
REDACTED = "[redacted]"
_TOKEN_KEY = re.compile(r"token|secret|code|verifier|password|authorization", re.IGNORECASE)
# Anything shaped like a bearer token or JWT in free text.
_TOKEN_LIKE = re.compile(
    r"[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{20,}(\.[A-Za-z0-9_\-]+)?|[A-Za-z0-9_\-]{60,}"
)


def json_or_none(response: requests.Response) -> Any:
    """A Lexware answer's parsed JSON; ``None`` when it is not JSON or is nested too deep for
    the parser (``RecursionError``, not ``ValueError``)."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


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
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
        rendered = redact(" ".join(text.split()))
    for secret in secrets:
        if secret:
            rendered = rendered.replace(secret, REDACTED)
    if len(rendered) > BODY_LIMIT:
        rendered = rendered[:BODY_LIMIT] + "…"
    return rendered


def describe_response(response: requests.Response, secrets: Iterable[str] = ()) -> str:
    """``HTTP 503: {"message": ...}``, never a token: ``secrets`` (the tokens the request
    sent) are removed wherever an answer echoes them, whatever their shape."""
    body = describe_body(response.text or "", secrets)
    return f"HTTP {response.status_code}: {body}" if body else f"HTTP {response.status_code}"
