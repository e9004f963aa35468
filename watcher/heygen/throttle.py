"""Shared pacing for every request a process makes to HeyGen.

One `Throttle` is shared by all workers so that:
- a 429 pauses everybody until ``Retry-After`` has passed (one shared back-off);
- ``requests_per_second`` keeps the whole process under the limit to begin with;
- a shutdown interrupts every wait at once instead of leaving threads asleep.

Beyond the process, a fleet of daemons shares its 429 pauses through two callbacks: a pause
this process starts is told to ``on_pause``, and ``shared_pause`` is asked before each request
for one another process started (the service connects both to the shared journal).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Interrupted(Exception):
    """Raised from a wait when the process is shutting down."""


class Throttle:
    def __init__(
        self,
        requests_per_second: float | None = None,
        on_wait: Callable[[], None] = lambda: None,
        *,
        on_pause: Callable[[float, str], None] = lambda seconds, reason: None,
        shared_pause: Callable[[], tuple[float, str]] = lambda: (0.0, ""),
    ) -> None:
        # Told before every deliberate, bounded wait: such a wait is not a stall.
        self._on_wait = on_wait
        self._on_pause = on_pause
        self._shared_pause = shared_pause
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._paused_until = 0.0
        self._pause_reason = ""
        self._interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self._next_slot = 0.0

    # -- state -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Wake every waiter with `Interrupted`; used on shutdown."""
        self._stop.set()

    def pause_for(self, seconds: float, reason: str) -> None:
        """A pause this process decided (a 429): others sharing the pause are told."""
        if self._extend(seconds, reason):
            self._on_pause(seconds, reason)

    def _extend(self, seconds: float, reason: str) -> bool:
        with self._lock:
            until = time.monotonic() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self._pause_reason = reason
                return True
            return False

    def paused(self) -> tuple[float, str]:
        """(seconds left, reason) of the current shared pause; (0, "") when not paused."""
        with self._lock:
            left = self._paused_until - time.monotonic()
            return (left, self._pause_reason) if left > 0 else (0.0, "")

    # -- waiting -----------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on shutdown."""
        self._on_wait()
        if seconds > 0 and self._stop.wait(seconds):
            raise Interrupted("shutting down")
        if self._stop.is_set():
            raise Interrupted("shutting down")

    def before_request(self) -> None:
        """Wait out any shared pause, then take the next slot of the rate limit."""
        while True:
            left, _ = self.paused()
            if left <= 0:
                shared_left, reason = self._shared_pause()
                if shared_left <= 0 or not self._extend(shared_left, reason):
                    break
                continue
            self.sleep(left)
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval
        self.sleep(slot - now)
