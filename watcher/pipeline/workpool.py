"""A fixed set of worker threads with per-path bookkeeping.

A path is never worked on by two threads at once: seen again while in flight, it is looked at
once more when the current round ends. A path can be handed off (a v3 batch carries its upload
on) and stays in flight until released. Internal tasks (video steps, batch PUTs) share the
threads. `busy` counts everything queued or running, so "idle" means really idle.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from watcher.config import FolderConfig
from watcher.heygen.throttle import Interrupted
from watcher.state.journal import ClaimLost, FileRow

log = logging.getLogger(__name__)


@dataclass
class Work:
    path: Path
    folder: FolderConfig
    row: FileRow | None = None  # a retry or a resume of this journal row


@dataclass
class Task:
    """Internal work for the pool: a video step, a batch item's PUT, a batch completion."""

    run: Callable[[], None]
    what: str


class WorkerProgress(Protocol):
    """Told when a worker takes a task and when it is done (a watchdog's view of liveness)."""

    def begin(self) -> None: ...

    def end(self) -> None: ...


class _Unwatched:
    """No watchdog: nothing to tell."""

    def begin(self) -> None:
        return None

    def end(self) -> None:
        return None


def unwatched() -> WorkerProgress:
    return _Unwatched()


@dataclass
class WorkPool:
    size: int
    process: Callable[[Work], None]
    renotice: Callable[[Path, FolderConfig], None]
    progress: WorkerProgress = field(default_factory=unwatched)
    # Told of an error nothing expected while working on a file (after it is logged with its
    # traceback), so the file can be put where a retry will find it.
    on_unexpected: Callable[[Path, Exception], None] = lambda path, error: None
    # Told when the work on a path ends (for now): a shared journal lets its claim go.
    on_finished: Callable[[Path], None] = lambda path: None
    # Held while a file is worked on: the adaptive bound on uploads in flight (the pool's
    # threads are its maximum). Internal tasks do not take one: they carry on work whose
    # file already holds or held a slot.
    upload_slot: Callable[[], AbstractContextManager[None]] = nullcontext
    _queue: queue.Queue[Work | Task | None] = field(default_factory=queue.Queue)
    _handed_off: set[Path] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _in_flight: set[Path] = field(default_factory=set)
    _again: dict[Path, Work] = field(default_factory=dict)
    _queued: set[Path] = field(default_factory=set)
    _workers: list[threading.Thread] = field(default_factory=list)
    _idle: threading.Condition = field(default_factory=threading.Condition)
    _busy: int = 0
    _accepting: bool = True

    def start(self) -> None:
        for number in range(self.size):
            worker = threading.Thread(target=self._work, name=f"worker-{number}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def submit(self, path: Path, folder: FolderConfig, *, row: FileRow | None = None) -> None:
        with self._lock:
            if not self._accepting:
                return
            if path in self._in_flight:
                # Seen again while being processed: look once more when this round ends.
                self._again[path] = Work(path, folder)
                return
            if path in self._queued:
                return
            self._queued.add(path)
        with self._idle:
            self._busy += 1
        self._queue.put(Work(path, folder, row))

    def queued(self) -> set[str]:
        """Paths waiting for a worker, not yet started (a worker reads the file as it is
        when it starts, so a scan need not look at these)."""
        with self._lock:
            return {str(path) for path in self._queued}

    def run_task(self, run: Callable[[], None], what: str) -> bool:
        """Queue internal work; False (and nothing queued) once shutting down."""
        with self._lock:
            if not self._accepting:
                return False
        with self._idle:
            self._busy += 1
        self._queue.put(Task(run, what))
        return True

    def hand_off(self, path: Path) -> None:
        """The file's upload continues elsewhere (a batch): it stays in flight until
        `release` is called, so it is neither processed twice nor counted as idle."""
        with self._lock:
            self._handed_off.add(path)

    def release(self, path: Path) -> None:
        """The path's work is over. Idempotent: a second release of the same round does
        nothing, so accounting can never go wrong however many code paths end it."""
        self._finished(path)

    def stop_accepting(self) -> None:
        with self._lock:
            self._accepting = False

    def join(self, timeout: float) -> bool:
        """Let queued and in-flight work finish for up to ``timeout``; True if it all did."""
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        return not any(worker.is_alive() for worker in self._workers)

    def drain_queue(self) -> None:
        """Drop work not yet started (shutdown): the journal still has it for the next start."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Task):
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()
            elif item is not None:
                self._finished(item.path)

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    @property
    def busy(self) -> int:
        with self._idle:
            return self._busy

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.progress.begin()
            try:
                self._handle(item)
            finally:
                self.progress.end()

    def _handle(self, item: Work | Task) -> None:
        if isinstance(item, Task):
            self._run_task(item)
            return
        with self._lock:
            self._queued.discard(item.path)
            self._in_flight.add(item.path)
        try:
            with self.upload_slot():
                self.process(item)
        except Interrupted:
            log.info("stopped while working on %s; it resumes at the next start", item.path)
        except ClaimLost as error:
            # Another daemon of the fleet carries the file on; nothing here is a failure.
            log.warning("%s; dropping the work in hand", error, extra={"file": error.path})
        except Exception as error:
            log.exception("unexpected error while processing %s", item.path)
            try:
                self.on_unexpected(item.path, error)
            except Exception:
                log.exception("could not set %s aside for a retry", item.path)
        finally:
            with self._lock:
                handed_off = item.path in self._handed_off
            if not handed_off:
                self._finished(item.path)

    def _run_task(self, task: Task) -> None:
        try:
            task.run()
        except Interrupted:
            log.info("stopped during %s; it resumes at the next start", task.what)
        except ClaimLost as error:
            # The error names the file whose claim was lost.
            log.warning("%s; dropping the work in hand", error, extra={"file": error.path})
        except Exception:
            log.exception("unexpected error during %s", task.what)
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _finished(self, path: Path) -> None:
        with self._lock:
            # A path is counted once while queued or in flight (never both: seen again while
            # in flight, it waits in `_again`), so it is uncounted once, here.
            owned = path in self._in_flight or path in self._queued
            self._handed_off.discard(path)
            self._in_flight.discard(path)
            self._queued.discard(path)
            again = self._again.pop(path, None) if owned else None
        if not owned:
            return
        try:
            self.on_finished(path)
        except Exception:
            # Shutting down during a database outage: the claim lapses with its lease.
            log.warning("could not release the claim on %s", path, exc_info=True)
        if again is not None:
            self.renotice(again.path, again.folder)
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()
