"""Sidecars of decided files, kept true from the journal by the scans and by `retry`.

The scans (`intake.scan`) say what they listed; this decides which sidecars to look at, and
`truth.SidecarKeeper` compares and rewrites them. After the start, a listing and the events
tell which sidecars exist or were written (no stat, no read of the others); at start, one stat
each tells which were changed after the journal recorded their file.
"""

from __future__ import annotations

import os
from pathlib import Path

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.pipeline.truth import SidecarKeeper
from watcher.state.journal_api import Journal
from watcher.state.sidecar import SUFFIX as SIDECAR_SUFFIX
from watcher.state.states import KEPT_STATES


class SidecarUpkeep:
    def __init__(self, live: LiveConfig, journal: Journal, keeper: SidecarKeeper) -> None:
        self.live = live
        self.journal = journal
        self.keeper = keeper

    def take_suspects(self) -> set[str]:
        return self.keeper.take_suspects()

    def during_walk(
        self,
        folder: FolderConfig,
        uploaded: list[tuple[str, float]],
        listed: dict[str, os.DirEntry[str]],
        suspects: set[str],
        initial: bool,
    ) -> None:
        """Write again from the journal the sidecars of uploaded files that are missing,
        damaged or say something else, in one directory a scan listed."""
        keeper = self.keeper
        beside = folder.sidecar_dir is None
        for key, recorded_at in uploaded:
            # Strings on this path, as in the walk: it runs once per uploaded file.
            location = key + SIDECAR_SUFFIX if beside else str(keeper.location(Path(key), folder))
            if beside and not initial:
                keeper.check_listed(key, folder, location in listed, location in suspects)
                continue
            try:
                if beside:
                    entry = listed.get(location)
                    info = entry.stat(follow_symlinks=False) if entry is not None else None
                else:
                    info = os.lstat(location)  # a mirror tree the walk did not list
            except OSError:
                info = None
            seen = (info.st_size, info.st_mtime_ns) if info is not None else None
            if beside and seen is not None and seen[1] <= int(recorded_at * 1e9):
                # Not touched since the journal recorded the file: as we wrote it. (After the
                # start, events and listings watch these: nothing to remember per sidecar.)
                continue
            keeper.check(key, location, folder, seen, recorded_at)

    def check_suspects(self, suspects: set[str]) -> None:
        """Sidecars an event said were written, in directories the pass did not list (an
        edit in place moves no directory's mtime): read and compared with the journal."""
        for location in suspects:
            key = location[: -len(SIDECAR_SUFFIX)]
            row = self.journal.get(key)
            if row is None or row.state not in KEPT_STATES:
                continue
            folder = self.live.current.folder_of(row.folder)
            if folder.sidecar_dir is not None:
                continue
            self.keeper.check_listed(key, folder, os.path.lexists(location), True)

    def keep_true(self, paths: list[str] | None = None) -> int:
        """Outside a scan (`retry`): the sidecars of decided files (all, or ``paths``),
        each looked at with one stat. Returns how many were written again."""
        keys = [row.path for row in self.journal.rows_in(KEPT_STATES)] if paths is None else paths
        repaired = 0
        for key in keys:
            row = self.journal.get(key)
            if row is None or row.state not in KEPT_STATES:
                continue
            folder = self.live.current.folder_of(row.folder)
            location = str(self.keeper.location(Path(key), folder))
            try:
                info = os.lstat(location)
                seen: tuple[int, int] | None = (info.st_size, info.st_mtime_ns)
            except OSError:
                seen = None
            repaired += self.keeper.check(key, location, folder, seen, row.updated_at)
        return repaired
