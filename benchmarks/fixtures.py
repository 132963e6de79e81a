"""Rows and endpoints the benchmarks start from. Set-up is never measured."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
import responses
from django.contrib.auth import get_user_model
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone
from social_django.models import UserSocialAuth

from django_lexoffice.conf import settings as lexoffice_settings
from django_lexoffice.models import LexofficeConnection
from django_lexoffice.testing import FakeLexware

from .bare import BARE_BACKEND_NAME

#: A JWT-sized access token (Lexware's are JWTs of about this length) and a 128-character
#: refresh token, so encryption and storage handle realistic sizes.
_ACCESS_TOKEN_PADDING = "eyJhbGciOiJSUzI1NiJ9." + "A" * 760 + "."
EXPIRES_IN = 14399
DUE_IN = timedelta(seconds=60)  # inside the default 300 s margin
NOT_DUE_IN = timedelta(days=1)
CREATE_BATCH = 500


def bench_user() -> Any:
    """The one user owning all the benchmark's connections, one per organization id."""
    user, _ = get_user_model()._default_manager.get_or_create(username="bench")
    return user


def register_client(fake: FakeLexware, redirect_uris: Sequence[str] = ()) -> None:
    """Register the benchmark's confidential client at the fake."""
    fake.register_client(
        lexoffice_settings.CLIENT_ID,
        secret=lexoffice_settings.CLIENT_SECRET,
        redirect_uris=list(redirect_uris) or ["http://testserver/lexoffice/callback/"],
    )


@dataclass(frozen=True)
class Granted:
    """A connection row whose tokens are live at the fake."""

    pk: int
    connection_id: str


def granted_connections(fake: FakeLexware, count: int, *, prefix: str) -> list[Granted]:
    """``count`` due connections, each with its own grant at the fake (saved one by one)."""
    user = bench_user()
    rows: list[Granted] = []
    for start in range(0, count, CREATE_BATCH):
        with transaction.atomic():
            for index in range(start, min(count, start + CREATE_BATCH)):
                grant = fake.issue_tokens(lexoffice_settings.CLIENT_ID, scopes=["profile.read"])
                row = LexofficeConnection.objects.create(
                    user=user,
                    organization_id=f"{prefix}-{index:06d}",
                    access_token=grant["access_token"],
                    refresh_token=grant["refresh_token"],
                    expires_at=timezone.now() + DUE_IN,
                )
                connection_id = fake.connection_id_for(grant["refresh_token"])
                assert connection_id is not None
                rows.append(Granted(row.pk, connection_id))
    return rows


def plain_connections(count: int, *, prefix: str) -> list[int]:
    """``count`` connections with realistic tokens, not due; for the instant endpoint."""
    user = bench_user()
    pks: list[int] = []
    for start in range(0, count, CREATE_BATCH):
        with transaction.atomic():
            for index in range(start, min(count, start + CREATE_BATCH)):
                row = LexofficeConnection.objects.create(
                    user=user,
                    organization_id=f"{prefix}-{index:06d}",
                    access_token=new_access_token(),
                    refresh_token=secrets.token_urlsafe(96),
                    expires_at=timezone.now() + NOT_DUE_IN,
                )
                pks.append(row.pk)
    return pks


def retire_all() -> None:
    """Take every existing connection out of the refresh runs (revoked status, no revoke call).

    Deleting them would make the app revoke each grant at Lexware first.
    """
    LexofficeConnection.objects.exclude(status=LexofficeConnection.Status.REVOKED).update(
        status=LexofficeConnection.Status.REVOKED
    )


def make_due(pks: Sequence[int], count: int | None = None) -> list[int]:
    """Make the first ``count`` of ``pks`` due for refresh and every other one not due."""
    chosen = list(pks if count is None else pks[:count])
    now = timezone.now()
    LexofficeConnection.objects.filter(pk__in=pks).update(expires_at=now + NOT_DUE_IN)
    for start in range(0, len(chosen), 5000):
        LexofficeConnection.objects.filter(pk__in=chosen[start : start + 5000]).update(
            expires_at=now + DUE_IN, status=LexofficeConnection.Status.ACTIVE
        )
    return chosen


def social_associations(count: int) -> None:
    """``count`` plain social-auth associations holding plaintext tokens in ``extra_data``."""
    user = bench_user()
    UserSocialAuth.objects.filter(provider=BARE_BACKEND_NAME).delete()
    UserSocialAuth.objects.bulk_create(
        [
            UserSocialAuth(
                user=user,
                provider=BARE_BACKEND_NAME,
                uid=f"bench-{index:06d}",
                extra_data={
                    "auth_time": int(time.time()),
                    "access_token": new_access_token(),
                    "token_type": "Bearer",
                    "refresh_token": secrets.token_urlsafe(96),
                    "expires": EXPIRES_IN,
                },
            )
            for index in range(count)
        ],
        batch_size=CREATE_BATCH,
    )


def new_access_token() -> str:
    return _ACCESS_TOKEN_PADDING + secrets.token_urlsafe(24)


def _token_body() -> bytes:
    return json.dumps(
        {
            "access_token": new_access_token(),
            "expires_in": EXPIRES_IN,
            "refresh_token": secrets.token_urlsafe(96),
            "scope": "read",
            "token_type": "Bearer",
        }
    ).encode()


@contextmanager
def instant_token_endpoint() -> Iterator[responses.RequestsMock]:
    """An instant ``POST {auth}/oauth2/token`` that accepts any client authentication.

    Both sides of the CPU comparison refresh against it: ours sends HTTP Basic, social-core
    the secret in the body (which the strict fake refuses with ``invalid_client``).
    """
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)

    def reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        # Keep no history (the mock's and the route's): memory must not grow with the calls.
        mock.calls.reset()
        route.calls.reset()
        return 200, {"Cache-Control": "no-store"}, _token_body()

    route = mock.add_callback(
        responses.POST,
        lexoffice_settings.TOKEN_URL,
        callback=reply,
        content_type="application/json",
    )
    with mock:
        yield mock


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of this process and of the PostgreSQL backend serving it."""

    own: float
    database: float


class CpuMeter:
    """Reads this process's CPU time and its PostgreSQL backend's (from /proc, same machine)."""

    def __init__(self) -> None:
        db_connection.ensure_connection()
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            row = cursor.fetchone()
        assert row is not None
        self._stat = Path(f"/proc/{row[0]}/stat")
        self._tick = os.sysconf("SC_CLK_TCK")

    def _database(self) -> float:
        try:
            fields = self._stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")  # PostgreSQL on another machine
        return (int(fields[11]) + int(fields[12])) / self._tick  # utime + stime

    def now(self) -> CpuSample:
        return CpuSample(time.process_time(), self._database())
