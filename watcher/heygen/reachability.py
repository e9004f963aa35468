"""Whether HeyGen answers at all: one shared view for every request a process makes.

A connection refused, a timeout or a 5xx says little about the file being sent: when the API
(or its storage) is down, every file fails the same way. So a request that fails like that is
checked with one cheap probe; if the probe fails too, the service is *unreachable*: every
quick retry in progress stops at once (`with_retries` asks `down`), the pipeline holds its
files instead of spending their retries, and the daemon probes at a short, backed-off interval
until an answer comes back. A probe that succeeds means the failure was the file's own.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Outage:
    since: float  # epoch seconds of the first failure that declared it
    last_error: str
    probes: int  # failed probes since it began
    # Set when storage failed: the probes then ask that host too (the API may well answer).
    storage_url: str | None = None


class Reachability:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._outage: Outage | None = None

    @property
    def down(self) -> bool:
        with self._lock:
            return self._outage is not None

    @property
    def outage(self) -> Outage | None:
        with self._lock:
            return self._outage

    def declare_down(self, error: str, storage_url: str | None = None) -> bool:
        """Record a failed probe; True when this begins an outage (the first declaration)."""
        with self._lock:
            first = self._outage is None
            if self._outage is None:
                self._outage = Outage(time.time(), error, 1, storage_url)
            else:
                self._outage = Outage(
                    self._outage.since,
                    error,
                    self._outage.probes + 1,
                    storage_url or self._outage.storage_url,
                )
            self._changed.notify_all()
            return first

    def declare_up(self) -> Outage | None:
        """A probe was answered: the outage (if any) is over; returns it."""
        with self._lock:
            ended, self._outage = self._outage, None
            self._changed.notify_all()
            return ended

    def wait_until_down(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for an outage to be declared; True if one is (a quick retry
        sleeping through its backoff gives up at once instead of trying a dead service)."""
        with self._lock:
            return self._changed.wait_for(lambda: self._outage is not None, seconds)


def probe_delay_seconds(failed_probes: int, base_seconds: float, max_seconds: float) -> float:
    """Delay before the next probe: doubling from ``base_seconds``, capped at ``max_seconds``."""
    return float(min(max_seconds, base_seconds * 2 ** max(0, failed_probes - 1)))
