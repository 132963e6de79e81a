"""One OS process hammering the shared rate-limit bucket; prints the grant times as JSON.

Started several times at once by ``tests/test_ratelimit.py`` with
``DJANGO_SETTINGS_MODULE=tests.settings_redis``::

    python -m tests.ratelimit_worker KEY RATE DURATION [LANE]

Prints ``ready`` once Django is set up, then reads the common start time (epoch seconds) from
stdin, so every worker starts together however long its imports took. From then on it takes
tokens as fast as the bucket allows for ``DURATION`` seconds and prints the ``time.time()`` of
each grant as a JSON list. ``LANE`` (``interactive`` or ``background``) is the lane it asks in
(default: the current one, interactive).
"""

from __future__ import annotations

import json
import sys
import time

import django


def main(argv: list[str]) -> int:
    key, rate, duration = argv[1], float(argv[2]), float(argv[3])
    django.setup()
    from django_lexoffice.ratelimit import Lane, SharedTokenBucket

    lane = Lane(argv[4]) if len(argv) > 4 else None

    bucket = SharedTokenBucket(key, rate=rate)
    if bucket._redis_client() is None:
        print("the worker's cache is not Redis: check DJANGO_SETTINGS_MODULE", file=sys.stderr)
        return 2
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    time.sleep(max(0.0, start_at - time.time()))
    granted: list[float] = []
    while time.time() < start_at + duration:
        bucket.acquire(max_wait=duration, lane=lane)
        granted.append(time.time())
    json.dump(granted, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
