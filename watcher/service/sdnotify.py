"""Tell systemd how the daemon is doing (sd_notify), without linking libsystemd.

The protocol is one datagram of ``KEY=value`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET``. Outside systemd (a terminal, the tests, ``Type=simple``) the variable is
unset and every call here does nothing, so callers never need to check.

`WatchdogPinger` answers ``WatchdogSec=`` only while the pipeline makes progress: a process whose
threads are alive but whose upload workers are stuck should be restarted, not kept alive by a
timer that pings regardless.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _socket_address(path: str) -> str:
    # A leading "@" names a socket in the abstract namespace, which the kernel spells with NUL.
    if path.startswith("@"):
        return "\0" + path[1:]
    return path


def _format(fields: Mapping[str, str | int]) -> bytes:
    # The protocol is line-based: a newline inside a value would start a bogus field.
    lines = [f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items()]
    return "\n".join(lines).encode("utf-8")


class Notifier:
    """Sends state changes to systemd; a no-op when ``NOTIFY_SOCKET`` is unset or empty."""

    def __init__(self, socket_path: str | None = None) -> None:
        path = os.environ.get("NOTIFY_SOCKET") if socket_path is None else socket_path
        self._address = _socket_address(path) if path else None
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str | int) -> None:
        """Send one message, e.g. ``send(READY=1, STATUS="3 queued")``. Never raises."""
        if self._address is None or not fields:
            return
        message = _format(fields)
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    # Never let a full socket buffer stall the daemon's threads.
                    self._socket.setblocking(False)
                self._socket.sendto(message, self._address)
            except OSError as error:
                # Monitoring must not take the daemon down; systemd's own timeouts will tell.
                log.debug("sd_notify to %s failed: %s", self._address, error)
                self._close_locked()

    def ready(self, status: str | None = None) -> None:
        if status is None:
            self.send(READY=1)
        else:
            self.send(READY=1, STATUS=status)

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def watchdog(self) -> None:
        self.send(WATCHDOG=1)

    def reloading(self) -> None:
        """Start of a reload; send `ready` when it is done.

        systemd 253+ (``Type=notify-reload``) matches the reload by the monotonic timestamp;
        older versions ignore the extra field.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self) -> None:
        self.send(STOPPING=1)

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval_seconds(environ: Mapping[str, str] = os.environ) -> float | None:
    """How often to ping: half of ``WATCHDOG_USEC``, as sd_watchdog_enabled(3) advises.

    None when no watchdog is configured, or when ``WATCHDOG_PID`` names another process (the
    variables were inherited from a parent that systemd watches, not meant for us).
    """
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


class WatchdogPinger:
    """A thread that sends ``WATCHDOG=1`` every ``interval`` seconds while ``progress_ok()``.

    When ``progress_ok`` returns False (or raises) the pings stop, so systemd's watchdog fires
    and ``Restart=on-failure`` starts a fresh process; they resume if it recovers before that.
    """

    def __init__(
        self,
        notifier: Notifier,
        interval: float,
        progress_ok: Callable[[], bool] = lambda: True,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"watchdog interval must be positive, not {interval}")
        self.notifier = notifier
        self.interval = interval
        self.progress_ok = progress_ok
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._withholding = False

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the watchdog pinger is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        # Ping first, then wait: the first ping must not come a whole interval late.
        while not self._stop.is_set():
            if self._healthy():
                self.notifier.watchdog()
            self._stop.wait(self.interval)

    def _healthy(self) -> bool:
        try:
            healthy = bool(self.progress_ok())
        except Exception:
            log.exception("progress check failed; treating the pipeline as stuck")
            healthy = False
        self._log_transition(healthy)
        return healthy

    def _log_transition(self, healthy: bool) -> None:
        # One line per change, not one per interval: the journal should show when it began.
        if not healthy and not self._withholding:
            log.warning("the pipeline is making no progress; withholding watchdog pings")
        elif healthy and self._withholding:
            log.info("the pipeline is making progress again; watchdog pings resume")
        self._withholding = not healthy
