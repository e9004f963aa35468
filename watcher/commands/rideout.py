"""Waiting for the work in hand without a housekeeper (`scan`, `retry`), riding out an outage
of the API for at most --wait-for-api seconds.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from watcher.state.states import FileState

if TYPE_CHECKING:
    from watcher.service.daemon import Daemon


def install_signal_handlers(stop: threading.Event, reload: threading.Event) -> None:
    def on_stop(signum: int, frame: object) -> None:
        stop.set()

    def on_reload(signum: int, frame: object) -> None:
        reload.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)


def until_done_riding_out_outages(
    daemon: Daemon,
    wait_for_api: float,
    wait_until_idle: Callable[[], None],
    only: Collection[str] | None = None,
) -> None:
    """Wait for the work in hand; during an outage, probe as the daemon does (for at most
    ``wait_for_api`` seconds in all) and wait again for the files it resumes (all held files,
    or those of ``only``)."""
    deadline = time.monotonic() + wait_for_api
    wait_until_idle()
    # Only worth waiting for while files wait for it.
    while daemon.client.reachability.down and _held(daemon, only):
        if not daemon.wait_for_api(max(0.0, deadline - time.monotonic()), only):
            return
        wait_until_idle()


def _held(daemon: Daemon, only: Collection[str] | None) -> bool:
    return any(
        only is None or row.path in only for row in daemon.journal.rows_in((FileState.HELD,))
    )
