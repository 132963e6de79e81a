"""Fault injection: make one endpoint fail the next N times, for every process sharing the state.

Kinds (``FakeLexware.inject(endpoint, kind, times=1, status=None, seconds=None)``):

=======================  ======================================================================
``server_error``         500 (``status=`` 502/503/504 for the variants), nothing is processed
``slow``                 sleep ``seconds`` (default 1), then answer normally; in-process, a
                         client ``timeout`` shorter than that raises ``requests.ReadTimeout``
                         after the request was processed (like a real slow server)
``invalid_grant``        400 ``invalid_grant`` (token: the code is consumed; refresh: the
                         connection is gone, as Lexware means it)
``unauthorized_client``  400 ``unauthorized_client`` (client deactivated); authorize: redirect
``non_json``             502 with an HTML error page
``rate_limit``           429 ``{"message": "Too Many Requests"}``
``rate_limit_500``       500 ``{"message": "Internal server error or rate limit exceeded"}``
``lost_response``        processed normally (a refresh rotates the tokens), but the answer is lost:
                         504 ``Endpoint request timed out`` over HTTP, ``requests.ConnectionError``
                         in-process
``connection_reset``     nothing is processed: 502 over HTTP, ``requests.ConnectionError``
                         in-process
=======================  ======================================================================

Endpoints: ``authorize`` (the GET of the consent page and ``FakeLexware.approve``), ``token`` (code
exchange), ``refresh`` (refresh grant), ``revoke``, ``profile`` (``/v1/profile``) and ``api``
(every other ``/v1`` endpoint).
"""

from __future__ import annotations

from typing import TypedDict

from django.http import HttpResponse

from . import clock, replies
from .constants import ENDPOINTS
from .state import FakeState

FAULT_KINDS: tuple[str, ...] = (
    "server_error",
    "slow",
    "invalid_grant",
    "unauthorized_client",
    "non_json",
    "rate_limit",
    "rate_limit_500",
    "lost_response",
    "connection_reset",
)
_ANSWERING = ("server_error", "non_json", "rate_limit", "rate_limit_500", "connection_reset")
#: Which kinds make sense where (Lexware's API gateway does not speak OAuth errors, and the
#: authorization page has no response to lose).
ALLOWED: dict[str, tuple[str, ...]] = {
    "authorize": (*_ANSWERING, "slow", "unauthorized_client"),
    "token": FAULT_KINDS,
    "refresh": FAULT_KINDS,
    "revoke": (*_ANSWERING, "slow", "unauthorized_client", "lost_response"),
    "profile": (*_ANSWERING, "slow", "lost_response"),
    "api": (*_ANSWERING, "slow", "lost_response"),
}
SERVER_ERROR_STATUSES = (500, 502, 503, 504)


class Fault(TypedDict):
    """An injected fault."""

    endpoint: str
    kind: str
    times: int | None
    status: int
    seconds: float


def inject(
    state: FakeState,
    endpoint: str,
    kind: str,
    *,
    times: int | None = 1,
    status: int | None = None,
    seconds: float | None = None,
) -> Fault:
    """Arm a fault for the next ``times`` requests to ``endpoint`` (``None``: until cleared)."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; choose from {ENDPOINTS}")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; choose from {FAULT_KINDS}")
    if kind not in ALLOWED[endpoint]:
        raise ValueError(f"fault {kind!r} does not apply to endpoint {endpoint!r}")
    if times is not None and times < 1:
        raise ValueError("times must be at least 1 (or None for every request)")
    if status is not None and (kind != "server_error" or status not in SERVER_ERROR_STATUSES):
        raise ValueError(f"status= applies to server_error only, one of {SERVER_ERROR_STATUSES}")
    if seconds is not None and kind != "slow":
        raise ValueError("seconds= applies to the slow fault only")
    fault: Fault = {
        "endpoint": endpoint,
        "kind": kind,
        "times": times,
        "status": status or 500,
        "seconds": 1.0 if seconds is None else float(seconds),
    }
    state.set("fault-used", endpoint, 0)
    state.set("fault", endpoint, fault)
    return fault


def clear(state: FakeState, endpoint: str | None = None) -> None:
    """Disarm the fault of one endpoint, or of all."""
    for name in (endpoint,) if endpoint else ENDPOINTS:
        state.delete("fault", name)


def take(state: FakeState, endpoint: str) -> Fault | None:
    """The fault to apply to this request, if one is armed and not used up.

    ``incr`` on a shared counter hands out each of the ``times`` shots exactly once, even to
    concurrent requests in different processes.
    """
    fault: Fault | None = state.get("fault", endpoint)
    if fault is None:
        return None
    if fault["times"] is None:
        return fault
    if state.incr("fault-used", endpoint) <= fault["times"]:
        return fault
    return None


def early_response(fault: Fault) -> HttpResponse | None:
    """The answer for faults that replace processing; ``None`` for ``slow``/``lost_response``."""
    kind = fault["kind"]
    if kind == "server_error":
        return replies.server_error(fault["status"])
    if kind == "non_json":
        return replies.bad_gateway_html()
    if kind == "rate_limit":
        return replies.too_many_requests()
    if kind == "rate_limit_500":
        return replies.message(500, "Internal server error or rate limit exceeded")
    if kind == "connection_reset":
        return replies.connection_reset()
    if kind in ("invalid_grant", "unauthorized_client"):
        return replies.oauth_error(kind, f"injected fault: {kind}")
    return None


def delay(fault: Fault | None, read_timeout: float | None) -> bool:
    """Sleep for a ``slow`` fault. Returns ``True`` if the client's read timeout ran out first.

    ``read_timeout`` is known in-process only; there we sleep just as long as the client would
    wait (no long real sleeps in tests), then process the request anyway, as a real server would.
    """
    if fault is None or fault["kind"] != "slow":
        return False
    if read_timeout is not None and read_timeout < fault["seconds"]:
        clock.sleep(read_timeout)
        return True
    clock.sleep(fault["seconds"])
    return False


def finish(fault: Fault | None, response: HttpResponse, timed_out: bool) -> HttpResponse:
    """Apply ``lost_response`` / a client read timeout after the request was processed."""
    if timed_out:
        return replies.dropped("read_timeout", response)
    if fault is not None and fault["kind"] == "lost_response":
        return replies.lost()
    return response
