"""The outbox worker: delivers the notifications the journal holds, at least once each.

Its own thread claims due events (in a fleet, each is claimed by one daemon for a lease) and
hands them to a small pool, so a receiver that is slow, down, answering 500 or hanging holds
up nothing but its own deliveries: every attempt is bounded by ``notify_timeout_seconds``, and
the uploads never wait for the outbox. A failed attempt is tried again after a backoff with
jitter (or the receiver's ``Retry-After``), capped; an event still undelivered
``notify_give_up_seconds`` after it was written is marked dead, logged, counted and shown by
`status`. A 2xx ends it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from watcher.config.live import LiveConfig
from watcher.config.notifyconfig import NotifyTarget, masked_url
from watcher.notify.send import deliver
from watcher.state.journal import OutboxEvent
from watcher.state.journal_api import Journal

log = logging.getLogger(__name__)

DELIVERY_WORKERS = 4
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0
# When nothing is due, the outbox is looked at again at least this often (events written by
# another daemon of a fleet, or by a command, wake no one here).
IDLE_LOOK_SECONDS = 1.0
# More pending events than this: the receivers cannot keep up; said once per crossing.
PENDING_WARNING = 10_000
# While files are being uploaded, one delivery starts at most this often: a delivery costs
# about as much CPU as an upload, and the uploads come first (the rest follow at full speed
# once the burst is over).
BUSY_INTERVAL_SECONDS = 0.1


def retry_delay_seconds(attempts: int, retry_after: float | None) -> float:
    """Exponential backoff with ±25% jitter, capped; a receiver's Retry-After (capped too)
    when it asks for longer."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempts - 1))
    delay *= random.uniform(0.75, 1.25)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_CAP_SECONDS))
    return delay


class OutboxWorker:
    def __init__(
        self,
        live: LiveConfig,
        journal: Journal,
        on_event: Callable[[str, dict[str, Any]], None] = lambda kind, details: None,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.live = live
        # Whether files are on their way now (the deliveries then trickle).
        self.busy = busy
        self.journal = journal
        self.on_event = on_event
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(DELIVERY_WORKERS, thread_name_prefix="notify")
        self._in_flight = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._warned = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace_seconds: float) -> None:
        """No new deliveries; those under way get ``grace_seconds`` (the rest are delivered
        at the next start: their events stay pending in the journal)."""
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout=grace_seconds)
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace_seconds
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def _lease_seconds(self) -> float:
        return 2 * self.live.current.notify_timeout_seconds + 10

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except Exception:
                log.exception("outbox round failed; going on")
                self._stop.wait(1.0)
            wait = IDLE_LOOK_SECONDS
            due = self.journal.next_event_at() if not self._stop.is_set() else None
            if due is not None:
                wait = min(wait, max(0.0, due - time.time()))
            self.wake.wait(wait)
            self.wake.clear()

    def _round(self) -> None:
        free = DELIVERY_WORKERS - self.in_flight
        if free <= 0:
            return
        if self.busy():
            free = 1
            self._stop.wait(BUSY_INTERVAL_SECONDS)
        events = self.journal.claim_events(time.time(), self._lease_seconds(), free)
        for event in events:
            with self._lock:
                self._in_flight += 1
            try:
                self._pool.submit(self._deliver, event)
            except RuntimeError:  # stopping: left pending for the next start
                with self._lock:
                    self._in_flight -= 1
        if not self._warned and events:
            pending = self.journal.outbox_counts().get("pending", 0)
            if pending > PENDING_WARNING:
                self._warned = True
                log.warning(
                    "%d notifications wait in the outbox: the receivers do not keep up", pending
                )

    def _deliver(self, event: OutboxEvent) -> None:
        try:
            self._attempt(event)
        except Exception:
            log.exception("delivering a notification failed; it is tried again")
            self.journal.event_retry(event.id, event.attempts + 1, time.time() + 60, "internal")
        finally:
            with self._lock:
                self._in_flight -= 1
                full = self._in_flight == DELIVERY_WORKERS - 1
            if full:
                self.wake.set()  # a slot came free while every one was taken

    def _attempt(self, event: OutboxEvent) -> None:
        config = self.live.current
        target = self._target(event.target)
        shown = masked_url(event.target)
        if target is None:
            self.journal.event_dead(event.id, event.attempts, "its target is not configured")
            log.warning("notification to %s dropped: no longer configured", shown)
            self.on_event("notify", {"result": "dead"})
            return
        result = deliver(target, event.id, event.body, config.notify_timeout_seconds)
        attempts = event.attempts + 1
        if result.ok:
            self.journal.event_delivered(event.id)
            self.on_event("notify", {"result": "delivered"})
            return
        if time.time() - event.created_at >= config.notify_give_up_seconds:
            self.journal.event_dead(event.id, attempts, result.error)
            log.warning(
                "notification %s to %s given up after %d attempts: %s",
                event.id,
                shown,
                attempts,
                result.error,
                extra={"file": event.path},
            )
            self.on_event("notify", {"result": "dead"})
            return
        delay = retry_delay_seconds(attempts, result.retry_after)
        self.journal.event_retry(event.id, attempts, time.time() + delay, result.error)
        log.info(
            "notification to %s not delivered (%s); trying again in %.0fs",
            shown,
            result.error,
            delay,
            extra={"file": event.path},
        )
        self.on_event("notify", {"result": "retried"})

    def _target(self, url: str) -> NotifyTarget | None:
        config = self.live.current
        for target in (*config.notify, *(t for f in config.folders for t in f.notify)):
            if target.url == url:
                return target
        return None
