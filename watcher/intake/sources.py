"""Where candidate paths come from: watchdog observers, the start-up scan, periodic rescans.

Sources only say "look at this path"; they never decide anything. Event handlers only enqueue
(watchdog runs them on its own thread, and inotify drops events if that thread dawdles).
The periodic rescan is the safety net for what events miss: network shares, folders that
came back. When the kernel's inotify queue overflows, events are lost for every watch of the
observer; watchdog says so only in a log line (and then re-arms its recursive watches), so that
line is listened for and the daemon is told at once (`Observers.on_events_lost`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from watcher.config import FolderConfig

log = logging.getLogger(__name__)

# Events that may mean "a file has new content or times here" (`attrib`: touch, cp -p).
_FILE_EVENTS = {"created", "modified", "attrib", "closed", "moved"}
# Only these reach us: the filter becomes the inotify mask, so the kernel does not even report
# opens and reads (our own hashing and uploading would otherwise flood the event thread).
_WATCHED_EVENTS = (
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileClosedEvent,
    # A watched folder deleted: its watch ends, so the daemon looks at the folder at once.
    DirDeletedEvent,
)


# Where and how watchdog (7.1 and later) reports IN_Q_OVERFLOW.
OVERFLOW_LOGGER = "watchdog.observers.inotify_c"
OVERFLOW_MESSAGE = "Inotify queue overflowed"


class _OverflowListener(logging.Handler):
    """Hears watchdog's overflow warning; calls ``on_lost`` (on watchdog's reading thread,
    so it must only flag and wake)."""

    def __init__(self, on_lost: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_lost = on_lost

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(OVERFLOW_MESSAGE):
            self.on_lost()


def _native_observer() -> BaseObserver:
    """inotify with "full events" where available: a file moved in from outside the folder
    then arrives as a move (finished) instead of looking like a new, still-written file."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux: the platform's own observer
        return Observer()
    return InotifyObserver(generate_full_events=True)


class _Handler(FileSystemEventHandler):
    def __init__(
        self,
        folder: FolderConfig,
        on_path: Callable[[Path, Any, bool], None],
        on_tree: Callable[[Path, Any], None],
        on_root_gone: Callable[[], None],
    ) -> None:
        self.folder = folder
        self.on_path = on_path
        self.on_tree = on_tree
        self.on_root_gone = on_root_gone
        self.root = str(folder.path)

    def on_any_event(self, event: FileSystemEvent) -> None:
        # One observer thread serves every folder: an error here must not end it.
        try:
            self._handle(event)
        except Exception:
            log.exception("error while handling %s", event)

    def _handle(self, event: FileSystemEvent) -> None:
        source = os.fsdecode(event.src_path)
        if event.is_directory and source == self.root and event.event_type in ("deleted", "moved"):
            # The folder itself went (its watch ends with it): look again at once.
            self.on_root_gone()
            return
        if event.event_type not in _FILE_EVENTS:
            return
        target = event.dest_path if event.event_type == "moved" else event.src_path
        if isinstance(target, bytes):
            target = os.fsdecode(target)
        if not target:
            return  # moved out of the folder
        if not event.is_directory and target.rpartition("/")[2].startswith("."):
            # A hidden name is never looked at (`admission.screen_name`): among them the temp
            # files of our own sidecar writes, three events each, so they stop here.
            return
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                # A folder moved in arrives with its files already inside: no event for them.
                self.on_tree(Path(target), self.folder)
            return
        # A rename into place is how finished files arrive (rsync, browsers, mv); a close
        # after writing only where the folder trusts its writers to write in one go.
        finished = event.event_type == "moved" or (
            event.event_type == "closed" and self.folder.trust_close_write
        )
        self.on_path(Path(target), self.folder, finished)


class Observers:
    """One watchdog observer for every folder, as watchdog is meant to be used: each folder
    schedules and unschedules its own watch on it. An observer whose thread ended is replaced
    by a fresh one at the next `schedule`.

    Folders that poll (network shares, or an exhausted inotify watch limit) have no observer:
    the daemon polls them itself (`FolderWatch.polled`), with the scans' walk, which stats
    only directories whose stamp did not move. watchdog's polling observer stats every file
    every second: a third of a core at 20,000 files."""

    def __init__(self, on_events_lost: Callable[[], None] = lambda: None) -> None:
        self._lock = threading.Lock()
        self._native: BaseObserver | None = None
        # Listening from the first native observer on, until `stop`.
        self._overflow = _OverflowListener(on_events_lost)

    def schedule(
        self, handler: FileSystemEventHandler, path: Path, recursive: bool
    ) -> tuple[BaseObserver, ObservedWatch]:
        observer = self._observer()
        watch = observer.schedule(
            handler, str(path), recursive=recursive, event_filter=list(_WATCHED_EVENTS)
        )
        return observer, watch

    @staticmethod
    def unschedule(observer: BaseObserver, watch: ObservedWatch) -> None:
        with contextlib.suppress(KeyError):  # already gone
            observer.unschedule(watch)

    @staticmethod
    def alive(observer: BaseObserver, watch: ObservedWatch) -> bool:
        """The observer runs and the watch's emitter too (it ends when its folder is deleted)."""
        if not observer.is_alive():
            return False
        return any(emitter.watch == watch and emitter.is_alive() for emitter in observer.emitters)

    def _observer(self) -> BaseObserver:
        with self._lock:
            current = self._native
            if current is not None and current.is_alive():
                return current
            watchdog_log = logging.getLogger(OVERFLOW_LOGGER)
            # The overflow warning must reach the listener whatever the log level.
            if not watchdog_log.isEnabledFor(logging.WARNING):
                watchdog_log.setLevel(logging.WARNING)
            watchdog_log.addHandler(self._overflow)  # once: a handler is added only once
            fresh = _native_observer()
            fresh.name = "watch"
            fresh.daemon = True
            fresh.start()
            self._native = fresh
            return fresh

    def stop(self) -> None:
        with self._lock:
            observer, self._native = self._native, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        logging.getLogger(OVERFLOW_LOGGER).removeHandler(self._overflow)


class FolderWatch:
    """One configured folder's watch on the shared observer, re-armed when the folder goes
    and comes back or is replaced by another folder of the same name."""

    def __init__(
        self,
        config: FolderConfig,
        observers: Observers,
        on_path: Callable[[Path, Any, bool], None],
        on_tree: Callable[[Path, Any], None],
        on_root_gone: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.observers = observers
        self._handler = _Handler(config, on_path, on_tree, on_root_gone)
        self._scheduled: tuple[BaseObserver, ObservedWatch] | None = None
        self._identity: tuple[int, int] | None = None
        self.polling = config.polling
        self.missing = False
        # Why the daemon cannot write this folder's results (then it is not watched), or None.
        self.blocked: str | None = None

    @property
    def polled(self) -> bool:
        """Started, and polled by the daemon (no observer): see `Observers`."""
        return self.polling and self._identity is not None

    @property
    def alive(self) -> bool:
        return self.polled or (self._scheduled is not None and Observers.alive(*self._scheduled))

    @property
    def replaced(self) -> bool:
        """The folder at the configured path is not the one being watched (it was moved away,
        or deleted and made again, perhaps at once: the old watch follows the old folder)."""
        current = _identity(self.config.path)
        return current is not None and current != self._identity

    def start(self) -> bool:
        """Start watching; False (and logged) if the folder is not there right now."""
        self.stop()
        identity = _identity(self.config.path)
        if identity is None:
            return False
        if not self.polling:
            try:
                self._scheduled = self.observers.schedule(
                    self._handler, self.config.path, self.config.recursive
                )
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    log.error("cannot watch %s: %s", self.config.path, error.strerror or error)
                    return False
                log.warning(
                    "inotify watch limit reached (fs.inotify.max_user_watches) while watching "
                    "%s; falling back to polling for this folder",
                    self.config.path,
                )
                self.polling = True
        # Taken before the watch began: a folder replaced meanwhile shows as replaced.
        self._identity = identity
        return True

    def stop(self) -> None:
        self._identity = None
        if self._scheduled is not None:
            Observers.unschedule(*self._scheduled)
            self._scheduled = None


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the directory at ``path``; None when there is none."""
    try:
        info = path.stat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return None
    return (info.st_dev, info.st_ino)
