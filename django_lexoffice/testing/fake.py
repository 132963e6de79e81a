"""``FakeLexware``: the Python API tests use to drive and inspect the fake.

Example::

    from django_lexoffice.testing import FakeLexware

    def test_login(client):
        with FakeLexware.activate() as fake:       # in-process, through ``responses``
            fake.register_client("id", secret="s",
                                 redirect_uris=["http://testserver/lexoffice/callback/"])
            response = client.post(reverse("lexoffice:login"))
            callback = fake.approve(response["Location"])   # the user says "Zulassen"
            client.get(callback)
            assert fake.count("token") == 1

All state lives in the cache named by ``LEXOFFICE_FAKE_CACHE`` (see ``state``), so a
``FakeLexware`` in a test process sees and steers a fake served by ``runserver`` or
``live_server`` sharing that cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

from django_lexoffice.conf import settings as lexoffice_settings

from . import authorize as authorization
from . import faults, grants, ratelimit, resources, responses_adapter
from .constants import COUNTERS, SCOPES, Company
from .exceptions import AuthorizeErrorPage, FakeLexwareError, InjectedFaultError
from .grants import TokenResponse
from .state import FakeState
from .webhooks import FakeWebhooksMixin


class FakeLexware(FakeWebhooksMixin):
    """A strict fake of Lexware's authorization server and API, steered from tests."""

    def __init__(self, *, cache_alias: str | None = None) -> None:
        self.state = FakeState(cache_alias)
        #: The active ``responses.RequestsMock`` while :meth:`mock` is in effect.
        self.requests_mock: responses.RequestsMock | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all run-time state: clients, companies added, grants, faults, counters."""
        self.state.reset()

    @contextmanager
    def mock(
        self, requests_mock: responses.RequestsMock | None = None
    ) -> Iterator[responses.RequestsMock]:
        """Route ``requests`` to the fake in-process while the block runs.

        Reads ``LEXOFFICE_AUTH_BASE_URL`` / ``LEXOFFICE_API_BASE_URL`` now. Pass an already
        active ``RequestsMock`` to add the fake's routes to it instead of starting a new one
        (two active mocks do not stack). Yields the mock, for adding other hosts' responses.
        """
        if requests_mock is not None:
            responses_adapter.register(requests_mock)
            self.requests_mock = requests_mock
            try:
                yield requests_mock
            finally:
                self.requests_mock = None
            return
        with responses_adapter.new_mock() as mock:
            self.requests_mock = mock
            try:
                yield mock
            finally:
                self.requests_mock = None

    @classmethod
    @contextmanager
    def activate(cls, *, cache_alias: str | None = None) -> Iterator[FakeLexware]:
        """A fresh, reset fake routed in-process for the block; reset again afterwards."""
        fake = cls(cache_alias=cache_alias)
        fake.reset()
        try:
            with fake.mock():
                yield fake
        finally:
            fake.reset()

    # -- set-up ------------------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        *,
        secret: str = "",
        redirect_uris: list[str],
        scopes: list[str] | None = None,
    ) -> None:
        """Register a client; ``secret=""`` makes it public; ``scopes=None``: every scope."""
        self.state.register_client(
            client_id, secret=secret, redirect_uris=redirect_uris, scopes=scopes
        )

    def add_company(
        self,
        *,
        company_name: str,
        user_name: str,
        user_email: str,
        organization_id: str | None = None,
        user_id: str | None = None,
        tax_type: str = "net",
        small_business: bool = False,
        business_features: list[str] | None = None,
        features: list[str] | None = None,
        subscription_status: str = "active",
    ) -> Company:
        """Add a company users can pick on the consent page; returns it (with its ids)."""
        if tax_type not in ("net", "gross", "vatfree"):
            raise ValueError("tax_type must be net, gross or vatfree")
        company: Company = {
            "organization_id": organization_id or str(uuid.uuid4()),
            "company_name": company_name,
            "user_id": user_id or str(uuid.uuid4()),
            "user_name": user_name,
            "user_email": user_email,
            "business_features": list(business_features or ["INVOICING", "BOOKKEEPING"]),
            "features": list(features or []),
            "subscription_status": subscription_status,
            "tax_type": tax_type,
            "small_business": small_business,
        }
        self.state.add_company(company)
        return company

    def companies(self) -> list[Company]:
        """Every company the fake knows, demo companies first."""
        return self.state.companies()

    def add_contact(
        self, organization_id: str, name: str, *, number: int | None = None
    ) -> dict[str, Any]:
        """Append a (company) contact to ``/v1/contacts`` of an organization; returns it."""
        if number is None:
            number = 10001 + len(resources.all_contacts(self.state, organization_id))
        contact = resources.make_contact(organization_id, name, number, str(uuid.uuid4()))
        self.state.add_contact(organization_id, contact)
        return contact

    # -- the browser part of the flow ----------------------------------------------------------

    def _validate_url(self, authorize_url: str) -> authorization.AuthorizeRequest:
        parts = urlsplit(authorize_url)
        expected = lexoffice_settings.AUTHORIZE_URL
        if f"{parts.scheme}://{parts.netloc}{parts.path}" != expected:
            raise FakeLexwareError(
                f"{authorize_url!r} is not the authorization endpoint {expected!r}"
            )
        fault = faults.take(self.state, "authorize")
        if fault is not None and fault["kind"] != "unauthorized_client":
            early = faults.early_response(fault)
            if early is not None:
                raise InjectedFaultError(fault["kind"], early.status_code)
            faults.delay(fault, None)
        auth = authorization.validate(self.state, parse_qs(parts.query, keep_blank_values=True))
        if fault is not None and fault["kind"] == "unauthorized_client":
            raise authorization.RedirectError(
                auth.redirect_uri, "unauthorized_client", "injected fault", auth.state
            )
        return auth

    def approve(self, authorize_url: str, company: str | None = None) -> str:
        """Simulate the user logging in and clicking "Zulassen"; returns the callback URL.

        Validates ``authorize_url`` exactly as the consent page does. ``company``: an
        organization id or company name (default: the first company, "Testfirma GmbH").
        Returns the redirect with ``code`` and ``state``, or with ``error`` where Lexware would
        redirect with one; raises :class:`AuthorizeErrorPage` where Lexware shows an error
        page instead.
        """
        try:
            auth = self._validate_url(authorize_url)
        except authorization.RedirectError as exc:
            return exc.url
        return authorization.approve_url(self.state, auth, self._company_id(company))

    def _company_id(self, company: str | None) -> str:
        companies = self.state.companies()
        if company is None:
            return companies[0]["organization_id"]
        for candidate in companies:
            if company in (candidate["organization_id"], candidate["company_name"]):
                return candidate["organization_id"]
        raise FakeLexwareError(f"unknown company {company!r}")

    def deny(self, authorize_url: str) -> str:
        """Simulate the user clicking "Ablehnen": the callback URL with ``error=access_denied``."""
        try:
            auth = self._validate_url(authorize_url)
        except authorization.RedirectError as exc:
            return exc.url
        return authorization.deny_url(auth)

    def issue_tokens(
        self,
        client_id: str,
        *,
        organization_id: str | None = None,
        scopes: list[str] | None = None,
        connection_name: str | None = None,
    ) -> TokenResponse:
        """A new connection without the browser flow: a dict like Lexware's token response.

        ``scopes`` default to what the client is provisioned for (every scope if unrestricted).
        Not counted in ``count("token")``.
        """
        client = self.state.get_client(client_id)
        if client is None:
            raise FakeLexwareError(f"client {client_id!r} is not registered")
        allowed = client["scopes"] if client["scopes"] is not None else list(SCOPES)
        scopes = list(scopes) if scopes is not None else list(allowed)
        bad = [scope for scope in scopes if scope not in SCOPES or scope not in allowed]
        if bad:
            raise FakeLexwareError(f"scopes not available to {client_id!r}: {bad}")
        company = self.state.get_company(self._company_id(organization_id))
        assert company is not None
        return grants.create_grant(
            self.state,
            client_id=client_id,
            company=company,
            scopes=scopes,
            connection_name=connection_name,
        )

    # -- faults, limits, time ------------------------------------------------------------------

    def inject(
        self,
        endpoint: str,
        kind: str,
        *,
        times: int | None = 1,
        status: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """Make ``endpoint`` fail the next ``times`` requests (``None``: until cleared).

        See :mod:`django_lexoffice.testing.faults` for the kinds and endpoints.
        """
        faults.inject(self.state, endpoint, kind, times=times, status=status, seconds=seconds)

    def clear_faults(self, endpoint: str | None = None) -> None:
        """Disarm injected faults (of one endpoint, or all)."""
        faults.clear(self.state, endpoint)

    def set_rate_limit(self, rate: float | None = 2.0, burst: int | None = None) -> None:
        """Requests per second per client id on the API; ``None`` disables the limit."""
        ratelimit.configure(self.state, rate, burst)

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock forward (codes and access tokens expire, the bucket refills)."""
        self.state.advance_clock(seconds)

    # -- inspection ----------------------------------------------------------------------------

    def count(self, name: str, *, connection_id: str | None = None) -> int:
        """How many requests of a kind Lexware answered successfully.

        ``authorize`` (codes issued), ``token`` (code exchanges), ``refresh`` (rotations, also
        per ``connection_id``), ``revoke``, ``profile``, ``api`` (other ``/v1`` calls) and
        ``rate_limited`` (429 answers of the bucket).
        """
        if name not in COUNTERS:
            raise ValueError(f"unknown counter {name!r}; choose from {COUNTERS}")
        if connection_id is not None:
            if name != "refresh":
                raise ValueError("connection_id= is supported for the refresh counter only")
            return self.state.counter("count-refresh", connection_id)
        return self.state.counter("count", name)

    def is_refresh_token_valid(self, refresh_token: str) -> bool:
        """Whether this is the current refresh token of a live connection."""
        return grants.grant_for_refresh_token(self.state, refresh_token) is not None

    def is_access_token_valid(self, access_token: str) -> bool:
        """Whether the API would accept this access token now."""
        return grants.grant_for_access_token(self.state, access_token) is not None

    def invalidate_access_token(self, access_token: str) -> None:
        """Kill an access token early, as Lexware does after a password change: API -> 401."""
        grants.invalidate_access_token(self.state, access_token)

    def revoke_connection(self, token: str) -> None:
        """The user disconnects the app in Lexware: the next refresh answers ``invalid_grant``.

        ``token``: the connection's current refresh or access token.
        """
        connection_id = grants.connection_id_for(self.state, token)
        grant = grants.get_grant(self.state, connection_id) if connection_id else None
        if grant is None:
            raise FakeLexwareError("no live connection has this token")
        grants.end_grant(self.state, grant)

    def connection_id_for(self, token: str) -> str | None:
        """The ``connectionId`` a current refresh or access token belongs to."""
        return grants.connection_id_for(self.state, token)


__all__ = ["AuthorizeErrorPage", "FakeLexware", "FakeLexwareError", "InjectedFaultError"]
