"""Pauses shared by every daemon using the journal: a 429's and a 401's.

A 429: the client's throttle tells this bridge when it starts a pause (with its
`Retry-After`), which records it in the journal; before each request the throttle asks the
bridge for a pause another daemon recorded. A 401: the pipeline's `AuthPause` records it
here when this daemon's key is refused, asks for one another daemon recorded before each
upload, and ends it for everyone when a daemon reloads its key.

Reads are cached for a short while: four queries a second per daemon and kind at most, not
one per request. With the SQLite journal the only daemon is this one, and the bridge only
echoes its own pauses.
"""

from __future__ import annotations

import logging
import threading
import time

from watcher.state.journal_api import Journal

log = logging.getLogger(__name__)

RATE_LIMIT = "rate_limit"
AUTH = "auth"
# A refused key pauses until a daemon reloads its key, not for a time: recorded as a pause
# longer than any daemon runs, which `end` cuts short.
UNTIL_KEY_RELOADED_SECONDS = 10 * 365 * 86400.0
REFRESH_SECONDS = 0.25


class FleetPause:
    def __init__(
        self, journal: Journal, kind: str = RATE_LIMIT, refresh_seconds: float = REFRESH_SECONDS
    ) -> None:
        self.journal = journal
        self.kind = kind
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._read_at = -refresh_seconds
        self._until = 0.0  # monotonic
        self._reason = ""

    def publish(self, seconds: float, reason: str) -> None:
        """This daemon saw a 429 (or a 401): the whole fleet waits."""
        try:
            self.journal.pause_fleet(self.kind, seconds, reason)
        except Exception:
            log.warning("could not share the %s pause with the fleet", self.kind, exc_info=True)
        self._forget()

    def end(self) -> None:
        """The pause is over for every daemon (a 401's: a daemon reloaded its key)."""
        try:
            self.journal.resume_fleet(self.kind)
        except Exception:
            log.warning("could not end the fleet's %s pause", self.kind, exc_info=True)
        self._forget()

    def _forget(self) -> None:
        # This daemon's own change is seen at its next look, not a refresh later.
        with self._lock:
            self._read_at = -self.refresh_seconds

    def current(self) -> tuple[float, str]:
        """(seconds left, reason) of a pause recorded by any daemon of the fleet."""
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= self.refresh_seconds:
                self._read_at = now
                try:
                    left, reason = self.journal.fleet_pause(self.kind)
                except Exception:
                    log.warning("could not read the fleet's %s pause", self.kind, exc_info=True)
                    left, reason = 0.0, ""
                self._until, self._reason = now + left, reason
            left = self._until - now
        return (left, self._reason) if left > 0 else (0.0, "")

    def reason(self) -> str | None:
        """The reason of a pause in force (for a 401's pause), else None."""
        left, reason = self.current()
        return reason if left > 0 else None
