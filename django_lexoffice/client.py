"""``LexofficeClient``: calls to Lexware's API that keep their token fresh and stay within the rate.

Example::

    from django_lexoffice.client import LexofficeClient
    from django_lexoffice.exceptions import ConnectionNotActive, ReauthorizationRequired

    try:
        with LexofficeClient.for_user(request.user) as client:
            company = client.profile()["companyName"]
            names = [c["company"]["name"] for c in client.paginate("/v1/contacts")]
    except (ReauthorizationRequired, ConnectionNotActive):
        return redirect("lexoffice:login")

What every request does, in order:

1. Refuses to run for a connection that is not active (:class:`ConnectionNotActive`).
2. Refreshes the tokens through :func:`django_lexoffice.tokens.refresh` when the access
   token expires within ``LEXOFFICE_REFRESH_MARGIN``.
3. Takes a slot of the shared rate limit through :func:`django_lexoffice.http.take_slots`
   (every attempt does, retries included), or raises :class:`RateLimitTimeout` after
   ``LEXOFFICE_RATE_LIMIT_MAX_WAIT``. The bucket is keyed by client id and lives in Django's
   cache, so all processes using one client id together stay below ``LEXOFFICE_RATE_LIMIT``
   (exactly with Redis; see :mod:`django_lexoffice.ratelimit` for other caches).
4. Sends ``Authorization: Bearer …`` (never a token in a URL) with the default timeouts.
5. Retries through ``urllib3.util.Retry`` (see :class:`LexofficeRetry`), then handles a 500
   that means "rate limit" and a 401 (refresh once, retry once).
6. Raises :class:`LexofficeAPIError` for an error status (unless ``raise_for_status=False``).

A client holds one ``requests.Session``: use it from one thread at a time, and close it
(``with`` block or :meth:`LexofficeClient.close`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from typing import Any
from urllib.parse import urlsplit

import requests
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, MaxRetryError
from urllib3.util.retry import Retry

from . import __version__, policy, ratelimit, tokens
from .conf import settings as lexoffice_settings
from .exceptions import ContractIssue, LexofficeAPIError, NoResponse, TransientRefreshError
from .http import require_secure_url, take_slots
from .models import EXPIRY_SKEW, LexofficeConnection
from .ratelimit import SharedTokenBucket
from .redaction import describe_body, json_or_none

logger = logging.getLogger(__name__)

#: Methods Lexware may safely see twice: retried after 502/503/504, read errors and timeouts.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: Statuses retried (429 for every method, the others for idempotent methods only).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Headers that may carry a request id, in order of preference.
REQUEST_ID_HEADERS = ("x-request-id", "x-amzn-requestid", "x-amz-apigw-id", "request-id")
#: Body keys of Lexware's error formats holding a request id ("legacy" and "regular").
REQUEST_ID_KEYS = ("requestId", "traceId")

#: ``last_error`` of a connection whose lexoffice contract has an issue (HTTP 402).
CONTRACT_ISSUE_PREFIX = "HTTP 402 contract issue:"

DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF_FACTOR = 0.5
DEFAULT_BACKOFF_JITTER = 0.5
DEFAULT_BACKOFF_MAX = 30.0


def _sleep(seconds: float) -> None:
    """Wait between retries (one place, so tests can stand in for it)."""
    if seconds > 0:
        time.sleep(seconds)


def retry_delay(retry: int, *, factor: float, jitter: float, cap: float) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, …): ``factor * 2**(retry-1)``
    plus up to ``jitter`` random seconds, at most ``cap``."""
    if retry < 1:
        return 0.0
    value = factor * 2 ** (retry - 1) + random.random() * jitter  # noqa: S311 (not crypto)
    return float(min(cap, max(0.0, value)))


class LexofficeRetry(Retry):
    """``urllib3``'s ``Retry`` with Lexware's rules, mounted on the client's session.

    * 429: retried for every method, POST included: Lexware did not perform the call.
    * 502/503/504, read errors and read timeouts: retried for idempotent methods only; a POST
      that timed out or got 504 may have been processed and is never repeated.
    * Connection errors before anything was sent: retried for every method (urllib3's rule).
    * Waits ``retry_delay`` from the first retry on (urllib3 retries the first time at once,
      which after a 429 only asks for another), or a ``Retry-After`` capped at ``backoff_max``;
      ``pause(delay)`` does the waiting, so the client can also take a rate-limit token.
    """

    def __init__(self, *args: Any, pause: Callable[[float], None] = _sleep, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pause = pause

    def new(self, **kw: Any) -> LexofficeRetry:
        kw.setdefault("pause", self.pause)
        return super().new(**kw)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == 429 and self.total is not False:
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def get_backoff_time(self) -> float:
        return retry_delay(
            len(self.history),
            factor=self.backoff_factor,
            jitter=self.backoff_jitter,
            cap=self.backoff_max,
        )

    def sleep(self, response: Any = None) -> None:
        delay = None
        if self.respect_retry_after_header and response is not None:
            try:
                delay = self.get_retry_after(response)
            except InvalidHeader:
                delay = None
        if delay is None:
            delay = self.get_backoff_time()
        delay = min(delay, self.backoff_max)
        if self.history:
            last = self.history[-1]
            reason = f"HTTP {last.status}" if last.status else type(last.error).__name__
            logger.info(
                "lexoffice %s %s: %s; retry %d in %.2f s",
                last.method,
                urlsplit(last.url or "").path,
                reason,
                len(self.history),
                delay,
            )
        self.pause(delay)


class _BearerAuth(requests.auth.AuthBase):
    """Adds the connection's current access token as ``Authorization: Bearer``.

    Set as ``session.auth`` so ``requests`` never swaps in ``.netrc`` credentials, and read at
    send time so a refreshed token is used by the next attempt.
    """

    def __init__(self, connection: LexofficeConnection) -> None:
        self.connection = connection

    @sensitive_variables()
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.connection.access_token}"
        return request

    def __repr__(self) -> str:
        return "<BearerAuth [redacted]>"


class LexofficeClient:
    """A rate-limited, self-refreshing client for Lexware's API, for one connection.

    ``request()`` raises :class:`LexofficeAPIError` for a status >= 400 (after the retries
    below) unless called with ``raise_for_status=False``, which returns every response for the
    caller to inspect. The error carries ``status``, Lexware's error ``body`` (tokens
    redacted) and ``request_id``; it deliberately holds no ``response``, whose request headers
    contain the access token. No answer at all raises :class:`NoResponse`.

    Also raised: :class:`ConnectionNotActive` (the connection was revoked or needs
    re-authorization; nothing was sent), :class:`ReauthorizationRequired` (Lexware refused the
    refresh: send the user to ``lexoffice:login``), :class:`TransientRefreshError` (the token
    expired and Lexware could not refresh it right now) and :class:`RateLimitTimeout`.

    ``background=True`` marks a client of a batch job: its calls (and refreshes) take only the
    rate-limit slots interactive callers leave. By default a client is interactive: a
    person waits for it.

    Retries: ``max_retries`` bounds each kind (see :class:`LexofficeRetry`; the 500 "rate
    limit" hook and the 401 retry come on top), waiting ``backoff_factor * 2**(n-1)`` plus up
    to ``backoff_jitter`` seconds before retry ``n``.
    """

    def __init__(
        self,
        connection: LexofficeConnection,
        *,
        timeout: float | tuple[float, float] | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        backoff_jitter: float = DEFAULT_BACKOFF_JITTER,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        bucket: SharedTokenBucket | None = None,
        background: bool = False,
    ) -> None:
        self.connection = connection
        self.base_url = lexoffice_settings.API_BASE_URL
        self.timeout = timeout if timeout is not None else lexoffice_settings.TIMEOUT
        self.max_retries = max(0, int(max_retries))
        self.backoff_factor = backoff_factor
        self.backoff_jitter = backoff_jitter
        self.backoff_max = backoff_max
        #: A bucket of its own instead of the shared one (for tests); normally ``None``.
        self.bucket = bucket
        #: Background work (a batch job, not a person waiting) takes only the rate-limit
        #: slots interactive callers leave.
        self.background = background
        # A 402 note this client wrote or scheduled: a later success clears it even where a
        # refresh in between replaced the instance's last_error.
        self._noted_contract_issue = False
        self.session = self._make_session()

    @classmethod
    def for_user(
        cls, user: Any, organization_id: str | None = None, **kwargs: Any
    ) -> LexofficeClient:
        """A client for ``user``'s connection (to ``organization_id`` if given).

        Without ``organization_id`` the user must have exactly one active connection.
        Raises :class:`ConnectionNotFound` (none), :class:`MultipleConnections` (several
        active: pass ``organization_id``) or :class:`ConnectionNotActive` (only revoked or
        re-authorization-required ones). ``kwargs`` go to the constructor.
        """
        return cls(LexofficeConnection.objects.get_for_user(user, organization_id), **kwargs)

    def __repr__(self) -> str:
        return f"<LexofficeClient connection={self.connection.pk}>"

    def __enter__(self) -> LexofficeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self.session.close()

    # -- the public calls ------------------------------------------------------------------------

    @sensitive_variables()  # the token, and every frame below (headers) in error reports
    def request(
        self, method: str, path: str, *, raise_for_status: bool = True, **kwargs: Any
    ) -> requests.Response:
        """Send ``method`` to ``path`` (``/v1/...``, or an absolute URL on the API host).

        ``kwargs`` go to ``requests`` (``params``, ``json``, ``data``, ``headers``,
        ``timeout``…); ``auth`` is refused, redirects are not followed. Bodies are sent again
        on a retry, so pass bytes, text or JSON, not a stream.
        """
        method = method.upper()
        url = self._url(path)
        kwargs = self._request_kwargs(kwargs)
        with ratelimit.background() if self.background else nullcontext():
            self._ensure_fresh_token()
            response = self._send_with_throttle_retries(method, url, kwargs)
            if response.status_code == 401:
                # Lexware may kill a token early (password change, logout): refresh once, retry.
                response.close()
                self._refresh_after_401()
                response = self._send_with_throttle_retries(method, url, kwargs)
        policy.record_use(self.connection)  # for LEXOFFICE_REFRESH_POLICY = "on_use"
        self._note_contract_state(method, url, response)  # HTTP 402 (issue 15)
        if raise_for_status and response.status_code >= 400:
            raise self._api_error(method, url, response)
        return response

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """``request("GET", path, **kwargs)``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """``request("POST", path, **kwargs)``; retried only after a 429 or a failed connect."""
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        """``request("PUT", path, **kwargs)``."""
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        """``request("DELETE", path, **kwargs)``."""
        return self.request("DELETE", path, **kwargs)

    def profile(self) -> dict[str, Any]:
        """``GET /v1/profile``: the organization, company name and connection, parsed."""
        data: dict[str, Any] = self.get("/v1/profile").json()
        return data

    def paginate(
        self, path: str, *, size: int = 100, params: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the items of a paged list endpoint (``/v1/contacts``, ``/v1/articles``…), lazily.

        Pages are fetched one at a time (``page`` from 0, ``size`` items each; Lexware allows
        at most 250) as the caller iterates, until the page says ``last`` (or ``totalPages``
        is reached, or a page is empty). ``params`` are sent with every page.
        """
        if size < 1:
            raise ValueError("size must be at least 1")
        return self._pages(path, size, dict(params or {}))

    def _pages(self, path: str, size: int, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        page = 0
        while True:
            query = {**params, "page": page, "size": size}
            data = self.get(path, params=query).json()
            content = data.get("content") or []
            yield from content
            total_pages = data.get("totalPages")
            if (
                not content
                or data.get("last") is True
                or (isinstance(total_pages, int) and page + 1 >= total_pages)
            ):
                return
            page += 1

    # -- building the session and the request -----------------------------------------------------

    def _make_session(self) -> requests.Session:
        session = requests.Session()
        session.auth = _BearerAuth(self.connection)
        session.headers.update(
            {"Accept": "application/json", "User-Agent": f"django-lexoffice/{__version__}"}
        )
        adapter = HTTPAdapter(max_retries=self._make_retry())
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def _make_retry(self) -> LexofficeRetry:
        n = self.max_retries
        return LexofficeRetry(
            total=n,
            connect=n,
            read=n,
            status=n,
            other=0,
            allowed_methods=IDEMPOTENT_METHODS,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff_factor,
            backoff_jitter=self.backoff_jitter,
            backoff_max=self.backoff_max,
            raise_on_status=False,  # hand back the last response; request() raises the typed error
            respect_retry_after_header=True,
            pause=self._pause_before_retry,
        )

    def _pause_before_retry(self, delay: float) -> None:
        # Retries urllib3 makes never pass through request(): pace them here.
        _sleep(delay)
        take_slots(bucket=self.bucket)

    def _url(self, path: str) -> str:
        parts = urlsplit(path)
        if parts.scheme or parts.netloc:
            base = urlsplit(self.base_url)
            same_origin = (parts.scheme, parts.netloc) == (base.scheme, base.netloc)
            under_base = parts.path.startswith(f"{base.path}/") or parts.path == base.path
            if not same_origin or not under_base:
                # The bearer token must never go anywhere but Lexware's API.
                raise ValueError(
                    f"LexofficeClient only calls {self.base_url}; refusing {parts.scheme}://"
                    f"{parts.netloc}. Pass a path such as /v1/contacts."
                )
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _request_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if "auth" in kwargs:
            raise TypeError("LexofficeClient authenticates every request itself; drop auth=.")
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)
        return kwargs

    # -- freshness --------------------------------------------------------------------------------

    def _ensure_fresh_token(self) -> None:
        connection = self.connection
        connection.raise_unless_active()
        if not connection.needs_refresh(urgent=True):
            return
        try:
            tokens.refresh(connection)
        except TransientRefreshError:
            if connection.expires_within(EXPIRY_SKEW):
                raise
            logger.warning(
                "Refreshing lexoffice connection %s failed; using its still valid access token",
                connection.pk,
            )

    @sensitive_variables()
    def _refresh_after_401(self) -> None:
        # Forced, but single-flight: under the row lock, tokens.refresh compares the row's
        # token with the one this client sent; if another worker replaced it meanwhile,
        # nothing is sent and the client just retries with the new token.
        tokens.refresh(self.connection, force=True)

    # -- sending ----------------------------------------------------------------------------------

    def _send_with_throttle_retries(
        self, method: str, url: str, kwargs: dict[str, Any]
    ) -> requests.Response:
        """Send, and retry an idempotent call whose 500 says "rate limit".

        Lexware sometimes throttles with ``500 {"message": "Internal server error or rate limit
        exceeded"}``. ``Retry`` decides on the status alone, before the body is read, so it
        cannot tell this from a real 500 (which must not be retried blindly): this small hook
        reads the body. POSTs are not retried here: a real internal error may have half-done one.
        """
        retry = 0
        while True:
            response = self._send(method, url, kwargs)
            if retry >= self.max_retries or not self._is_throttling_500(method, response):
                return response
            retry += 1
            delay = retry_delay(
                retry, factor=self.backoff_factor, jitter=self.backoff_jitter, cap=self.backoff_max
            )
            logger.info(
                "lexoffice %s %s: HTTP 500 rate limit; retry %d in %.2f s",
                method,
                urlsplit(url).path,
                retry,
                delay,
            )
            response.close()
            _sleep(delay)

    @sensitive_variables()  # the frames below hold the Authorization header
    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        require_secure_url(url)  # the bearer token goes over https only
        take_slots(bucket=self.bucket)
        path = urlsplit(url).path  # never log query strings
        started = time.monotonic()
        try:
            response = self.session.request(method, url, **kwargs)
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            # Without the cause: its frames (urllib3's) hold the Authorization header.
            raise self._no_response_error(method, path, exc) from None
        logger.debug(
            "lexoffice %s %s -> HTTP %s in %.0f ms",
            method,
            path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    @staticmethod
    def _is_throttling_500(method: str, response: requests.Response) -> bool:
        return (
            response.status_code == 500
            and method in IDEMPOTENT_METHODS
            and "rate limit" in (response.text or "").lower()
        )

    # -- errors -----------------------------------------------------------------------------------

    def _api_error(self, method: str, url: str, response: requests.Response) -> LexofficeAPIError:
        body = describe_body(response.text or "", secrets=self._secrets())
        status = response.status_code
        hint = " even after a refresh" if status == 401 else ""
        message = f"lexoffice {method} {urlsplit(url).path} answered HTTP {status}{hint}"
        error_class = ContractIssue if status == 402 else LexofficeAPIError
        error = error_class(
            f"{message}: {body}" if body else message,
            status=status,
            body=body,
            request_id=request_id(response),
        )
        response.close()
        return error

    def _note_contract_state(self, method: str, url: str, response: requests.Response) -> None:
        """Record a 402 "contract issue" on the connection (it stays active), and clear it
        once a call succeeds again.

        Written after the caller's transaction commits (at once outside one): a row lock
        held until then would stall a refresh later in the same request, which runs in a
        transaction of its own and waits for that lock.
        """
        connection = self.connection
        rows = LexofficeConnection.objects.using(connection._state.db or "default")
        if response.status_code == 402:
            body = describe_body(response.text or "", secrets=self._secrets())
            connection.last_error = (
                f"{CONTRACT_ISSUE_PREFIX} {method} {urlsplit(url).path}: {body}"[:2000]
            )
            connection.last_error_at = timezone.now()
            rows = rows.filter(pk=connection.pk)
            self._noted_contract_issue = True
        elif response.status_code < 400 and (
            self._noted_contract_issue or connection.last_error.startswith(CONTRACT_ISSUE_PREFIX)
        ):
            self._noted_contract_issue = False
            connection.last_error = ""
            connection.last_error_at = None
            # Only the contract issue: a refresh may have recorded its own error meanwhile.
            rows = rows.filter(pk=connection.pk, last_error__startswith=CONTRACT_ISSUE_PREFIX)
        else:
            return
        if connection.pk is not None:
            values = {
                "last_error": connection.last_error,
                "last_error_at": connection.last_error_at,
                "updated_at": timezone.now(),
            }
            transaction.on_commit(lambda: rows.update(**values), using=rows.db)

    @staticmethod
    def _no_response_error(method: str, path: str, exc: Exception) -> NoResponse:
        before_sending = isinstance(exc, requests.ConnectTimeout) or _failed_to_connect(exc)
        message = f"lexoffice {method} {path}: no answer from Lexware ({type(exc).__name__})"
        if not before_sending and method not in IDEMPOTENT_METHODS:
            message += "; it may still have been processed, check before sending it again"
        return NoResponse(message, maybe_processed=not before_sending)

    def _secrets(self) -> list[str]:
        return [self.connection.access_token, self.connection.refresh_token]


def request_id(response: requests.Response) -> str | None:
    """Lexware's request id: from a request-id header, else from the error body."""
    for header in REQUEST_ID_HEADERS:
        value = response.headers.get(header)
        if value:
            return value[:200]
    data = json_or_none(response)
    if isinstance(data, dict):
        for key in REQUEST_ID_KEYS:
            value = data.get(key)
            if isinstance(value, str) and value:
                return value[:200]
    return None


def _failed_to_connect(exc: Exception) -> bool:
    """Whether ``requests`` gave up before sending anything (refused, DNS, connect timeout)."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is one too
