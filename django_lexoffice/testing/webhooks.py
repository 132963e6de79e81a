"""The fake Lexware's webhooks: event subscriptions, signed deliveries, "Verbundene Apps".

Deliveries are signed like Lexware's (RSA SHA-512 PKCS#1 v1.5, base64 ``X-Lxo-Signature``)
with the fake's own key. Callbacks to ``testserver`` go through Django's test ``Client``, other
hosts through ``requests``. The subscription endpoints authenticate and rate-limit like every
``/v1`` endpoint (:func:`.views.bearer_grant`) but take no injected faults.
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from .state import FakeState
from .views import BERLIN, bearer_grant, message

DELIVERY_TIMEOUT = 5.0
DELIVERED = frozenset({200, 201, 202, 204})
_KEY_CACHE_KEY = "fake-lexware:webhook-signing-key"  # outlives reset(): the site keeps its key


def signing_key() -> rsa.RSAPrivateKey:
    """The fake's signing key: ``LEXOFFICE_FAKE_WEBHOOK_PRIVATE_KEY`` (PEM; the demo sets it),
    else made once and shared through the fake's cache by every process."""
    pem = getattr(django_settings, "LEXOFFICE_FAKE_WEBHOOK_PRIVATE_KEY", None) or _shared_pem()
    return _load_private_key(str(pem))


@functools.cache
def _shared_pem() -> str:
    # Kept in this process once read: an evicted cache entry cannot change the key under a
    # running site.
    cache = FakeState().cache
    if cache.get(_KEY_CACHE_KEY) is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cache.add(_KEY_CACHE_KEY, pem.decode("ascii"), timeout=None)
    return str(cache.get(_KEY_CACHE_KEY))


@functools.lru_cache(maxsize=4)
def _load_private_key(pem: str) -> rsa.RSAPrivateKey:
    loaded = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise TypeError("the fake's webhook key must be an RSA private key")
    return loaded


def sign(body: bytes) -> str:
    """Lexware's ``X-Lxo-Signature`` for ``body``."""
    signature = signing_key().sign(body, padding.PKCS1v15(), hashes.SHA512())
    return base64.b64encode(signature).decode("ascii")


def _allowed_callback(url: str) -> bool:
    # https anywhere; plain http to loopback and the test client only.
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


class FakeWebhooks(FakeState):
    """:class:`FakeState` with Lexware's webhooks: subscriptions, signed deliveries, ending a
    connection from Lexware's side. Failed deliveries are kept for :meth:`redeliver_failed`
    (Lexware's 41-hour retry schedule is documented, not simulated)."""

    def webhook_public_key(self) -> str:
        """PEM of the key the fake signs deliveries with (for ``LEXOFFICE_WEBHOOK_PUBLIC_KEY``)."""
        public_key = signing_key().public_key()
        pem = public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode("ascii")

    def _subscribed(self, connection_id: str, event_type: str, url: str) -> bool:
        return any(
            (item["connectionId"], item["eventType"], item["callbackUrl"])
            == (connection_id, event_type, url)
            for item in self.subscriptions()
        )

    def deliver_event(
        self,
        event_type: str,
        resource_id: str,
        *,
        organization_id: str,
        connection_id: str | None = None,
    ) -> list[int]:
        """POST the event (e.g. ``invoice.created``), signed, to every matching subscription
        (of ``connection_id`` if given); return the statuses. An ended grant has none: they
        end with it, as at Lexware."""
        args = (event_type, resource_id, organization_id, connection_id)
        return self._deliver_to(self.subscriptions(), *args)

    def _deliver_to(
        self,
        subscriptions: list[dict[str, Any]],
        event_type: str,
        resource_id: str,
        organization_id: str,
        connection_id: str | None,
    ) -> list[int]:
        event = {
            "organizationId": organization_id,
            "eventType": event_type,
            "resourceId": resource_id,
            "eventDate": datetime.now(BERLIN).isoformat(timespec="milliseconds"),
        }
        body = json.dumps(event).encode("utf-8")
        return [
            self._deliver(item["callbackUrl"], body)
            for item in subscriptions
            if (item["eventType"], item["organizationId"]) == (event_type, organization_id)
            and connection_id in (None, item["connectionId"])
        ]

    def _deliver(self, url: str, body: bytes) -> int:
        headers = {"X-Lxo-Signature": sign(body), "Content-Type": "application/json"}
        status = _send("POST", url, body, headers)
        if status not in DELIVERED:
            with self.lock("failed-deliveries"):
                failed = [*self.failed_deliveries(), {"url": url, "body": body.decode("utf-8")}]
                self.set("failed-deliveries", "", failed)
        return status

    def failed_deliveries(self) -> list[dict[str, str]]:
        """Deliveries the site did not accept (any status but 200/201/202/204), oldest first
        (``url``, ``body``)."""
        return list(self.get("failed-deliveries") or [])

    def redeliver_failed(self, *, attempts: int = 1) -> list[int]:
        """Send each failed delivery again, identically (same body, same signature), up to
        ``attempts`` times until the site accepts it ("fail N times, then succeed"); return
        the statuses of every attempt."""
        statuses: list[int] = []
        for _ in range(attempts):
            with self.lock("failed-deliveries"):
                pending = self.failed_deliveries()
                self.set("failed-deliveries", "", [])
            if not pending:
                break
            for item in pending:
                statuses.append(self._deliver(item["url"], item["body"].encode("utf-8")))
        return statuses

    def end_connection(self, token_or_connection_id: str) -> list[int]:
        """The user ends the connection in lexoffice ("Verbindung trennen"; a token of it, or
        its connectionId): revoke the grant, which deletes its subscriptions, and deliver
        ``token.revoked`` to what they were. Returns the statuses."""
        connection_id = self.connection_id_for(token_or_connection_id) or token_or_connection_id
        subscribed = self.subscriptions()
        grant = self.revoke_connection(connection_id)
        organization_id = grant["company"]["organization_id"]
        args = ("token.revoked", connection_id, organization_id, connection_id)
        return self._deliver_to(subscribed, *args)


# -- the views ----------------------------------------------------------------------------------


def _public(subscription: dict[str, Any]) -> dict[str, Any]:
    # What Lexware shows of a subscription: the fake's own connectionId stays inside.
    return {key: value for key, value in subscription.items() if key != "connectionId"}


@csrf_exempt
@require_http_methods(["GET", "POST"])
def event_subscriptions(request: HttpRequest) -> HttpResponse:
    """``GET``: the calling connection's subscriptions (``content``). ``POST``: subscribe:
    201, 409 for the same eventType and callbackUrl again, 406 when the ``HEAD`` check of the
    callback URL fails."""
    state = FakeWebhooks()
    grant = bearer_grant(request, state)
    if isinstance(grant, HttpResponse):
        return grant
    connection_id = grant["connection_id"]
    if request.method == "GET":
        mine = [s for s in state.subscriptions() if s["connectionId"] == connection_id]
        return JsonResponse({"content": [_public(item) for item in mine]})
    try:
        data = json.loads(request.body)
        event_type, url = str(data["eventType"]), str(data["callbackUrl"])
    except (ValueError, KeyError, TypeError):
        return message(400, "eventType and callbackUrl are required")
    conflict = message(409, "Conflict: subscription already exists")
    if state._subscribed(connection_id, event_type, url):
        return conflict
    if not _allowed_callback(url) or _send("HEAD", url) != 200:
        return message(406, "callbackUrl could not be verified")
    subscription_id = str(uuid.uuid4())
    created = datetime.now(BERLIN).isoformat(timespec="milliseconds")
    with state.lock("subscriptions"):
        if state._subscribed(connection_id, event_type, url):  # a concurrent request won
            return conflict
        subscription = {
            "subscriptionId": subscription_id,
            "organizationId": grant["company"]["organization_id"],
            "connectionId": connection_id,
            "createdDate": created,
            "eventType": event_type,
            "callbackUrl": url,
        }
        state.set("subscriptions", "", [*state.subscriptions(), subscription])
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
    """``GET`` one subscription of the caller's organization, or ``DELETE`` it (204; 404 when
    unknown)."""
    state = FakeWebhooks()
    grant = bearer_grant(request, state)
    if isinstance(grant, HttpResponse):
        return grant
    mine = (subscription_id, grant["company"]["organization_id"])
    with state.lock("subscriptions"):
        subscriptions = state.subscriptions()
        found = (s for s in subscriptions if (s["subscriptionId"], s["organizationId"]) == mine)
        item = next(found, None)
        if item is None:
            return message(404, "Not Found")
        if request.method == "GET":
            return JsonResponse(_public(item))
        subscriptions.remove(item)
        state.set("subscriptions", "", subscriptions)
    return HttpResponse(status=204)


@csrf_protect
@require_http_methods(["GET", "POST"])
def connected_apps(request: HttpRequest) -> HttpResponse:
    """ "Verbundene Apps": the live connections, each with "Verbindung trennen"."""
    state = FakeWebhooks()
    if request.method == "POST":
        connection_id = request.POST.get("connection_id", "")
        if state.get("grant", connection_id) is not None:  # not ended in another tab meanwhile
            state.end_connection(connection_id)
        return HttpResponseRedirect(request.path)
    context = {"grants": state.live_grants()}
    return render(request, "django_lexoffice/fake/connected_apps.html", context)
