"""Is the pipeline making progress? Workers say so by beating while they work.

A worker beats when it takes a task, for every block of bytes it sends, and before each
deliberate wait (a backoff, a Retry-After). Each of those is bounded (socket timeouts, clamped
waits), so a worker that has not beaten for a long while is wedged, not slow, and systemd's
watchdog should restart the process. The pipeline and the client know nothing of this module:
they are handed `begin`/`end` and `beat` as plain callbacks.
"""

from __future__ import annotations

import threading
import time


class Heartbeat:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy_since_beat: dict[int, float] = {}  # thread id → monotonic time of last beat

    def begin(self) -> None:
        """This thread starts a task."""
        with self._lock:
            self._busy_since_beat[threading.get_ident()] = time.monotonic()

    def beat(self) -> None:
        """This thread is alive and moving (cheap: called for every block sent)."""
        ident = threading.get_ident()
        if ident in self._busy_since_beat:
            self._busy_since_beat[ident] = time.monotonic()

    def end(self) -> None:
        """This thread finished its task."""
        with self._lock:
            self._busy_since_beat.pop(threading.get_ident(), None)

    def longest_silence(self) -> float:
        """Seconds since the quietest busy worker last beat (0 when nobody is busy)."""
        now = time.monotonic()
        with self._lock:
            return max((now - last for last in self._busy_since_beat.values()), default=0.0)
