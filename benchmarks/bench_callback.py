"""Benchmark 4: CPU of a completed login in the callback, ours against bare social-auth.

Both sides run the same flow against the in-process fake Lexware (``FakeLexware.activate()``,
its state in local memory): POST the login view, the user approves at the fake, then the
callback exchanges the code (HTTP Basic + PKCE) and reads ``/v1/profile``. Only the callback
request is measured. Ours: ``lexoffice:callback`` with the backend's pipeline (tokens encrypted
into ``LexofficeConnection``, scrubbed from ``extra_data``). Bare: social_django's own
``social:complete`` with social-core's default pipeline, tokens left in plaintext in
``extra_data`` (:mod:`benchmarks.bare`). Returning users (each side logs in once first), so both
sides do the same user and association work on every measured login.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.test import Client, override_settings
from django.urls import reverse
from social_django.models import UserSocialAuth

from django_lexoffice.models import LexofficeConnection
from django_lexoffice.testing import FakeLexware
from django_lexoffice.testing.constants import Company

from . import fixtures
from .bare import BARE_BACKEND_NAME
from .report import Result, log, median, spread

RATIO_TARGET = 1.2
OURS_CALLBACK = "http://testserver/lexoffice/callback/"
BARE_CALLBACK = f"http://testserver/social/complete/{BARE_BACKEND_NAME}/"


@dataclass(frozen=True)
class Side:
    name: str
    begin: Callable[[Client], str]  # starts the flow, returns the authorize URL
    finished: Callable[[str], bool]  # the callback's redirect target means success


def _begin_ours(client: Client) -> str:
    return str(client.post(reverse("lexoffice:login"))["Location"])


def _begin_bare(client: Client) -> str:
    return str(client.post(reverse("social:begin", args=(BARE_BACKEND_NAME,)))["Location"])


OURS = Side("ours", _begin_ours, lambda location: location == reverse("lexoffice:connections"))
BARE = Side("bare", _begin_bare, lambda location: location == "/")


def _login(fake: FakeLexware, side: Side) -> float:
    """One complete login by a returning user; returns the callback's CPU seconds."""
    client = Client()
    callback = urlsplit(fake.approve(side.begin(client)))
    started = time.process_time()
    response = client.get(f"{callback.path}?{callback.query}")
    cpu = time.process_time() - started
    if response.status_code != 302 or not side.finished(response["Location"]):
        raise RuntimeError(
            f"{side.name} login failed: {response.status_code} {response.content[:300]!r}"
        )
    return cpu


def _round(fake: FakeLexware, logins: int) -> tuple[float, float]:
    """``logins`` logins per side, alternating ours and bare login by login (so both meet the
    same load on a shared machine); the mean CPU seconds per login of each."""
    gc.collect()
    totals = {OURS.name: 0.0, BARE.name: 0.0}
    for index in range(logins):
        for side in (OURS, BARE) if index % 2 == 0 else (BARE, OURS):
            totals[side.name] += _login(fake, side)
    return totals[OURS.name] / logins, totals[BARE.name] / logins


def run(logins: int, repeats: int) -> list[Result]:
    with override_settings(LEXOFFICE_FAKE_CACHE="fake_local"), FakeLexware.activate() as fake:
        fixtures.register_client(fake, [OURS_CALLBACK, BARE_CALLBACK])
        _round(fake, 3)  # warm-up; creates the returning user's rows
        ours: list[float] = []
        bare: list[float] = []
        for repeat in range(repeats):
            ours_cpu, bare_cpu = _round(fake, logins)
            ours.append(ours_cpu)
            bare.append(bare_cpu)
            log(f"[4] repeat {repeat + 1}: per login ours {_ms(ours_cpu)}, bare {_ms(bare_cpu)}")
        _check_storage(fake.companies()[0])
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    return [
        Result(
            f"4. callback CPU per login, ours / bare social-auth ({logins} logins, "
            f"median of {repeats})",
            f"{median(ratios):.2f} (ours {_ms(median(ours))}, bare {_ms(median(bare))}; "
            f"ratios {spread(ratios, 2)})",
            f"<= {RATIO_TARGET:g}",
            median(ratios) <= RATIO_TARGET,
        )
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _check_storage(company: Company) -> None:
    """Both sides did what they claim: ours encrypted and scrubbed, bare kept plaintext."""
    ours = UserSocialAuth.objects.get(provider="lexoffice", uid=company["user_id"])
    bare = UserSocialAuth.objects.get(provider=BARE_BACKEND_NAME, uid=company["user_id"])
    if "access_token" in ours.extra_data or "refresh_token" in ours.extra_data:
        raise RuntimeError("our callback left a token in extra_data")
    if not bare.extra_data.get("access_token") or not bare.extra_data.get("refresh_token"):
        raise RuntimeError("the bare baseline did not store its tokens")
    connection = LexofficeConnection.objects.filter(
        user=ours.user, organization_id=company["organization_id"], status="active"
    )
    if not connection.exists():
        raise RuntimeError("our callback stored no connection")
