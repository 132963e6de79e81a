"""The fake Lexware's webhooks: event subscriptions, signed deliveries, and ending a
connection from Lexware's side (``token.revoked``).

- ``POST /v1/event-subscriptions`` -> 201 ``{"id", ...}`` (409 for the same eventType and
  callbackUrl again; 406 when the HEAD check of the https callback URL fails; plain http is
  allowed to loopback and ``testserver`` only), ``GET`` -> ``{"content": [...]}`` with
  ``subscriptionId``, ``GET``/``DELETE /v1/event-subscriptions/<id>`` (204, 404). Listing shows
  the calling connection's subscriptions.
- Deliveries are signed like Lexware's (RSA SHA-512 PKCS#1 v1.5, base64 ``X-Lxo-Signature``)
  with the fake's own 2048-bit key: configure ``LEXOFFICE_WEBHOOK_PUBLIC_KEY =
  public_key_pem()``. A delivery fails on any status but 200/201/202/204; failed ones are
  kept for :func:`redeliver_failed` (Lexware's 41-hour schedule is documented, not simulated).
- Callbacks to ``testserver`` go through Django's test ``Client`` (in-process tests); other
  hosts through ``requests``.

The endpoints authenticate and rate-limit like every ``/v1`` endpoint (:func:`.views.bearer_grant`)
but take no injected faults: ``FakeLexware.mock()`` and ``urls`` route them.
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from .state import FakeState, Grant
from .views import bearer_grant, message

DELIVERY_TIMEOUT = 5.0
DELIVERED = frozenset({200, 201, 202, 204})
_KEY_CACHE_KEY = "fake-lexware:webhook-signing-key"  # outlives reset(): the site keeps its key
_private_key: rsa.RSAPrivateKey | None = None


def signing_key(state: FakeState | None = None) -> rsa.RSAPrivateKey:
    """The fake's signing key: ``LEXOFFICE_FAKE_WEBHOOK_PRIVATE_KEY`` (PEM; the demo sets it),
    else made once and shared through the fake's cache by every process."""
    global _private_key
    configured = getattr(django_settings, "LEXOFFICE_FAKE_WEBHOOK_PRIVATE_KEY", None)
    if configured:
        return _load_private_key(str(configured))
    if _private_key is None:
        cache = (state or FakeState()).cache
        pem = cache.get(_KEY_CACHE_KEY)
        if pem is None:
            cache.add(_KEY_CACHE_KEY, generate_private_key_pem(), timeout=None)
            pem = cache.get(_KEY_CACHE_KEY)
        _private_key = _load_private_key(pem)
    return _private_key


@functools.lru_cache(maxsize=4)
def _load_private_key(pem: str) -> rsa.RSAPrivateKey:
    loaded = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise TypeError("the fake's webhook key must be an RSA private key")
    return loaded


def public_key_pem() -> str:
    """The PEM the site under test sets as ``LEXOFFICE_WEBHOOK_PUBLIC_KEY``."""
    return (
        signing_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def generate_private_key_pem() -> str:
    """A new 2048-bit RSA private key in PEM (``LEXOFFICE_FAKE_WEBHOOK_PRIVATE_KEY``)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def sign(body: bytes) -> str:
    """Lexware's ``X-Lxo-Signature`` for ``body``."""
    signature = signing_key().sign(body, padding.PKCS1v15(), hashes.SHA512())
    return base64.b64encode(signature).decode("ascii")


# -- transport --------------------------------------------------------------------------------


def _allowed_callback(url: str) -> bool:
    parts = urlsplit(url)
    local = parts.hostname in {"127.0.0.1", "::1", "localhost", "testserver"}
    return parts.scheme == "https" or (parts.scheme == "http" and local)


def _send(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> int:
    """Send to the site; the status, or 0 when nothing answered."""
    parts = urlsplit(url)
    if parts.hostname == "testserver":
        from django.test import Client

        response = Client().generic(
            method,
            parts.path,
            data=body,
            content_type="application/json",
            secure=parts.scheme == "https",
            headers=headers or {},
        )
        return int(response.status_code)
    try:
        return requests.request(
            method, url, data=body, headers=headers, timeout=DELIVERY_TIMEOUT
        ).status_code
    except requests.RequestException:
        return 0


# -- subscriptions ---------------------------------------------------------------------------


def _subscriptions(state: FakeState) -> dict[str, dict[str, Any]]:
    return dict(state.get("subscriptions") or {})


def _save(state: FakeState, subscriptions: dict[str, dict[str, Any]]) -> None:
    state.set("subscriptions", "", subscriptions)


def _duplicate(items: Any, event_type: str, url: str) -> bool:
    return any(i["eventType"] == event_type and i["callbackUrl"] == url for i in items)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def event_subscriptions(request: HttpRequest) -> HttpResponse:
    """``GET``: the calling connection's subscriptions. ``POST``: subscribe."""
    state = FakeState()
    grant = bearer_grant(request, state)
    if isinstance(grant, HttpResponse):
        return grant
    mine = {
        key: item
        for key, item in _subscriptions(state).items()
        if item["connectionId"] == grant["connection_id"]
    }
    if request.method == "GET":
        content = [{k: v for k, v in item.items() if k != "connectionId"} for item in mine.values()]
        return JsonResponse({"content": content})
    try:
        data = json.loads(request.body)
        event_type, url = str(data["eventType"]), str(data["callbackUrl"])
    except (ValueError, KeyError, TypeError):
        return message(400, "eventType and callbackUrl are required")
    if _duplicate(mine.values(), event_type, url):
        return message(409, "Conflict: subscription already exists")
    if not _allowed_callback(url) or _send("HEAD", url) != 200:
        return message(406, "callbackUrl could not be verified")
    subscription_id = str(uuid.uuid4())
    created = timezone.now().isoformat(timespec="milliseconds")
    with state.lock("subscriptions"):
        subscriptions = _subscriptions(state)
        same_grant = (
            i for i in subscriptions.values() if i["connectionId"] == grant["connection_id"]
        )
        if _duplicate(same_grant, event_type, url):  # a concurrent request won
            return message(409, "Conflict: subscription already exists")
        subscriptions[subscription_id] = {
            "subscriptionId": subscription_id,
            "organizationId": grant["company"]["organization_id"],
            "connectionId": grant["connection_id"],
            "createdDate": created,
            "eventType": event_type,
            "callbackUrl": url,
        }
        _save(state, subscriptions)
    body = {
        "id": subscription_id,
        "resourceUri": request.build_absolute_uri(f"{request.path}/{subscription_id}"),
        "createdDate": created,
        "updatedDate": created,
        "version": 0,
    }
    return JsonResponse(body, status=201)


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
def event_subscription(request: HttpRequest, subscription_id: str) -> HttpResponse:
    """``GET`` one subscription, or ``DELETE`` it (204; 404 when unknown)."""
    state = FakeState()
    grant = bearer_grant(request, state)
    if isinstance(grant, HttpResponse):
        return grant
    with state.lock("subscriptions"):
        subscriptions = _subscriptions(state)
        item = subscriptions.get(subscription_id)
        if item is None or item["organizationId"] != grant["company"]["organization_id"]:
            return message(404, "Not Found")
        if request.method == "GET":
            return JsonResponse({k: v for k, v in item.items() if k != "connectionId"})
        del subscriptions[subscription_id]
        _save(state, subscriptions)
    return HttpResponse(status=204)


# -- deliveries ------------------------------------------------------------------------------


def deliver(
    state: FakeState,
    event_type: str,
    resource_id: str,
    *,
    organization_id: str,
    connection_id: str | None = None,
    event_date: str | None = None,
) -> list[int]:
    """POST the event, signed, to every matching subscription (of ``connection_id`` if
    given, else of live grants only: a revoked grant's subscriptions are gone at Lexware);
    return the statuses. Failed deliveries are kept for :func:`redeliver_failed`."""
    date = event_date or timezone.localtime().isoformat(timespec="milliseconds")
    body = json.dumps(
        {
            "organizationId": organization_id,
            "eventType": event_type,
            "resourceId": resource_id,
            "eventDate": date,
        }
    ).encode("utf-8")
    statuses = []
    for item in _subscriptions(state).values():
        if item["eventType"] != event_type or item["organizationId"] != organization_id:
            continue
        if connection_id is not None and item["connectionId"] != connection_id:
            continue
        if connection_id is None and state.get("grant", item["connectionId"]) is None:
            continue
        statuses.append(_deliver_body(state, item["callbackUrl"], body))
    return statuses


def _deliver_body(state: FakeState, url: str, body: bytes) -> int:
    headers = {"X-Lxo-Signature": sign(body), "Content-Type": "application/json"}
    status = _send("POST", url, body, headers)
    if status not in DELIVERED:
        with state.lock("failed-deliveries"):
            failed = list(state.get("failed-deliveries") or [])
            failed.append({"url": url, "body": body.decode("utf-8")})
            state.set("failed-deliveries", "", failed)
    return status


def failed_deliveries(state: FakeState) -> list[dict[str, str]]:
    """Deliveries the site did not accept, oldest first (``url``, ``body``)."""
    return list(state.get("failed-deliveries") or [])


def redeliver_failed(state: FakeState, *, attempts: int = 1) -> list[int]:
    """Send each failed delivery again, identically (same body, same signature), up to
    ``attempts`` times until the site accepts it ("fail N times, then succeed"); return the
    statuses of every attempt."""
    statuses: list[int] = []
    for _ in range(attempts):
        with state.lock("failed-deliveries"):
            pending = failed_deliveries(state)
            state.set("failed-deliveries", "", [])
        if not pending:
            break
        for item in pending:
            statuses.append(_deliver_body(state, item["url"], item["body"].encode("utf-8")))
    return statuses


# -- ending a connection from Lexware's side ----------------------------------------------------


def end_connection(state: FakeState, connection_id: str) -> list[int]:
    """The user ends the connection in lexoffice ("Verbindung trennen"): revoke the grant,
    deliver ``token.revoked`` to its subscriptions, then delete them. Returns the statuses."""
    grant: Grant | None = state.get("grant", connection_id)
    if grant is None:
        raise LookupError(f"no live connection {connection_id!r}")
    state.end_grant(grant)
    statuses = deliver(
        state,
        "token.revoked",
        connection_id,
        organization_id=grant["company"]["organization_id"],
        connection_id=connection_id,
    )
    with state.lock("subscriptions"):
        subscriptions = _subscriptions(state)
        for key in [k for k, v in subscriptions.items() if v["connectionId"] == connection_id]:
            del subscriptions[key]
        _save(state, subscriptions)
    return statuses


@csrf_protect
@require_http_methods(["GET", "POST"])
def connected_apps(request: HttpRequest) -> HttpResponse:
    """ "Verbundene Apps": the live connections, each with "Verbindung trennen"."""
    state = FakeState()
    if request.method == "POST":
        connection_id = request.POST.get("connection_id", "")
        if state.get("grant", connection_id) is not None:
            end_connection(state, connection_id)
        return HttpResponseRedirect(request.path)
    return render(
        request,
        "django_lexoffice/fake/connected_apps.html",
        {"grants": state.live_grants()},
    )


class FakeWebhooksMixin(FakeState):
    """The webhook part of :class:`~django_lexoffice.testing.FakeLexware`'s Python API."""

    def webhook_public_key(self) -> str:
        """PEM of the key the fake signs deliveries with (for ``LEXOFFICE_WEBHOOK_PUBLIC_KEY``)."""
        return public_key_pem()

    def end_connection(self, token_or_connection_id: str) -> list[int]:
        """End a connection from Lexware's side (a token of it, or its connectionId): revoke
        the grant, deliver ``token.revoked``, delete its subscriptions; the statuses."""
        connection_id = self.connection_id_for(token_or_connection_id)
        return end_connection(self, connection_id or token_or_connection_id)

    def deliver_event(
        self, event_type: str, resource_id: str, *, organization_id: str, **kwargs: Any
    ) -> list[int]:
        """Deliver an event (e.g. ``invoice.created``) to the matching subscriptions."""
        return deliver(self, event_type, resource_id, organization_id=organization_id, **kwargs)

    def subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription the fake holds (with ``connectionId``)."""
        return list(_subscriptions(self).values())

    def failed_deliveries(self) -> list[dict[str, str]]:
        """Deliveries the site did not accept (``url``, ``body``)."""
        return failed_deliveries(self)

    def redeliver_failed(self, *, attempts: int = 1) -> list[int]:
        """Redeliver failed deliveries, up to ``attempts`` times each until accepted."""
        return redeliver_failed(self, attempts=attempts)
