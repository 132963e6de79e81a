"""The fake's clock.

Every time-dependent rule of the fake (code expiry, access token expiry, the rate limit bucket,
the ``slow`` fault) reads the time through :func:`now` and waits through :func:`sleep`, so a test
freezes or fast-forwards time with ``monkeypatch.setattr(clock, "now", lambda: ...)`` instead of
sleeping. :meth:`FakeLexware.advance_clock` shifts the fake's time for every process sharing the
state (see ``state.FakeState.now``).
"""

from __future__ import annotations

import time


def now() -> float:
    """Seconds since the epoch, as the fake sees them."""
    return time.time()


def sleep(seconds: float) -> None:
    """Wait, for the ``slow`` fault."""
    if seconds > 0:
        time.sleep(seconds)
