"""Exceptions the fake raises in tests (never sent over HTTP)."""

from __future__ import annotations


class FakeLexwareError(Exception):
    """Base class: the fake refused to do what a test asked."""


class AuthorizeErrorPage(FakeLexwareError):
    """Lexware would show an error page (HTTP 400) and NOT redirect back (RFC 6749 §4.1.2.1).

    Raised by :meth:`FakeLexware.approve` / :meth:`FakeLexware.deny` for an unknown ``client_id``
    or a ``redirect_uri`` that is not registered exactly; ``code`` names the problem.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class InjectedFaultError(FakeLexwareError):
    """An injected fault made the authorization page fail (``status`` is what Lexware answered)."""

    def __init__(self, kind: str, status: int) -> None:
        super().__init__(f"injected fault {kind!r}: the authorization page answered HTTP {status}")
        self.kind = kind
        self.status = status
