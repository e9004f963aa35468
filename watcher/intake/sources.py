"""Where candidate paths come from: watchdog observers, the start-up scan, periodic rescans.

Sources only say "look at this path"; they never decide anything. Event handlers only enqueue
(watchdog runs them on its own thread, and inotify drops events if that thread dawdles).
The periodic rescan is the safety net for what events miss: inotify queue overflows (which
watchdog skips silently), network shares, folders that came back.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
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
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

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
)


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
    ) -> None:
        self.folder = folder
        self.on_path = on_path
        self.on_tree = on_tree

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _FILE_EVENTS:
            return
        target = event.dest_path if event.event_type == "moved" else event.src_path
        if isinstance(target, bytes):
            target = os.fsdecode(target)
        if not target:
            return  # moved out of the folder
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


class FolderWatch:
    """One observer for one configured folder, re-armed if the folder goes and comes back."""

    def __init__(
        self,
        config: FolderConfig,
        on_path: Callable[[Path, Any, bool], None],
        on_tree: Callable[[Path, Any], None],
    ) -> None:
        self.config = config
        self._handler = _Handler(config, on_path, on_tree)
        self._observer: BaseObserver | None = None
        self.polling = config.polling
        self.missing = False
        # Why the daemon cannot write this folder's results (then it is not watched), or None.
        self.blocked: str | None = None

    @property
    def alive(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def start(self) -> bool:
        """Start watching; False (and logged) if the folder is not there right now."""
        self.stop()
        if not self.config.path.is_dir():
            return False
        try:
            self._observer = self._start_observer(self.polling)
        except OSError as error:
            if error.errno != errno.ENOSPC or self.polling:
                log.error("cannot watch %s: %s", self.config.path, error.strerror or error)
                return False
            log.warning(
                "inotify watch limit reached (fs.inotify.max_user_watches) while watching %s; "
                "falling back to polling for this folder",
                self.config.path,
            )
            self.polling = True
            self._observer = self._start_observer(True)
        return True

    def _start_observer(self, polling: bool) -> BaseObserver:
        observer: BaseObserver = PollingObserver(timeout=1.0) if polling else _native_observer()
        observer.name = f"watch {self.config.path.name}"
        observer.daemon = True
        observer.schedule(
            self._handler,
            str(self.config.path),
            recursive=self.config.recursive,
            event_filter=list(_WATCHED_EVENTS),
        )
        observer.start()
        return observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
