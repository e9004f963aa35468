"""Is the pipeline making progress? Workers say so by beating while they work.

A worker beats when it takes a task, for every block of bytes it sends, and before each
deliberate wait (a backoff, a Retry-After). Each of those is bounded (socket timeouts, clamped
waits), so a worker that has not beaten for a long while is wedged, not slow, and systemd's
watchdog should restart the process.
"""

from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_busy_since_beat: dict[int, float] = {}  # thread id → monotonic time of its last beat


def begin() -> None:
    """This thread starts a task."""
    with _lock:
        _busy_since_beat[threading.get_ident()] = time.monotonic()


def beat() -> None:
    """This thread is alive and moving (cheap: called for every block sent)."""
    ident = threading.get_ident()
    if ident in _busy_since_beat:
        _busy_since_beat[ident] = time.monotonic()


def end() -> None:
    """This thread finished its task."""
    with _lock:
        _busy_since_beat.pop(threading.get_ident(), None)


def longest_silence() -> float:
    """Seconds since the quietest busy worker last beat (0 when nobody is busy)."""
    now = time.monotonic()
    with _lock:
        return max((now - last for last in _busy_since_beat.values()), default=0.0)
