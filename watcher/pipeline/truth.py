"""The sidecar is a view of the journal, kept true.

A person or a sync tool may delete, truncate or edit the sidecar of a decided file (uploaded,
rejected, failed for good); the journal still knows the truth, so the sidecar is written again
from it, never by uploading (or sniffing) again.

Cheap enough for every rescan: whether a sidecar exists comes from the directory listing the
walk already made; a rescan reads a sidecar only when it is missing or an event said it was
written since (no stat of the others). At start, and for sidecars in a `sidecar_dir` mirror
the walk does not list, one stat each: a sidecar is read when its stat changed since this
process last saw it, or (the first time) when it was modified after the journal last recorded
the file, i.e. by someone else.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from watcher.config import FolderConfig
from watcher.pipeline.record import Sidecars
from watcher.state import sidecar
from watcher.state.journal_api import Journal
from watcher.state.placement import sidecar_for
from watcher.state.states import KEPT_STATES

log = logging.getLogger(__name__)

# What the sidecar must say as the journal does, by its status; `uploaded_at`, the video part
# and a rejection's `allowed_types` (from today's config) may differ in how they were written
# and are not compared.
_COMPARED: dict[str, tuple[str, ...]] = {
    "uploaded": (
        "status",
        "file",
        "size",
        "sha256",
        "content_type",
        "asset_id",
        "url",
        "protocol",
        "mtime_ns",
    ),
    "rejected": ("status", "file", "size", "error", "detected_type", "mtime_ns"),
    "failed": ("status", "file", "size", "error", "attempts", "mtime_ns"),
}
# (size, mtime_ns) of a sidecar, as os.stat gives them.
SidecarStat = tuple[int, int]


def disagreement(document: dict[str, Any] | None, truth: dict[str, Any]) -> str | None:
    """Why ``document`` does not say what the journal says, or None when it does."""
    if document is None:
        return "missing or damaged"
    for name in _COMPARED[truth["status"]]:
        if document.get(name) != truth.get(name):
            return f"its {name} differs from the journal's"
    return None


class SidecarKeeper:
    def __init__(self, journal: Journal, sidecars: Sidecars) -> None:
        self.journal = journal
        self.sidecars = sidecars
        # Sidecars found (or written) true by this process, by their stat.
        self._known_true: dict[str, SidecarStat] = {}
        # Sidecars an event said were written since the last rescan (watchdog's thread adds).
        self._suspects: set[str] = set()
        self._suspects_lock = threading.Lock()

    def suspect(self, location: str) -> None:
        with self._suspects_lock:
            self._suspects.add(location)

    def take_suspects(self) -> set[str]:
        """The sidecars written since the last call (a rescan takes them all at its start)."""
        with self._suspects_lock:
            taken, self._suspects = self._suspects, set()
        return taken

    def check_listed(self, key: str, folder: FolderConfig, present: bool, written: bool) -> bool:
        """A rescan's look, with no stat: a missing sidecar is written again; one an event
        said was written is read and compared."""
        if not present:
            return self.repair(Path(key), folder, read=False)
        if written:
            return self.repair(Path(key), folder)
        return False

    def location(self, path: Path, folder: FolderConfig) -> Path:
        return sidecar_for(path, folder)

    def check(
        self,
        key: str,
        location: str,
        folder: FolderConfig,
        seen: SidecarStat | None,
        recorded_at: float,
    ) -> bool:
        """Look at the sidecar (at ``location``) of the decided file ``key``, ``seen`` as it
        is on disk (None: absent); ``recorded_at`` is when the journal last changed the file's
        row. True when it had to be written again. Strings, not Paths: a rescan calls this
        once per uploaded file."""
        if seen is not None:
            if self._known_true.get(location) == seen:
                return False
            if location not in self._known_true and seen[1] <= int(recorded_at * 1e9):
                # Not touched since the journal recorded the file: ours, as we wrote it.
                self._known_true[location] = seen
                return False
        return self.repair(Path(key), folder, read=seen is not None)

    def repair(self, path: Path, folder: FolderConfig, *, read: bool = True) -> bool:
        """Compare the sidecar with the journal and write the journal's truth if they differ."""
        row = self.journal.get(str(path))
        if row is None or row.state not in KEPT_STATES:
            return False
        truth = self.sidecars.kept_document(row)
        if truth is None:
            return False
        location = self.location(path, folder)
        # Stat before reading: a change made after the stat shows up as a new stat next time.
        before = _stat(location)
        document = sidecar.read(location) if read else None
        reason = disagreement(document, truth)
        if reason is None:
            if before is not None:
                self._known_true[str(location)] = before
            return False
        written = self.sidecars.write(path, folder, truth)
        if written is None:
            return False
        log.warning(
            "sidecar %s; written again from the journal (nothing uploaded)",
            reason,
            extra={"file": str(path)},
        )
        self._known_true[str(location)] = (written.st_size, written.st_mtime_ns)
        return True


def _stat(location: Path) -> SidecarStat | None:
    try:
        info = location.stat()
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns)
