"""Deciding that a file is finished: it has stopped changing for ``settle_seconds``.

Sources call `Settler.notice` for every path they hear about; that only records the path and
wakes the settler's thread, so watchdog's event thread never does I/O. The thread looks at each
path when it is due: a path whose size, mtime, ctime or inode changed since the last look starts
its quiet period again; one that stayed quiet long enough, and that no process holds open for
writing, is handed on.

For local folders the inode's ctime tells how long a file has been quiet even on the first
look (the kernel sets it on every write and nobody can set it back), so files already sitting
in a folder at start-up are ready at once. On network shares (``polling``) the server's clock
stamps ctime, so only our own successive looks count there.
"""

from __future__ import annotations

import errno
import fcntl
import heapq
import itertools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# How soon to look again at a file that some process still holds open for writing.
WRITER_RECHECK_SECONDS = 0.25


def held_open_for_writing(path: Path) -> bool:
    """True when some process has the file open for writing (Linux file leases).

    A read lease can only be taken when nobody has the file open for writing. Without the
    right to take leases (not the file's owner and no CAP_LEASE) or on filesystems without
    lease support, this says False and the quiet period alone decides.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as error:
        return error.errno in (errno.EAGAIN, errno.EBUSY)
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Signature:
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, info: os.stat_result) -> Signature:
        return cls(info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


@dataclass
class _Pending:
    path: Path
    folder: Any  # opaque to the settler: handed back with the path
    settle_seconds: float
    trust_ctime: bool
    finished_hint: bool = False  # renamed into place (or closed, where that is trusted)
    signature: Signature | None = None
    changed_at: float = 0.0  # monotonic time of the last change we saw ourselves
    due: float = 0.0


@dataclass
class Settler:
    """Owns one thread; `on_ready(path, folder)` is called from it."""

    on_ready: Callable[[Path, Any], None]
    clock: Callable[[], float] = time.monotonic
    _pending: dict[Path, _Pending] = field(default_factory=dict)
    _heap: list[tuple[float, int, Path]] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _stopped: bool = False
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="settler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def notice(
        self,
        path: Path,
        folder: Any,
        settle_seconds: float,
        *,
        trust_ctime: bool = True,
        finished: bool = False,
    ) -> None:
        """Look at ``path`` soon. Cheap and thread-safe: called from event handlers.

        ``finished`` says the event itself means the writer is done (a rename into place):
        then the quiet period is skipped as long as no process holds the file open for writing.
        """
        with self._wake:
            entry = self._pending.get(path)
            if entry is not None:
                if finished and not entry.finished_hint:
                    entry.finished_hint = True
                    self._schedule(entry, self.clock())
                    self._wake.notify()
                # Otherwise already scheduled: its next look will see whatever changed.
                return
            entry = _Pending(path, folder, settle_seconds, trust_ctime, finished)
            self._schedule(entry, self.clock())
            self._pending[path] = entry
            self._wake.notify()

    def waiting(self) -> set[str]:
        """The paths waiting to settle, as strings (a scan skips them: each is looked at
        again anyway before it is handed on)."""
        with self._wake:
            return {str(path) for path in self._pending}

    def pending_count(self) -> int:
        with self._wake:
            return len(self._pending)

    def _schedule(self, entry: _Pending, due: float) -> None:
        entry.due = due
        heapq.heappush(self._heap, (due, next(self._counter), entry.path))

    def _run(self) -> None:
        while True:
            with self._wake:
                ready = self._take_due()
                while not ready and not self._stopped:
                    timeout = self._heap[0][0] - self.clock() if self._heap else None
                    self._wake.wait(timeout)
                    ready = self._take_due()
                if self._stopped:
                    return
            for entry in ready:
                try:
                    self._look(entry)
                except Exception:
                    # Whatever a dropper planted, the settler must go on for every other file.
                    log.exception("error while looking at %s", entry.path)
                    with self._wake:
                        self._pending.pop(entry.path, None)

    def _take_due(self) -> list[_Pending]:
        now = self.clock()
        due = []
        while self._heap and self._heap[0][0] <= now:
            when, _, path = heapq.heappop(self._heap)
            entry = self._pending.get(path)
            if entry is not None and entry.due == when:
                due.append(entry)
        return due

    def _look(self, entry: _Pending) -> None:
        next_look = self._next_look(entry)
        with self._wake:
            if next_look is None:
                del self._pending[entry.path]
            else:
                self._schedule(entry, next_look)
        if next_look is None:
            try:
                self.on_ready(entry.path, entry.folder)
            except Exception:
                log.exception("handing on %s failed", entry.path)

    def _next_look(self, entry: _Pending) -> float | None:
        """When to look again, or None when the path is ready (or gone)."""
        now = self.clock()
        try:
            info = entry.path.lstat()
        except FileNotFoundError:
            return None  # gone: the pipeline notes it and lets it go
        except OSError as error:
            log.warning("cannot look at %s: %s", entry.path, error.strerror)
            return None
        if not stat.S_ISREG(info.st_mode):
            return None  # the pipeline decides (and logs) what to do with other kinds
        signature = Signature.of(info)
        if entry.finished_hint:
            # The rename (or trusted close) came after the writes that made this signature,
            # whatever an earlier look saw. Once used, the hint is gone: a later change waits
            # for the quiet period like any other.
            entry.finished_hint = False
            if not held_open_for_writing(entry.path):
                return None
        if signature != entry.signature:
            entry.signature = signature
            entry.changed_at = now
        quiet_for = now - entry.changed_at
        if entry.trust_ctime:
            quiet_for = max(quiet_for, time.time() - info.st_ctime_ns / 1e9)
        if quiet_for < entry.settle_seconds:
            return now + (entry.settle_seconds - quiet_for)
        if held_open_for_writing(entry.path):
            return now + max(WRITER_RECHECK_SECONDS, min(entry.settle_seconds, 1.0))
        return None
