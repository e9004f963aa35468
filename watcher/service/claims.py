"""Keeping this daemon's claims alive and taking over those of daemons that went away.

With a shared journal every file being worked on is claimed by one daemon for
`lease_seconds`. This thread renews all of this daemon's leases every third of that (a
dedicated thread, so a long rescan never lets a lease lapse under a live upload), and every
half lease asks the journal for rows whose claim lapsed (their daemon was killed, cut off or
stopped) and hands them to the pool, which claims them and resumes each from its recorded
slot, exactly as a restart would. With the SQLite journal there is nothing to renew or take
over, and the thread only sleeps.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from watcher.config.live import LiveConfig
from watcher.pipeline.workpool import WorkPool
from watcher.state.journal_api import Journal

log = logging.getLogger(__name__)


class ClaimKeeper:
    def __init__(
        self,
        journal: Journal,
        pool: WorkPool,
        live: LiveConfig,
    ) -> None:
        self.journal = journal
        self.pool = pool
        self.live = live
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="claims", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def _run(self) -> None:
        next_sweep = 0.0
        while not self._stop.is_set():
            lease = self.live.current.lease_seconds
            try:
                self.journal.renew_claims()
                # The fleet's view (`status`): this daemon is alive, with this much in flight.
                self.journal.beat_daemon(self.pool.busy)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + lease / 2
                    self.take_over()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("claims: renewing or taking over failed; trying again")
            self._stop.wait(lease / 3)

    def take_over(self) -> int:
        """Hand rows whose claim lapsed to the pool; how many."""
        config = self.live.current
        orphans = self.journal.orphaned()
        for row in orphans:
            log.warning(
                "taking over a file whose claim lapsed (its daemon stopped or went away)",
                extra={"file": row.path},
            )
            self.pool.submit(Path(row.path), config.folder_of(row.folder), row=row)
        return len(orphans)
