"""Signing keys and deliveries for the webhook tests."""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

WEBHOOK_URL = "/lexoffice/webhook/"
#: Tests of the Celery tasks; tox's noextras environment runs without Celery.
needs_celery = pytest.mark.skipif(
    importlib.util.find_spec("celery") is None, reason="needs the celery extra"
)
ORGANIZATION_ID = "aa93e8a8-2aa3-470b-b914-caad8a255dd8"
CONNECTION_ID = "3dea098a-fae5-4458-a85c-f97965966c25"


@functools.cache
def private_key(bits: int = 2048, label: str = "a") -> rsa.RSAPrivateKey:
    """A test key, generated once per (size, label)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def sign(body: bytes, key: rsa.RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA512())).decode("ascii")


def event_body(
    event_type: str = "token.revoked",
    *,
    resource_id: str = CONNECTION_ID,
    organization_id: str = ORGANIZATION_ID,
    event_date: str = "2099-04-11T08:25:07.000+02:00",
    **extra: Any,
) -> bytes:
    payload = {
        "organizationId": organization_id,
        "eventType": event_type,
        "resourceId": resource_id,
        "eventDate": event_date,
        **extra,
    }
    return json.dumps(payload).encode("utf-8")


def deliver(client: Any, body: bytes, key: rsa.RSAPrivateKey | None, **headers: Any) -> Any:
    """POST ``body`` to the webhook, signed with ``key`` (unsigned when ``None``)."""
    if key is not None:
        headers.setdefault("HTTP_X_LXO_SIGNATURE", sign(body, key))
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers)
