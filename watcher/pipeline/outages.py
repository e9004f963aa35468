"""Riding out an unreachable API: probes backed off while it is down, and the held files
resumed once it answers.

Housekeeping probes on `delay`'s schedule; a command without a housekeeper (`scan`, `retry`)
waits with `wait_for_api`, probing the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from watcher.config.live import LiveConfig
from watcher.heygen.client import HeyGenClient
from watcher.heygen.reachability import probe_delay_seconds
from watcher.pipeline.pipeline import Pipeline
from watcher.pipeline.resume import Resumer
from watcher.state.journal_api import Journal
from watcher.state.sidecar import iso_from_epoch
from watcher.state.states import FileState

log = logging.getLogger(__name__)

# While the API is unreachable, the log says so again every this many failed probes.
UNREACHABLE_REMINDER_PROBES = 30


class ApiProbe:
    def __init__(
        self,
        live: LiveConfig,
        journal: Journal,
        client: HeyGenClient,
        pipeline: Pipeline,
        resumer: Resumer,
        on_event: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.live = live
        self.journal = journal
        self.client = client
        self.pipeline = pipeline
        self.resumer = resumer
        self._on_event = on_event

    def delay(self) -> float:
        """Seconds until the next probe: backed off with each failed one."""
        outage = self.client.reachability.outage
        api = self.live.current.api
        failed = outage.probes if outage is not None else 1
        return probe_delay_seconds(failed, api.probe_base_seconds, api.probe_max_seconds)

    def probe(self, only: Collection[str] | None = None) -> bool:
        """One probe while the API is unreachable; True once it answers (uploads resume:
        every held file, or those of ``only``)."""
        reachability = self.client.reachability
        outage = reachability.outage
        if outage is None:
            return True
        failure = self.client.probe(outage.storage_url)
        if failure is not None:
            reachability.declare_down(failure)
            self.pipeline.outcome.record_outage()
            if outage.probes % UNREACHABLE_REMINDER_PROBES == 0:
                log.error(
                    "the API is still unreachable (since %s): %s",
                    iso_from_epoch(outage.since),
                    failure,
                )
            return False
        reachability.declare_up()
        self.journal.set_meta("api_unreachable", None)
        if not self.pipeline.auth_pause.active:
            self.journal.set_meta("uploads_paused", None)
        held = [
            row
            for row in self.journal.rows_in((FileState.HELD,))
            if only is None or row.path in only
        ]
        log.info(
            "the API answers again after %.0fs; resuming %d held file(s)",
            time.time() - outage.since,
            len(held),
        )
        self._on_event("api", {"unreachable": False})
        if not self.pipeline.auth_pause.active:
            self.resumer.resubmit(held)
        return True

    def wait_for_api(
        self, seconds: float, stop: threading.Event, only: Collection[str] | None = None
    ) -> bool:
        """Without a housekeeper (`scan`, `retry`): while the API is unreachable, probe it as
        the housekeeper does (backed off up to `probe_max_seconds`), for at most ``seconds``.
        True once it answers (the held files, or those of ``only``, are resumed), False when
        it did not in time or ``stop`` was set."""
        deadline = time.monotonic() + seconds
        while self.client.reachability.down:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop.wait(min(self.delay(), remaining)):
                return False
            self.probe(only)
        return True
