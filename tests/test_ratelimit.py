"""The shared token bucket: GCRA arithmetic, waiting and giving up, the LocMem lock path, the
Redis Lua path, several OS processes sharing one bucket through Redis, and the two lanes
(interactive first, background from the slots left)."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache, caches

from django_lexoffice import ratelimit
from django_lexoffice.exceptions import RateLimitTimeout
from django_lexoffice.ratelimit import Lane, SharedTokenBucket

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    """A clock that only moves when someone sleeps (or a test moves it)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def max_in_window(stamps: list[float], window: float) -> int:
    """The most timestamps found in any closed window of ``window`` seconds."""
    stamps = sorted(stamps)
    return max(
        (bisect.bisect_right(stamps, start + window) - index for index, start in enumerate(stamps)),
        default=0,
    )


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def bucket_on(clock: FakeClock, **kwargs: Any) -> SharedTokenBucket:
    return SharedTokenBucket("test-client", clock=clock, sleep=clock.sleep, **kwargs)


# -- GCRA arithmetic (LocMem, fake clock) ------------------------------------------------------


def test_calls_are_spaced_by_one_interval(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)

    assert bucket.try_acquire() == 0
    assert bucket.try_acquire() == pytest.approx(0.5)
    clock.now += 0.2
    assert bucket.try_acquire() == pytest.approx(0.3)
    clock.now += 0.3
    assert bucket.try_acquire() == 0
    assert bucket.try_acquire() == pytest.approx(0.5)


def test_a_refused_call_does_not_use_up_a_token(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)
    bucket.try_acquire()
    for _ in range(5):
        assert bucket.try_acquire() == pytest.approx(0.5)

    clock.now += 0.5

    assert bucket.try_acquire() == 0


def test_burst_lets_that_many_go_at_once_then_paces(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2, burst=3)

    assert [bucket.try_acquire() for _ in range(3)] == [0, 0, 0]
    assert bucket.try_acquire() == pytest.approx(0.5)

    clock.now += 60  # a long pause refills the burst, but never beyond it
    assert [bucket.try_acquire() for _ in range(3)] == [0, 0, 0]
    assert bucket.try_acquire() == pytest.approx(0.5)


def test_buckets_with_the_same_key_share_state_and_other_keys_do_not(clock: FakeClock) -> None:
    first = bucket_on(clock, rate=1)
    same = bucket_on(clock, rate=1)
    other = SharedTokenBucket("other-client", rate=1, clock=clock, sleep=clock.sleep)

    assert first.try_acquire() == 0
    assert same.try_acquire() == pytest.approx(1.0)
    assert other.try_acquire() == 0


def test_rate_key_and_cache_default_to_the_settings(settings: Any) -> None:
    settings.LEXOFFICE_RATE_LIMIT = 5

    bucket = SharedTokenBucket()

    assert bucket.rate == 5
    assert bucket.interval == pytest.approx(0.2)
    assert bucket.key == "django_lexoffice:ratelimit:test-client-id"
    assert bucket.cache is caches["default"]


def test_the_default_rate_stays_below_lexwares_two_per_second(settings: Any) -> None:
    del settings.LEXOFFICE_RATE_LIMIT

    assert 0 < SharedTokenBucket().rate < 2


@pytest.mark.parametrize("rate", [0, -1.0])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        SharedTokenBucket(rate=rate)


# -- acquire: waiting and giving up ------------------------------------------------------------


def test_acquire_waits_so_calls_are_spaced_by_one_over_rate(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=4)
    granted = []

    for _ in range(5):
        bucket.acquire(max_wait=10)
        granted.append(clock.now)

    gaps = [later - earlier for earlier, later in itertools.pairwise(granted)]
    assert gaps == pytest.approx([0.25] * 4)


def test_acquire_returns_the_seconds_waited(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=1)

    assert bucket.acquire() == 0
    assert bucket.acquire(max_wait=1.0) == pytest.approx(1.0)


def test_acquire_gives_up_without_sleeping_when_the_wait_exceeds_max_wait(
    clock: FakeClock,
) -> None:
    bucket = bucket_on(clock, rate=1)
    bucket.acquire()

    with pytest.raises(RateLimitTimeout, match=r"1 requests/s"):
        bucket.acquire(max_wait=0.5)

    assert clock.sleeps == []


def test_acquire_reserves_its_slot_so_later_callers_queue_behind_it(clock: FakeClock) -> None:
    seen: list[float] = []
    other = bucket_on(clock, rate=2)

    def sleep(seconds: float) -> None:
        seen.append(other.try_acquire())  # asked while we sleep until our slot
        clock.sleep(seconds)

    waiting = SharedTokenBucket("test-client", rate=2, clock=clock, sleep=sleep)
    other.acquire()

    assert waiting.acquire() == pytest.approx(0.5)
    assert seen == [pytest.approx(1.0)]  # 0.5 is ours: first come, first served


def test_an_acquire_that_gives_up_reserves_nothing(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)
    bucket.acquire()

    with pytest.raises(RateLimitTimeout):
        bucket.acquire(max_wait=0.1)

    assert bucket.try_acquire() == pytest.approx(0.5)


def test_acquire_max_wait_defaults_to_the_setting(settings: Any, clock: FakeClock) -> None:
    settings.LEXOFFICE_RATE_LIMIT_MAX_WAIT = 0.1
    bucket = bucket_on(clock, rate=1)
    bucket.acquire()

    with pytest.raises(RateLimitTimeout):
        bucket.acquire()


def test_module_acquire_uses_the_configured_bucket(settings: Any) -> None:
    settings.LEXOFFICE_RATE_LIMIT = 0.01  # one call per 100 s

    assert ratelimit.acquire() < 0.5
    with pytest.raises(RateLimitTimeout):
        ratelimit.acquire(max_wait=1)
    assert ratelimit.acquire("another-client") < 0.5


# -- the LocMem lock path ----------------------------------------------------------------------


def test_a_held_lock_means_try_again_shortly_without_touching_the_bucket(
    clock: FakeClock,
) -> None:
    bucket = bucket_on(clock, rate=1)
    lock_key = f"{bucket.key}:lock"
    cache.add(lock_key, "another-caller")

    assert bucket.try_acquire() == ratelimit._LOCK_BUSY_WAIT
    assert cache.get(bucket.key) is None
    assert cache.get(lock_key) == "another-caller"


def test_acquire_proceeds_once_the_lock_is_released(clock: FakeClock) -> None:
    lock_key = "django_lexoffice:ratelimit:test-client:lock"
    cache.add(lock_key, "another-caller")

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        cache.delete(lock_key)

    bucket = SharedTokenBucket("test-client", rate=1, clock=clock, sleep=sleep)

    assert bucket.acquire() == pytest.approx(ratelimit._LOCK_BUSY_WAIT, abs=1e-6)
    assert cache.get(lock_key) is None


def test_a_stuck_lock_ends_in_rate_limit_timeout(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=1)
    cache.add(f"{bucket.key}:lock", "crashed-caller")

    with pytest.raises(RateLimitTimeout):
        bucket.acquire(max_wait=0.05)

    assert 0 < sum(clock.sleeps) <= 0.05


def test_a_lock_taken_over_by_another_caller_is_not_deleted() -> None:
    # The lock expired while we held it and another caller took it: leave theirs alone.
    lock_key = "django_lexoffice:ratelimit:test-client:lock"

    def clock() -> float:
        cache.set(lock_key, "next-caller")
        return 1_700_000_000.0

    bucket = SharedTokenBucket("test-client", rate=1, clock=clock)

    assert bucket.try_acquire() == 0
    assert cache.get(lock_key) == "next-caller"


def test_threads_of_one_process_share_the_locmem_bucket() -> None:
    rate, threads, calls = 40.0, 4, 5
    bucket = SharedTokenBucket(f"threads-{uuid.uuid4().hex}", rate=rate)
    granted: list[float] = []

    def work() -> None:
        for _ in range(calls):
            bucket.acquire(max_wait=5)
            granted.append(time.time())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(granted) == threads * calls
    assert max_in_window(granted, 0.25) <= rate * 0.25 + 1
    assert max(granted) - min(granted) >= (threads * calls - 1) / rate * 0.9


# -- the Redis path ----------------------------------------------------------------------------


@pytest.fixture
def redis_alias(settings: Any, redis_url: str) -> Iterator[str]:
    settings.CACHES = {
        **settings.CACHES,
        "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
    }
    yield "redis"
    client = caches["redis"]._cache.get_client(None, write=True)
    for key in client.scan_iter(match="*django_lexoffice:ratelimit:*"):
        client.delete(key)


def redis_bucket(alias: str, **kwargs: Any) -> SharedTokenBucket:
    return SharedTokenBucket(f"redis-{uuid.uuid4().hex}", cache_alias=alias, **kwargs)


@pytest.mark.redis
def test_redis_path_runs_the_lua_script_and_no_lock(redis_alias: str) -> None:
    bucket = redis_bucket(redis_alias, rate=2)
    client = bucket._redis_client()
    assert client is not None

    assert bucket.try_acquire() == 0
    assert 0.4 < bucket.try_acquire() <= 0.5

    raw_key = bucket.cache.make_and_validate_key(bucket.key)
    assert float(client.get(raw_key)) == pytest.approx(time.time() + 0.5, abs=0.2)
    assert 0 < client.pttl(raw_key) <= 1500  # expires once it no longer matters
    assert client.exists(bucket.cache.make_and_validate_key(f"{bucket.key}:lock")) == 0


@pytest.mark.redis
def test_redis_path_keeps_the_burst(redis_alias: str) -> None:
    bucket = redis_bucket(redis_alias, rate=2, burst=3)

    assert [bucket.try_acquire() for _ in range(3)] == [0, 0, 0]
    assert 0.4 < bucket.try_acquire() <= 0.5


@pytest.mark.redis
def test_redis_path_reserves_slots_and_gives_up_without_reserving(redis_alias: str) -> None:
    key = f"redis-{uuid.uuid4().hex}"
    other = SharedTokenBucket(key, rate=2, cache_alias=redis_alias)
    seen: list[tuple[float, float]] = []
    waiting = SharedTokenBucket(
        key,
        rate=2,
        cache_alias=redis_alias,
        sleep=lambda seconds: seen.append((seconds, other.try_acquire())),
    )
    assert other.try_acquire() == 0

    waiting.acquire()
    with pytest.raises(RateLimitTimeout):
        waiting.acquire(max_wait=0.2)

    # Bounds that tell the cases apart with room for a slow machine (Redis's clock runs on
    # while this process waits for the CPU): the slots are 0.5 s apart.
    ((slept, next_free),) = seen
    assert 0 < slept <= 0.5
    assert 0.5 < next_free <= 1.0  # the slot at 0.5 was taken by the waiting caller
    assert 0.5 < other.try_acquire() <= 1.0  # the caller that gave up reserved nothing


@pytest.mark.redis
def test_redis_path_uses_redis_clock_not_the_callers(redis_alias: str) -> None:
    key = f"redis-{uuid.uuid4().hex}"
    behind = SharedTokenBucket(key, rate=2, cache_alias=redis_alias, clock=lambda: 0.0)
    ahead = SharedTokenBucket(key, rate=2, cache_alias=redis_alias, clock=lambda: 4e9)

    assert behind.try_acquire() == 0
    assert 0.4 < ahead.try_acquire() <= 0.5


@pytest.mark.redis
def test_redis_path_acquire_paces_real_calls(redis_alias: str) -> None:
    bucket = redis_bucket(redis_alias, rate=20)
    started = time.monotonic()

    for _ in range(5):
        bucket.acquire(max_wait=5)

    assert time.monotonic() - started >= 4 / 20 * 0.9


def _start_workers(
    redis_url: str, key: str, rate: float, duration: float, processes: int, lane: str = ""
) -> list[subprocess.Popen[str]]:
    """Start ``tests.ratelimit_worker`` processes and wait until each has imported Django."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_redis",
        "LEXOFFICE_TEST_REDIS_URL": redis_url,
    }
    command = [sys.executable, "-m", "tests.ratelimit_worker", key, str(rate), str(duration)]
    workers = [
        subprocess.Popen(
            [*command, lane] if lane else command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready", worker.communicate(timeout=30)[1]
    return workers


def _send_start(workers: list[subprocess.Popen[str]], start_at: float) -> None:
    """Tell every worker the common start time (epoch seconds)."""
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(f"{start_at}\n")
        worker.stdin.flush()  # communicate() closes it


def _collect(workers: list[subprocess.Popen[str]]) -> list[list[float]]:
    """Each worker's grant times; every worker must have exited cleanly."""
    outputs = [worker.communicate(timeout=30) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
    return [json.loads(stdout) for stdout, _ in outputs]


@pytest.mark.redis
def test_processes_share_one_bucket_through_redis(redis_url: str) -> None:
    rate, duration, processes = 10.0, 3.0, 4
    workers = _start_workers(redis_url, f"processes-{uuid.uuid4().hex}", rate, duration, processes)
    _send_start(workers, time.time() + 0.2)
    per_process = _collect(workers)

    granted = [stamp for stamps in per_process for stamp in stamps]
    fair_share = len(granted) / processes
    assert all(len(stamps) >= fair_share / 2 for stamps in per_process), "no process starves"
    assert max_in_window(granted, 2.0) <= rate * 2 + 1
    assert len(granted) >= rate * duration * 0.8, "the bucket must let the rate through"


# -- lanes: interactive first, background from the slots left ------------------------------------


def test_calls_are_interactive_unless_made_inside_background() -> None:
    assert ratelimit.current_lane() is Lane.INTERACTIVE

    with ratelimit.background():
        assert ratelimit.current_lane() is Lane.BACKGROUND
        with ratelimit.background():
            assert ratelimit.current_lane() is Lane.BACKGROUND
        assert ratelimit.current_lane() is Lane.BACKGROUND

    assert ratelimit.current_lane() is Lane.INTERACTIVE


def test_the_background_lane_ends_with_its_block_even_on_error() -> None:
    with pytest.raises(KeyError), ratelimit.background():
        raise KeyError("boom")

    assert ratelimit.current_lane() is Lane.INTERACTIVE


def test_background_holds_only_for_its_own_thread() -> None:
    seen: list[Lane] = []

    with ratelimit.background():
        other = threading.Thread(target=lambda: seen.append(ratelimit.current_lane()))
        other.start()
        other.join()

    assert seen == [Lane.INTERACTIVE]


def test_background_holds_only_for_its_own_asyncio_task() -> None:
    async def lane_inside_background() -> Lane:
        with ratelimit.background():
            await asyncio.sleep(0)
            return ratelimit.current_lane()

    async def lane_outside() -> Lane:
        await asyncio.sleep(0)
        return ratelimit.current_lane()

    async def both() -> list[Lane]:
        return list(await asyncio.gather(lane_inside_background(), lane_outside()))

    assert asyncio.run(both()) == [Lane.BACKGROUND, Lane.INTERACTIVE]


def test_background_alone_runs_at_the_full_rate(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)
    granted = []

    for _ in range(6):
        bucket.acquire(max_wait=10, lane=Lane.BACKGROUND)
        granted.append(clock.now)

    gaps = [later - earlier for earlier, later in itertools.pairwise(granted)]
    assert gaps == pytest.approx([0.5] * 5, abs=1e-6)


def test_the_lane_defaults_to_the_current_one(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)
    bucket.acquire()
    clock.sleeps.clear()

    with ratelimit.background():
        bucket.acquire()

    # The background way: sleep until the slot is near, then take it; not one booked sleep.
    assert len(clock.sleeps) == 2
    assert sum(clock.sleeps) == pytest.approx(0.5)


def test_a_waiting_background_caller_reserves_nothing(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)
    bucket.acquire()  # the slot at 0 is gone; the next is at 0.5
    interactive_waits: list[float] = []

    def sleep(seconds: float) -> None:
        if not interactive_waits:  # a user arrives while the background caller sleeps
            interactive = SharedTokenBucket(
                "test-client", rate=2, clock=clock, sleep=interactive_waits.append
            )
            interactive.acquire(lane=Lane.INTERACTIVE)
        clock.sleep(seconds)

    background = SharedTokenBucket("test-client", rate=2, clock=clock, sleep=sleep)
    started = clock.now

    waited = background.acquire(lane=Lane.BACKGROUND)

    assert interactive_waits == [pytest.approx(0.5)]  # the next free slot, not one behind us
    assert waited == pytest.approx(1.0)  # we got the slot after the user's
    assert clock.now - started == pytest.approx(1.0)


def test_an_interactive_caller_waits_at_most_one_interval_behind_background_work(
    clock: FakeClock,
) -> None:
    bucket = bucket_on(clock, rate=2)
    for _ in range(5):  # several background callers took slots back to back
        bucket.acquire(lane=Lane.BACKGROUND)

    waited = bucket_on(clock, rate=2).acquire(lane=Lane.INTERACTIVE)

    assert waited <= bucket.interval + bucket.lookahead


def test_interactive_callers_book_ahead_and_background_goes_after_them(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)
    waits: list[float] = []
    users = SharedTokenBucket("test-client", rate=2, clock=clock, sleep=waits.append)
    for _ in range(3):  # three users book 0, 0.5 and 1.0 without the clock moving
        users.acquire(lane=Lane.INTERACTIVE)

    assert bucket.acquire(lane=Lane.BACKGROUND) == pytest.approx(1.5)
    assert waits == [pytest.approx(0.5), pytest.approx(1.0)]


def test_background_books_at_most_the_lookahead_ahead(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)
    bucket.acquire()
    clock.now += bucket.interval - bucket.lookahead / 2  # the next slot is near

    assert bucket.acquire(lane=Lane.BACKGROUND) == pytest.approx(bucket.lookahead / 2, abs=1e-6)
    assert bucket.lookahead == pytest.approx(0.05)
    assert bucket_on(clock, rate=20).lookahead == pytest.approx(0.0125)  # a quarter interval


def test_background_gives_up_when_the_next_free_slot_is_beyond_max_wait(
    clock: FakeClock,
) -> None:
    bucket = bucket_on(clock, rate=0.5)
    bucket.acquire()

    with pytest.raises(RateLimitTimeout):
        bucket.acquire(max_wait=1, lane=Lane.BACKGROUND)

    assert clock.sleeps == []
    assert bucket.try_acquire() == pytest.approx(2.0)  # and it reserved nothing


def test_background_gives_up_when_users_keep_every_slot(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)
    users = SharedTokenBucket("test-client", rate=2, clock=clock, sleep=lambda _: None)

    def sleep(seconds: float) -> None:
        users.acquire(max_wait=100, lane=Lane.INTERACTIVE)  # a user takes the slot first
        clock.sleep(seconds)

    background = SharedTokenBucket("test-client", rate=2, clock=clock, sleep=sleep)
    bucket.acquire()

    with pytest.raises(RateLimitTimeout):
        background.acquire(max_wait=3, lane=Lane.BACKGROUND)


def test_count_reserves_consecutive_slots(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)

    assert bucket.acquire(count=2) == 0  # the first slot is now: the two calls go from here
    assert bucket.try_acquire() == pytest.approx(1.0)  # the next caller queues two behind
    assert bucket.try_acquire(count=2) == pytest.approx(1.0)


def test_background_takes_several_slots_only_when_the_first_is_free(clock: FakeClock) -> None:
    bucket = bucket_on(clock, rate=2)
    bucket.acquire(count=2)

    assert bucket.acquire(count=2, lane=Lane.BACKGROUND) == pytest.approx(1.0)
    assert bucket.try_acquire() == pytest.approx(1.0)


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_count_must_be_a_positive_whole_number(clock: FakeClock, count: Any) -> None:
    with pytest.raises(ValueError, match="count must be a positive whole number"):
        bucket_on(clock, rate=2).acquire(count=count)


def test_module_acquire_passes_count_and_lane(settings: Any) -> None:
    settings.LEXOFFICE_RATE_LIMIT = 0.01  # one call per 100 s

    assert ratelimit.acquire("lanes", count=2, lane=Lane.BACKGROUND) < 0.5
    with pytest.raises(RateLimitTimeout):
        ratelimit.acquire("lanes", max_wait=150, lane=Lane.BACKGROUND)  # two slots taken
    with pytest.raises(RateLimitTimeout), ratelimit.background():
        ratelimit.acquire("lanes", max_wait=150)


# -- the one cache lock ------------------------------------------------------------------------


def test_cache_lock_is_held_for_the_block_and_released() -> None:
    with ratelimit.cache_lock(cache, "a-lock", timeout=5):
        assert cache.get("a-lock") is not None
        with pytest.raises(ratelimit.CacheLockBusy, match="a-lock"):
            with ratelimit.cache_lock(cache, "a-lock", timeout=5):
                pass  # pragma: no cover

    assert cache.get("a-lock") is None


def test_cache_lock_waits_for_a_busy_lock_up_to_wait() -> None:
    cache.add("a-lock", "someone")
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 3:
            cache.delete("a-lock")  # the holder finishes

    with ratelimit.cache_lock(cache, "a-lock", timeout=5, wait=10, sleep=sleep):
        assert cache.get("a-lock") not in (None, "someone")

    assert polls == [0.001] * 3


def test_cache_lock_gives_up_after_wait() -> None:
    cache.add("a-lock", "someone")
    started = time.monotonic()

    with pytest.raises(ratelimit.CacheLockBusy):
        with ratelimit.cache_lock(cache, "a-lock", timeout=5, wait=0.05):
            pass  # pragma: no cover

    assert 0.05 <= time.monotonic() - started < 1
    assert cache.get("a-lock") == "someone"


@pytest.mark.redis
def test_redis_path_background_reserves_nothing_while_it_waits(redis_alias: str) -> None:
    key = f"redis-{uuid.uuid4().hex}"
    seen: list[float] = []
    user = SharedTokenBucket(key, rate=2, cache_alias=redis_alias)

    def sleep(seconds: float) -> None:
        if not seen:
            seen.append(user.try_acquire())  # a slot 0.5 s ahead is not booked by background
        time.sleep(seconds)

    background = SharedTokenBucket(key, rate=2, cache_alias=redis_alias, sleep=sleep)
    assert user.try_acquire() == 0

    background.acquire(lane=Lane.BACKGROUND)

    assert 0.4 < seen[0] <= 0.5
    assert 0.4 < user.try_acquire() <= 0.5  # background's slot came after nothing we booked


@pytest.mark.redis
def test_an_interactive_caller_is_not_pushed_back_by_background_processes(
    redis_alias: str, redis_url: str
) -> None:
    rate, duration, processes = 5.0, 3.0, 3
    key = f"lanes-{uuid.uuid4().hex}"
    workers = _start_workers(redis_url, key, rate, duration, processes, lane="background")
    start_at = time.time() + 0.3
    _send_start(workers, start_at)
    user = SharedTokenBucket(key, rate=rate, cache_alias=redis_alias)
    waits: list[float] = []
    user_granted: list[float] = []
    time.sleep(max(0.0, start_at + 0.4 - time.time()))  # the background workers are busy
    while time.time() < start_at + duration - 0.3:
        waits.append(user.acquire(max_wait=5, lane=Lane.INTERACTIVE))
        user_granted.append(time.time())
        time.sleep(0.4)
    background = _collect(workers)

    interval = 1 / rate
    assert len(waits) >= 4
    # First come, first served, each of the 3 workers' bookings would push the user back by
    # one interval, 0.6 s every time; with lanes the user waits at most about one interval
    # (plus the lookahead, 0.05 s). The maximum allows for a busy machine's scheduling delays.
    assert statistics.median(waits) <= interval + 0.05, waits
    assert max(waits) < processes * interval, waits
    granted = sorted(user_granted + [stamp for stamps in background for stamp in stamps])
    assert max_in_window(granted, 2.0) <= rate * 2 + 1
    left = rate * duration - len(user_granted)  # the slots the user left over the run
    assert sum(map(len, background)) >= left * 0.8, "background uses the slots the user leaves"
    fair_share = sum(map(len, background)) / processes
    assert all(len(stamps) >= fair_share / 2 for stamps in background), "no worker starves"
