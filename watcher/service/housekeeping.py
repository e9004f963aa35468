"""Housekeeping: the one thread that does everything periodic.

Each round: a probe while the API is unreachable, due retries, video steps and sidecars,
files handed over by a command, the polls of polling folders, the folders' root checks and
the key file, and the rescan (a full walk at once when events were lost). It sleeps on
``wake`` until the next of those is due; anyone may set ``wake`` to make it look now. A round
that fails is logged and the next one comes all the same.
"""

from __future__ import annotations

import logging
import threading
import time

from watcher.config.live import LiveConfig
from watcher.heygen.client import HeyGenClient
from watcher.intake.folders import FolderWatches
from watcher.intake.scan import Scanner
from watcher.pipeline.outages import ApiProbe
from watcher.pipeline.outcome import AuthPause
from watcher.pipeline.resume import Resumer
from watcher.service.keys import KeyWatch
from watcher.state.journal_api import Journal

log = logging.getLogger(__name__)

AUTH_REMINDER_SECONDS = 300.0
# While a 401 pauses uploads, how often the fleet's pause is looked at for its end.
FLEET_AUTH_CHECK_SECONDS = 1.0
# The periodic rescan takes at most this share of the time: a tree so large that a pass
# lasts long waits proportionally longer for the next (up to RESCAN_STRETCH_MAX times the
# configured interval; an inotify overflow still asks for one at once).
RESCAN_DUTY = 0.01
RESCAN_STRETCH_MAX = 10.0
# A periodic pass this soon after a full walk: files made while watches were re-armed.
AFTER_FULL_SCAN_SECONDS = 2.0
# How often folders that poll (`polling: true`, or no inotify watch left) are looked at: a
# stat per directory, and a listing of those whose stamp moved.
POLL_SECONDS = 1.0


class Housekeeper:
    def __init__(
        self,
        live: LiveConfig,
        journal: Journal,
        client: HeyGenClient,
        auth_pause: AuthPause,
        folders: FolderWatches,
        scanner: Scanner,
        resumer: Resumer,
        probe: ApiProbe,
        keys: KeyWatch,
        *,
        wake: threading.Event,
        stop: threading.Event,
        root_check_seconds: float,
    ) -> None:
        self.live = live
        self.journal = journal
        self.client = client
        self.auth_pause = auth_pause
        self.folders = folders
        self.scanner = scanner
        self.resumer = resumer
        self.probe = probe
        self.keys = keys
        self._wake = wake
        self._stop = stop
        self.root_check_seconds = root_check_seconds
        self._thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """True once the thread has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        next_rescan = time.monotonic() + self.live.current.rescan_seconds
        next_root_check = time.monotonic() + self.root_check_seconds
        next_poll = time.monotonic() + POLL_SECONDS
        next_auth_reminder = time.monotonic() + AUTH_REMINDER_SECONDS
        next_probe: float | None = None
        reachability = self.client.reachability
        while not self._stop.is_set():
            now = time.monotonic()
            wake = min(next_rescan, next_root_check)
            if self.folders.any_polled():  # else no wake-up a second for nothing
                wake = min(wake, next_poll)
            if self.keys.auth_paused:
                # The fleet's 401 pause may end at another daemon's reload: looked at often.
                wake = min(wake, now + FLEET_AUTH_CHECK_SECONDS)
            if reachability.down:
                if next_probe is None:
                    next_probe = now + self.probe.delay()
                wake = min(wake, next_probe)
            for due_at in (
                self.journal.next_due_at(),
                None if reachability.down else self.journal.next_video_at(),
                self.journal.next_sidecar_at(),
            ):
                if due_at is not None:
                    wake = min(wake, now + max(0.0, due_at - time.time()))
            self._wake.wait(max(0.0, wake - now))
            self._wake.clear()
            if self._stop.is_set():
                return
            now = time.monotonic()
            try:
                if next_probe is not None and now >= next_probe:
                    next_probe = now + self.probe.delay()
                    if self.probe.probe():
                        next_probe = None
                self.resumer.submit_due()
                self.resumer.take_requests()
                if now >= next_poll:
                    next_poll = time.monotonic() + POLL_SECONDS
                    self.scanner.poll_folders()
                if now >= next_root_check:
                    next_root_check = now + self.root_check_seconds
                    self.folders.check_roots()
                    self.keys.check_file()
                if self.scanner.full_scan_if_wanted():
                    # watchdog re-arms its watches after it reports an overflow, perhaps after
                    # this walk listed a folder: a periodic pass (changed folders only) soon.
                    next_rescan = time.monotonic() + AFTER_FULL_SCAN_SECONDS
                elif now >= next_rescan:
                    self.scanner.scan_all()
                    next_rescan = time.monotonic() + self._rescan_interval()
                self.keys.follow_fleet()
            except Exception:
                # One bad round (a folder that cannot be read, a bug) must not end the thread
                # that retries, rescans and re-arms everything else.
                log.exception("housekeeping round failed; going on")
                self._stop.wait(1.0)  # a failure that repeats must not spin
            if self.auth_pause.active and now >= next_auth_reminder:
                next_auth_reminder = now + AUTH_REMINDER_SECONDS
                log.error(
                    "uploads paused: the API refused the key from %s (%s); fix the key "
                    "and send SIGHUP or update the key file",
                    self.client.key_origin,
                    self.auth_pause.reason,
                )

    def _rescan_interval(self) -> float:
        """The configured interval, stretched for a tree so large that a periodic pass takes
        long (the start's walk, or a full one, says nothing of what a periodic pass costs)."""
        configured = self.live.current.rescan_seconds
        stretched = max(configured, self.scanner.pass_seconds / RESCAN_DUTY)
        return min(stretched, configured * RESCAN_STRETCH_MAX)
