"""Noticing one path: what the watches, the walks and the scans hand on to the settler.

`Noticer.notice` is cheap (watchdog's thread calls it): a sidecar is reported to whoever keeps
sidecars true, an ignored name is dropped, anything else waits in the settler. A whole folder
moved in is walked on a small pool instead (`notice_tree`), never on watchdog's thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from watcher.config import FolderConfig
from watcher.intake import admission
from watcher.intake.settle import Settler
from watcher.state.sidecar import SUFFIX as SIDECAR_SUFFIX
from watcher.state.tree import walk_files

log = logging.getLogger(__name__)

# Walking folders moved in: bounded, so a burst of folders cannot make a thread each.
TREE_SCAN_WORKERS = 2


class Noticer:
    def __init__(
        self, settler: Settler, on_sidecar: Callable[[str], None], stop: threading.Event
    ) -> None:
        self.settler = settler
        self._on_sidecar = on_sidecar
        self._stop = stop
        self._tree_scans = ThreadPoolExecutor(TREE_SCAN_WORKERS, thread_name_prefix="scan-tree")

    def notice(self, path: Path, folder: FolderConfig, finished: bool = False) -> None:
        """Look at ``path`` once it settles. Cheap: called from watchdog's thread."""
        if path.name.endswith(SIDECAR_SUFFIX):
            # Someone (or we) wrote a sidecar: the next rescan compares it with the journal.
            self._on_sidecar(str(path))
            return
        relative = path.relative_to(folder.path) if path.is_relative_to(folder.path) else path
        if admission.screen_name(relative, folder.ignore, scripts=folder.template is not None):
            return
        self.settler.notice(
            path,
            folder,
            folder.settle_seconds,
            trust_ctime=not folder.polling,
            finished=finished,
        )

    def notice_tree(self, path: Path, folder: FolderConfig) -> None:
        # A whole folder moved in: walking it is I/O, so not on watchdog's thread.
        with contextlib.suppress(RuntimeError):  # shutting down: the next start scans anyway
            self._tree_scans.submit(self._scan_tree, path, folder)

    def stop(self) -> None:
        self._tree_scans.shutdown(wait=False, cancel_futures=True)

    def _scan_tree(self, root: Path, folder: FolderConfig) -> None:
        try:
            for entry in walk_files(root, folder.recursive):
                if self._stop.is_set():
                    return
                self.notice(Path(entry.path), folder)
        except Exception:
            log.exception("error while scanning %s", root)
