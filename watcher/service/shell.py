"""`heygen-watcher run` as a service: signals, sd_notify, the watchdog, reload, metrics.

- SIGTERM/SIGINT: stop taking work, let uploads finish (``shutdown_timeout_seconds``), exit 0.
- SIGHUP: re-read the configuration (folders come and go; a bad file is logged and the old
  configuration kept) and the API key, between ``RELOADING=1`` and ``READY=1``.
- ``READY=1`` once every folder is watched and the start-up scan is queued; ``STATUS=`` with the
  queue; ``WATCHDOG=1`` only while the pipeline makes progress; ``STOPPING=1`` on the way out.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from watcher.config import Config, ConfigError, load_config
from watcher.config.apikey import ApiKey
from watcher.service import cpus
from watcher.service.daemon import Daemon
from watcher.service.metrics import Metrics, MetricsServer
from watcher.service.sdnotify import Notifier, WatchdogPinger, watchdog_interval_seconds
from watcher.state.states import FileState

log = logging.getLogger(__name__)

STATUS_REFRESH_SECONDS = 5.0
STATUS_COALESCE_SECONDS = 0.5
# Events that change the counts STATUS= shows.
_STATUS_EVENTS = frozenset({"uploaded", "rejected", "failure"})


def status_line(counts: dict[str, int]) -> str:
    on_its_way = (FileState.QUEUED, FileState.UPLOADING, FileState.RECORDING, FileState.RETRYING)
    waiting = sum(counts.get(state, 0) for state in on_its_way)
    parts = [f"{waiting} waiting", f"{counts.get(FileState.UPLOADED, 0)} uploaded"]
    for state in (FileState.REJECTED, FileState.FAILED, FileState.HELD):
        if counts.get(state):
            parts.append(f"{counts[state]} {state}")
    return ", ".join(parts)


JOURNAL_WAIT_EXTEND_USEC = 30_000_000


class Service:
    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        key: ApiKey | None = None,
        notifier: Notifier | None = None,
        on_started: Callable[[Daemon], None] = lambda daemon: None,
    ) -> None:
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.metrics = Metrics() if config.metrics_listen else None
        self.daemon = Daemon(
            config, key=key, on_event=self._on_event, on_journal_wait=self._journal_wait
        )
        self.on_started = on_started
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        self._last_status = ""

    # -- signals -----------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()
        self._wake.set()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self._reload.set()
        self._wake.set()

    def _on_event(self, kind: str, details: dict[str, Any]) -> None:
        """A pipeline event: count it, and let STATUS= show it soon (not in 5 s)."""
        if self.metrics is not None:
            self.metrics.on_event(kind, details)
        if kind in _STATUS_EVENTS:
            self._wake.set()

    def _journal_wait(self) -> None:
        """Start-up waits for the shared journal's database: systemd must not count that
        against TimeoutStartSec (a restart would only wait again)."""
        self.notifier.send(
            EXTEND_TIMEOUT_USEC=JOURNAL_WAIT_EXTEND_USEC,
            STATUS="waiting for the journal database",
        )

    # -- life --------------------------------------------------------------------------------
    def run(self) -> int:
        daemon = self.daemon
        daemon.start()
        # Every thread now running is placed; any started later inherits its starter's place.
        self._place_threads(daemon.config.single_cpu)
        server = self._start_metrics()
        pinger = self._start_pinger()
        self.on_started(daemon)
        self.notifier.ready(status=self._refresh_status())
        try:
            while not self._stop.is_set():
                self._wake.wait(STATUS_REFRESH_SECONDS)
                self._wake.clear()
                if self._reload.is_set() and not self._stop.is_set():
                    self._reload.clear()
                    self.reload()
                self._refresh_status()
                # A burst's events arrive by the hundred: one refresh per short while is enough.
                self._stop.wait(STATUS_COALESCE_SECONDS)
        finally:
            log.info("stopping")
            self.notifier.stopping()
            if pinger is not None:
                pinger.stop()
            daemon.stop()
            if server is not None:
                server.stop()
            self.notifier.close()
        return 0

    def reload(self) -> None:
        self.notifier.reloading()
        if self.config_path is not None:
            try:
                new = load_config(self.config_path)
            except ConfigError as error:
                for problem in error.problems:
                    log.error("reload refused, keeping the running configuration: %s", problem)
            else:
                single_cpu_before = self.daemon.config.single_cpu
                self.daemon.apply_config(new)
                log.info("configuration reloaded", extra={"config": str(self.config_path)})
                if new.single_cpu != single_cpu_before:
                    self._place_threads(new.single_cpu)
        self.daemon.keys.reload()
        self.notifier.ready(status=self._refresh_status())

    @staticmethod
    def _place_threads(single_cpu: bool) -> None:
        try:
            log.info("%s", cpus.apply(single_cpu))
        except OSError as error:
            # Not fatal: the daemon works the same, at more CPU per file.
            log.warning(
                "cannot change which CPUs the daemon runs on (%s); a unit's SystemCallFilter "
                "must allow sched_setaffinity, or set single_cpu: false",
                error.strerror or error,
            )

    def _refresh_status(self) -> str:
        counts = self.daemon.journal.counts()
        if self.metrics is not None:
            self.metrics.set_queue_depth(counts)
        line = status_line(counts)
        ok, reason = self.daemon.health.check()
        if not ok:
            line = f"{line}; {reason}"
        if line != self._last_status:
            self._last_status = line
            self.notifier.status(line)
        return line

    def _start_metrics(self) -> MetricsServer | None:
        if self.metrics is None or self.daemon.config.metrics_listen is None:
            return None
        server = MetricsServer(
            self.daemon.config.metrics_listen, self.metrics, self.daemon.health.check
        )
        server.start()
        return server

    def _start_pinger(self) -> WatchdogPinger | None:
        interval = watchdog_interval_seconds()
        if interval is None or not self.notifier.enabled:
            return None
        pinger = WatchdogPinger(self.notifier, interval, self.daemon.health.making_progress)
        pinger.start()
        return pinger
