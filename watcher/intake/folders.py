"""The folders being watched: one `FolderWatch` each, armed, re-armed and dropped.

The list is touched by the main thread (start, reload) and by housekeeping (root checks),
always under `FolderWatches.lock`. A folder whose results cannot be written is not taken
(`blocked`); one that went away is waited for (`missing`); one moved away, replaced or whose
watch ended is watched again, and its files are noticed anew.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watcher.config import Config, FolderConfig
from watcher.config.live import LiveConfig
from watcher.intake.sources import FolderWatch, Observers
from watcher.state.claim import FolderClaims, FolderTaken
from watcher.state.writable import unwritable

log = logging.getLogger(__name__)


class FolderWatches:
    def __init__(
        self,
        live: LiveConfig,
        observers: Observers,
        notice: Callable[..., None],
        notice_tree: Callable[[Path, FolderConfig], None],
        on_root_gone: Callable[[], None],
    ) -> None:
        self.live = live
        self.observers = observers
        self._notice = notice
        self._notice_tree = notice_tree
        self._on_root_gone = on_root_gone
        self.watches: list[FolderWatch] = []
        self.lock = threading.Lock()

    # -- views (read by scans and health) ----------------------------------------------------
    def blocked_paths(self) -> set[Path]:
        return {w.config.path for w in self.watches if w.blocked is not None}

    def polling_paths(self) -> set[Path]:
        return {w.config.path for w in self.watches if w.polling}

    def polled(self) -> list[FolderConfig]:
        """Folders housekeeping polls (no inotify watch), that are taken."""
        with self.lock:
            return [w.config for w in self.watches if w.polled and w.blocked is None]

    def any_polled(self) -> bool:
        return any(w.polled for w in self.watches)

    def missing(self) -> list[str]:
        return [str(w.config.path) for w in self.watches if w.missing]

    def blocked(self) -> list[str]:
        return [str(w.config.path) for w in self.watches if w.blocked is not None]

    # -- life cycle --------------------------------------------------------------------------
    def watch_all(self) -> None:
        """At start: a watch for every configured folder (a missing one is waited for)."""
        with self.lock:
            for folder in self.live.current.folders:
                folder_watch = self._folder_watch(folder)
                if not self._open(folder_watch) and folder_watch.blocked is None:
                    log.warning(
                        "folder is missing; watching for it to come back",
                        extra={"folder": str(folder.path)},
                    )
                    folder_watch.missing = True
                self.watches.append(folder_watch)

    def stop(self) -> None:
        with self.lock:
            for folder_watch in self.watches:
                folder_watch.stop()
        self.observers.stop()

    def apply(self, new: Config, claims: FolderClaims) -> None:
        """A reloaded configuration (already in force): folders come and go, each new one
        claimed for this state directory first (unless the journal is shared)."""
        wanted = {folder.path: folder for folder in new.folders}
        with self.lock:
            for folder_watch in list(self.watches):
                if wanted.get(folder_watch.config.path) != folder_watch.config:
                    folder_watch.stop()
                    self.watches.remove(folder_watch)
                    if folder_watch.config.path not in wanted:
                        log.info(
                            "folder no longer watched",
                            extra={"folder": str(folder_watch.config.path)},
                        )
            watched = {folder_watch.config.path for folder_watch in self.watches}
            for folder in new.folders:
                if folder.path in watched:
                    continue
                try:
                    if new.journal_url is None:
                        claims.claim(folder.path)
                except FolderTaken as error:
                    log.error("folder not watched: %s", error, extra={"folder": str(folder.path)})
                    continue
                folder_watch = self._folder_watch(folder)
                opened = self._open(folder_watch)
                folder_watch.missing = not opened and folder_watch.blocked is None
                self.watches.append(folder_watch)
                if folder_watch.blocked is None:
                    log.info("watching folder", extra={"folder": str(folder.path)})
                    self._notice_tree(folder.path, folder)

    def check_roots(self) -> None:
        """Housekeeping's look at each folder: gone, back, replaced, its watch ended, or
        writable again; each change is said once and the folder's files noticed anew."""
        with self.lock:
            watches = list(self.watches)
        for folder_watch in watches:
            root = folder_watch.config.path
            present = root.is_dir()
            if folder_watch.blocked is not None:
                if self._open(folder_watch):
                    self._notice_tree(root, folder_watch.config)
                continue
            if folder_watch.missing and present:
                log.info("folder is back; watching it again", extra={"folder": str(root)})
            elif not folder_watch.missing and not present:
                log.warning(
                    "folder disappeared; waiting for it to come back", extra={"folder": str(root)}
                )
                folder_watch.stop()
                folder_watch.missing = True
                continue
            elif present and folder_watch.replaced:
                log.warning(
                    "folder was replaced (moved away, or deleted and made again); "
                    "watching the new one",
                    extra={"folder": str(root)},
                )
            elif present and not folder_watch.alive:
                log.warning(
                    "watch ended (the folder was deleted and made again, or the observer "
                    "stopped); watching it again",
                    extra={"folder": str(root)},
                )
            else:
                continue
            opened = self._open(folder_watch)
            folder_watch.missing = not opened and folder_watch.blocked is None
            if opened:
                self._notice_tree(root, folder_watch.config)

    def _folder_watch(self, folder: FolderConfig) -> FolderWatch:
        return FolderWatch(
            folder, self.observers, self._notice, self._notice_tree, on_root_gone=self._on_root_gone
        )

    def _open(self, folder_watch: FolderWatch) -> bool:
        """Start watching; False if the folder is missing or the results could not be written.

        A folder whose sidecars (or moves, or videos) cannot be written is not taken at all:
        uploading its files would only end in a failure per file. Said once, at error level.
        """
        folder = folder_watch.config
        templates = self.live.current.templates
        problem = unwritable(folder, templates) if folder.path.is_dir() else None
        if problem is not None:
            if problem != folder_watch.blocked:
                log.error(
                    "folder not taken: cannot write to %s; under systemd, add it to "
                    "ReadWritePaths= in the unit's drop-in and restart the service",
                    problem,
                    extra={"folder": str(folder.path)},
                )
            folder_watch.blocked = problem
            return False
        if folder_watch.blocked is not None:
            log.info("folder is writable now; taking its files", extra={"folder": str(folder.path)})
            folder_watch.blocked = None
        return folder_watch.start()
