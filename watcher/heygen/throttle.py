"""Shared pacing for every request a process makes to HeyGen.

One `Throttle` is shared by all workers so that:
- a 429 pauses everybody until ``Retry-After`` has passed (one shared back-off);
- ``requests_per_second`` keeps the whole process under the limit to begin with;
- uploads in flight are bounded by an adaptive limit (at most ``api.concurrency``), and
  requests to HeyGen's keyed hosts by an adaptive rate once HeyGen has refused one
  (`watcher.heygen.adaptive`): HeyGen publishes no limits, so they are found, not configured;
- a shutdown interrupts every wait at once instead of leaving threads asleep.

Beyond the process, a fleet of daemons shares its 429 pauses through two callbacks: a pause
this process starts is told to ``on_pause``, and ``shared_pause`` is asked before each request
for one another process started (the service connects both to the shared journal).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from watcher.heygen.adaptive import Clock, ConcurrencyLimit, RateLimit

# A worker waiting for an upload slot tells the liveness watchdog this often that it is
# waiting on purpose, not wedged.
SLOT_WAIT_BEAT_SECONDS = 5.0


class Interrupted(Exception):
    """Raised from a wait when the process is shutting down."""


class Throttle:
    def __init__(
        self,
        requests_per_second: float | None = None,
        on_wait: Callable[[], None] = lambda: None,
        *,
        concurrency: int = 1,
        adaptive: bool = True,
        clock: Clock = time.monotonic,
        on_pause: Callable[[float, str], None] = lambda seconds, reason: None,
        shared_pause: Callable[[], tuple[float, str]] = lambda: (0.0, ""),
    ) -> None:
        # Told before every deliberate, bounded wait: such a wait is not a stall.
        self._on_wait = on_wait
        self._clock = clock
        self._on_pause = on_pause
        self._shared_pause = shared_pause
        # Re-entrant: `stop` may come from a thread that is inside a wait of its own.
        self._lock = threading.RLock()
        self._slot_freed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._paused_until = 0.0
        self._pause_reason = ""
        self._interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self._next_slot = 0.0
        self._adaptive = adaptive
        self.concurrency = ConcurrencyLimit(max(1, concurrency), clock)
        self.rate = RateLimit(clock)
        self._in_flight = 0
        self._waiting = 0

    # -- state -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Wake every waiter with `Interrupted`; used on shutdown."""
        self._stop.set()
        with self._slot_freed:
            self._slot_freed.notify_all()

    def pause_for(self, seconds: float, reason: str) -> None:
        """A pause this process decided (a 429): others sharing the pause are told."""
        if self._extend(seconds, reason):
            self._on_pause(seconds, reason)

    def _extend(self, seconds: float, reason: str) -> bool:
        with self._lock:
            until = self._clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self._pause_reason = reason
                return True
            return False

    def paused(self) -> tuple[float, str]:
        """(seconds left, reason) of the current shared pause; (0, "") when not paused."""
        with self._lock:
            left = self._paused_until - self._clock()
            return (left, self._pause_reason) if left > 0 else (0.0, "")

    # -- waiting -----------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on shutdown."""
        self._on_wait()
        if seconds > 0 and self._stop.wait(seconds):
            raise Interrupted("shutting down")
        if self._stop.is_set():
            raise Interrupted("shutting down")

    def before_request(self, keyed: bool = False) -> None:
        """Wait out any shared pause, then take the next slot of the rate limit. ``keyed``
        requests (to HeyGen's API and upload hosts, which count them) also keep to the rate
        learnt from refusals. A pause that began while waiting for the slot is waited out
        too, and a fresh slot taken after it: nobody sends during a pause."""
        while True:
            while True:
                left, _ = self.paused()
                if left <= 0:
                    # A pause another daemon of the fleet started counts as ours. Whether
                    # or not this thread's extension wins (another worker may have made the
                    # same one a moment ago), the local pause is looked at again: a worker
                    # that found no pause a moment ago must not send now.
                    shared_left, reason = self._shared_pause()
                    if shared_left <= 0:
                        break
                    self._extend(shared_left, reason)
                    continue
                self.sleep(left)
            with self._lock:
                interval = self._interval
                learnt = self.rate.per_second if keyed and self._adaptive else None
                if learnt:
                    interval = max(interval, 1.0 / learnt)
                if not interval:
                    return
                now = self._clock()
                slot = max(now, self._next_slot)
                self._next_slot = slot + interval
            self.sleep(slot - now)
            if self.paused()[0] <= 0 and self._shared_pause()[0] <= 0:
                return

    # -- feedback from keyed requests --------------------------------------------------------
    def answered(self, latency: float | None, refused: bool) -> None:
        """A keyed request was answered: ``refused`` for a 429, else ``latency`` (None where
        its time says nothing about load) feeds the adaptive limits."""
        if not self._adaptive:
            return
        with self._lock:
            if refused:
                self.rate.on_refused()
                self.concurrency.on_refused()
                return
            self.rate.on_accepted(binding=self._next_slot > self._clock())
            before = self.concurrency.limit
            saturated = self._waiting > 0 or self._in_flight >= before
            self.concurrency.on_success(latency, saturated)
            if self.concurrency.limit > before:
                self._slot_freed.notify(self.concurrency.limit - before)

    # -- uploads in flight -------------------------------------------------------------------
    @contextmanager
    def upload_slot(self) -> Iterator[None]:
        """Hold one of the adaptive number of upload slots for the duration of the block."""
        limit = self.concurrency.maximum if not self._adaptive else None
        with self._slot_freed:
            self._waiting += 1
            try:
                while self._in_flight >= (limit or self.concurrency.limit):
                    if self._stop.is_set():
                        raise Interrupted("shutting down")
                    self._on_wait()
                    self._slot_freed.wait(SLOT_WAIT_BEAT_SECONDS)
            finally:
                self._waiting -= 1
            if self._stop.is_set():
                raise Interrupted("shutting down")
            self._in_flight += 1
        try:
            yield
        finally:
            with self._slot_freed:
                self._in_flight -= 1
                self._slot_freed.notify()

    @property
    def uploads_in_flight(self) -> tuple[int, int]:
        """(uploads in flight, their current limit), for status and tests."""
        with self._lock:
            return self._in_flight, self.concurrency.limit
