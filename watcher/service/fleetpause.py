"""A 429's pause shared by every daemon using the journal.

The client's throttle tells this bridge when it starts a pause (a 429 with its `Retry-After`),
which records it in the journal; before each request the throttle asks the bridge for a pause
another daemon recorded. Reads are cached for a short while: four queries a second per
daemon at most, not one per request. With the SQLite journal the only daemon is this one, and
the bridge only echoes its own pauses.
"""

from __future__ import annotations

import logging
import threading
import time

from watcher.state.journal_api import Journal

log = logging.getLogger(__name__)

KIND = "rate_limit"
REFRESH_SECONDS = 0.25


class FleetPause:
    def __init__(self, journal: Journal, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.journal = journal
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._read_at = -refresh_seconds
        self._until = 0.0  # monotonic
        self._reason = ""

    def publish(self, seconds: float, reason: str) -> None:
        """This daemon saw a 429: the whole fleet waits."""
        try:
            self.journal.pause_fleet(KIND, seconds, reason)
        except Exception:
            log.warning("could not share the rate-limit pause with the fleet", exc_info=True)

    def current(self) -> tuple[float, str]:
        """(seconds left, reason) of a pause recorded by any daemon of the fleet."""
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= self.refresh_seconds:
                self._read_at = now
                try:
                    left, reason = self.journal.fleet_pause(KIND)
                except Exception:
                    log.warning("could not read the fleet's rate-limit pause", exc_info=True)
                    left, reason = 0.0, ""
                self._until, self._reason = now + left, reason
            left = self._until - now
        return (left, self._reason) if left > 0 else (0.0, "")
