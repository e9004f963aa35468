"""The adaptive limits on uploads in flight and on the request rate: the controllers with an
injected clock (no sleeping), the throttle's slots, and a daemon against a rate-limited sandbox."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import media
from conftest import wait_for
from daemon_helpers import make_config, running, sidecar_of

from watcher.config import ApiConfig
from watcher.heygen.adaptive import START_CONCURRENCY, ConcurrencyLimit, RateLimit
from watcher.heygen.throttle import Interrupted, Throttle
from watcher.sandbox import Sandbox


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- concurrency ---------------------------------------------------------------------------
def test_limit_doubles_per_round_trip_while_latency_holds_up_to_the_maximum() -> None:
    limit = ConcurrencyLimit(16, Clock())
    assert limit.limit == START_CONCURRENCY
    for _ in range(4):  # one round trip at 4: every answer adds one
        limit.on_success(0.05, saturated=True)
    assert limit.limit == 8
    for _ in range(100):
        limit.on_success(0.05, saturated=True)
    assert limit.limit == 16  # never past api.concurrency


def test_limit_does_not_grow_while_slots_are_left_unused() -> None:
    limit = ConcurrencyLimit(16, Clock())
    for _ in range(50):
        limit.on_success(0.05, saturated=False)
    assert limit.limit == START_CONCURRENCY


def test_a_refusal_halves_the_limit_once_per_round_trip_then_growth_is_additive() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(32, clock)
    for _ in range(12):
        limit.on_success(0.05, saturated=True)
    assert limit.limit == 16
    limit.on_refused()
    limit.on_refused()  # answers to requests sent before the cut: the same episode
    assert limit.limit == 8
    clock.now += 1
    for _ in range(9):  # a round trip at 8 (nine answers) adds one, not nine
        limit.on_success(0.05, saturated=True)
    assert limit.limit == 9
    for _ in range(10):
        clock.now += 1
        limit.on_refused()
    assert limit.limit == 1  # never below one


def test_a_latency_jump_cuts_the_limit_and_jitter_does_not() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(32, clock)
    for _ in range(12):
        limit.on_success(0.050, saturated=True)
    assert limit.limit == 16
    for _ in range(20):  # a few milliseconds of jitter on a fast link
        limit.on_success(0.002 if _ % 2 else 0.012, saturated=False)
    assert limit.limit == 16
    clock.now += 1
    for _ in range(10):  # HeyGen answers four times slower: queueing somewhere
        limit.on_success(0.200, saturated=True)
    assert limit.limit < 16
    cut = limit.limit
    for _ in range(40):
        clock.now += 1
        limit.on_success(0.002, saturated=True)
    assert limit.limit > cut  # latency came back: growth resumes


# -- rate ----------------------------------------------------------------------------------
def test_no_rate_limit_until_a_refusal_then_80_percent_of_what_was_accepted() -> None:
    clock = Clock()
    rate = RateLimit(clock)
    for _ in range(30):  # 30 accepted over the last second
        clock.now += 1 / 30
        rate.on_accepted(binding=False)
    assert rate.per_second is None
    rate.on_refused()
    first = rate.per_second
    assert first is not None and abs(first - 0.8 * 30) < 1.5
    clock.now += 0.2
    rate.on_refused()  # the same episode: requests already in flight
    assert rate.per_second == first
    clock.now += 2
    rate.on_refused()
    assert rate.per_second == first * 0.8


def test_rate_probes_back_up_only_while_it_holds_requests_back_and_is_forgotten() -> None:
    clock = Clock()
    rate = RateLimit(clock)
    rate.on_refused()
    start = rate.per_second
    assert start is not None and start > 0  # a refusal right at start still leaves a rate
    for _ in range(50):
        clock.now += 0.1
        rate.on_accepted(binding=False)
    assert rate.per_second == start
    for _ in range(90):
        clock.now += 0.1
        rate.on_accepted(binding=True)
    grown = rate.per_second
    assert grown is not None and 1.2 * start < grown < 1.3 * start
    clock.now += 601
    rate.on_accepted(binding=True)
    assert rate.per_second is None


# -- the throttle's upload slots -----------------------------------------------------------
def test_upload_slots_follow_the_limit_and_a_refusal_takes_some_back() -> None:
    throttle = Throttle(concurrency=16, clock=Clock())
    held = []
    for _ in range(START_CONCURRENCY):
        slot = throttle.upload_slot()
        slot.__enter__()
        held.append(slot)
    assert throttle.uploads_in_flight == (START_CONCURRENCY, START_CONCURRENCY)
    got_one = threading.Event()

    def another() -> None:
        with throttle.upload_slot():
            got_one.set()

    waiter = threading.Thread(target=another)
    waiter.start()
    wait_for(lambda: throttle._waiting == 1, what="a waiter")
    assert not got_one.is_set()
    throttle.answered(0.05, refused=False)  # all slots busy and latency fine: one more
    assert got_one.wait(5)
    waiter.join(5)
    throttle.answered(None, refused=True)
    assert throttle.uploads_in_flight[1] < START_CONCURRENCY
    for slot in held:
        slot.__exit__(None, None, None)
    assert throttle.uploads_in_flight[0] == 0


def test_a_worker_waiting_for_a_slot_is_woken_by_shutdown() -> None:
    throttle = Throttle(concurrency=1, clock=Clock())
    outcome: list[str] = []

    def waiting() -> None:
        try:
            with throttle.upload_slot():
                outcome.append("got a slot")
        except Interrupted:
            outcome.append("interrupted")

    with throttle.upload_slot():
        worker = threading.Thread(target=waiting)
        worker.start()
        wait_for(lambda: throttle._waiting == 1, what="a waiter")
        throttle.stop()
        worker.join(5)
    assert outcome == ["interrupted"]


def test_fixed_concurrency_when_adaptation_is_off() -> None:
    throttle = Throttle(concurrency=6, adaptive=False, clock=Clock())
    slots = [throttle.upload_slot() for _ in range(6)]
    for slot in slots:
        slot.__enter__()  # all six at once, without any answer having come back
    throttle.answered(None, refused=True)
    assert throttle.rate.per_second is None
    for slot in slots:
        slot.__exit__(None, None, None)


# -- the throttle's shared pause -----------------------------------------------------------
def test_a_worker_that_reads_a_fleet_pause_another_worker_already_adopted_waits_too() -> None:
    """Two workers of one daemon find the fleet's pause at once: the first extends the local
    pause, the second's extension then changes nothing, and it must still wait."""
    throttle: Throttle
    until = time.monotonic() + 0.4

    def shared_pause() -> tuple[float, str]:
        left = until - time.monotonic()
        if left <= 0:
            return 0.0, ""
        # The other worker read the same pause a moment ago and adopted it.
        throttle._extend(left + 0.05, "429 from another daemon")
        return left, "429 from another daemon"

    throttle = Throttle(shared_pause=shared_pause)
    started = time.monotonic()
    throttle.before_request(keyed=True)
    assert time.monotonic() - started >= 0.3


# -- against a sandbox that enforces a rate limit ------------------------------------------
def test_daemon_settles_under_the_sandbox_rate_limit_and_uploads_everything(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    sandbox.rate_limit_per_second = 25.0
    sandbox.rate_limit_burst = 5
    count = 100
    config = make_config(
        sandbox,
        tmp_path,
        [{"path": str(drop), "trust_close_write": True}],
        # The shipped concurrency and adaptation; attempts enough to ride out a few refusals.
        api={"concurrency": ApiConfig().concurrency, "max_attempts": 8},
    )
    with running(config):
        for index in range(count):
            (drop / f"burst-{index:03}.png").write_bytes(media.png(seed=5000 + index))
        wait_for(
            lambda: all(sidecar_of(drop / f"burst-{i:03}.png").exists() for i in range(count)),
            timeout=120,
            what="every sidecar",
        )
    keyed = [seen for seen in sandbox.requests if seen.server in ("api", "upload")]
    refused = sum(1 for seen in keyed if seen.status == 429)
    assert refused >= 1  # the limit was really reached, so the test tests something
    assert refused <= 0.05 * len(keyed), f"{refused} of {len(keyed)} requests refused"
    assert len(sandbox.assets) == count
