"""Scans: the walks that notice what the watches did not (a start, a rescan, a poll, a full
walk after lost events), and adoption of files whose sidecar says they are done.

Folder by folder and directory by directory: memory holds one directory's listing and one
batch of adopted rows, never the tree. A periodic pass lists only directories whose stamp
moved since the last pass: files created, deleted or renamed behind inotify's back move their
directory's mtime; a file rewritten in place does not, but inotify reports that (IN_MODIFY,
IN_CLOSE_WRITE) and a lost event shows as a queue overflow, which asks for a full pass.

What a walk finds about sidecars of uploaded files is handed to `SidecarHooks` (kept true by
the pipeline); new or changed files go to ``notice``.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.intake import admission
from watcher.intake.folders import FolderWatches
from watcher.state.journal import FileRow
from watcher.state.journal_api import Journal
from watcher.state.rows import adoptable_row, read_listed_sidecar
from watcher.state.sidecar import SHORT_NAME_BYTES
from watcher.state.sidecar import SUFFIX as SIDECAR_SUFFIX
from watcher.state.states import KEPT_STATES
from watcher.state.tree import Listing, TreeStamps, walk_changed

log = logging.getLogger(__name__)

# Adopted rows written to the journal per transaction while a scan walks a large tree.
ADOPT_BATCH = 5000
# Room a sidecar's suffix takes in a name whose sidecar is `<name>.asset.json` (longer names
# have shortened sidecar names: `watcher.state.names`).
SUFFIX_ROOM = len(SIDECAR_SUFFIX)


class SidecarHooks(Protocol):
    """What a walk tells whoever keeps the sidecars of uploaded files true."""

    def take_suspects(self) -> set[str]:
        """Sidecars an event said were written since the last pass."""
        ...

    def during_walk(
        self,
        folder: FolderConfig,
        uploaded: list[tuple[str, float]],
        listed: dict[str, os.DirEntry[str]],
        suspects: set[str],
        initial: bool,
    ) -> None:
        """One directory's uploaded files (path, when recorded) and the sidecars listed."""
        ...

    def check_suspects(self, suspects: set[str]) -> None:
        """Suspects in directories the pass did not list."""
        ...


@dataclass
class _Tally:
    """What one scan pass saw: files stat'ed, files noticed, rows to adopt (in batches)."""

    seen: int = 0
    noticed: int = 0
    adopted: list[FileRow] = field(default_factory=list)
    # Directories whose every file is recorded once `adopted` is written.
    clean: list[tuple[TreeStamps, Listing]] = field(default_factory=list)
    adopted_total: int = 0
    # The journal had no row when the pass began (a first start): nothing to look up.
    journal_empty: bool = False


class Scanner:
    def __init__(
        self,
        live: LiveConfig,
        journal: Journal,
        folders: FolderWatches,
        notice: Callable[[Path, FolderConfig], None],
        waiting: Callable[[], set[str]],
        sidecars: SidecarHooks,
        stop: threading.Event,
    ) -> None:
        self.live = live
        self.journal = journal
        self.folders = folders
        self._notice = notice
        # Files the daemon already holds, settling or queued: looking again costs a stat each.
        self._waiting = waiting
        self.sidecars = sidecars
        self._stop = stop
        # Directory stamps of the last pass, and of the polls of polling folders.
        self.stamps = TreeStamps()
        self.poll_stamps = TreeStamps()
        # Files the last scan saw, and how many of them it handed on (the rest needed nothing).
        self.scanned = 0
        self.scan_noticed = 0
        self.scan_seconds = 0.0
        self.pass_seconds = 0.0  # the last periodic pass's
        self.full_scans = 0  # asked for by lost events, or after a clean stop
        # Files the start-up scan stat'ed (after a clean stop: those in changed directories).
        self.start_scanned = 0
        self._full_scan = threading.Event()
        self._full_scan_why: tuple[int, str] = (logging.INFO, "")

    # -- full walks, asked for ---------------------------------------------------------------
    def want_full_scan(self, level: int, why: str) -> None:
        """Every file of every folder is to be looked at by housekeeping's next round (said at
        ``level``). Cheap: called from watchdog's thread; repeated asks make one walk."""
        self._full_scan_why = (level, why)
        self._full_scan.set()

    def full_scan_if_wanted(self) -> bool:
        """The full walk, if one was asked for since the last; True if it ran."""
        if not self._full_scan.is_set():
            return False
        self._full_scan.clear()
        log.log(*self._full_scan_why)
        self.scan_all(full=True)
        self.full_scans += 1
        log.info("walked every folder: %d file(s) in %.1f s", self.scanned, self.scan_seconds)
        return True

    # -- passes ------------------------------------------------------------------------------
    def scan_all(self, *, initial: bool = False, full: bool = False, trusted: bool = False) -> int:
        """Notice every file whose size or mtime differs from what the journal recorded.

        Files whose sidecar from an earlier run still matches are adopted into the journal
        right here, in batches, instead of going through the pipeline one by one: a restart
        over a large, finished backlog costs a directory walk and a read of each sidecar.
        A periodic pass (neither ``initial`` nor ``full``) lists only the directories whose
        stamp moved; ``trusted`` lets the start's pass do so too (stamps kept from a clean
        stop). Returns how many files were noticed.
        """
        started = time.monotonic()
        # Sidecars written since the last look (events): these are read and compared.
        suspects = self.sidecars.take_suspects()
        waiting = self._waiting()
        tally = _Tally(journal_empty=initial and not self.journal.counts())
        stamps = self.stamps
        stamps.skipped = stamps.listed = 0
        blocked = self.folders.blocked_paths()
        polled = self.folders.polling_paths()
        plans: list[tuple[FolderConfig, TreeStamps, bool]] = []
        for folder in self.live.current.folders:
            if not folder.path.is_dir() or folder.path in blocked:
                continue
            # A `sidecar_dir` mirror is not listed by the walk: its sidecars are looked at
            # one by one beside their files, so such a folder is walked in full. So is a
            # folder that polls: no inotify reports a file rewritten in place there.
            trust = (trusted or not (initial or full)) and folder.sidecar_dir is None
            trust = trust and folder.path not in polled
            # The polls go on from the stamps this pass leaves.
            kept = self.poll_stamps if folder.path in polled else stamps
            plans.append((folder, kept, trust))
        self._walk(plans, suspects, waiting, initial, tally)
        self.sidecars.check_suspects(suspects)
        if tally.adopted_total:
            log.info("adopted %d file(s) already recorded in their sidecars", tally.adopted_total)
        if tally.noticed and not initial:
            log.info("rescan found %d new or changed file(s)", tally.noticed)
        self.scanned, self.scan_noticed = tally.seen, tally.noticed
        self.scan_seconds = time.monotonic() - started
        if initial:
            self.start_scanned = self.scanned
        elif not full:
            self.pass_seconds = self.scan_seconds
        return tally.noticed

    def poll_folders(self) -> int:
        """One look at the folders that poll: only directories whose stamp moved since the
        last look are listed, and only their new or changed files noticed. A file rewritten
        in place moves no directory's stamp: the periodic rescan walks these folders in full
        (see `scan_all`). Returns how many files were noticed."""
        polled = self.folders.polled()
        if not polled:
            return 0
        waiting = self._waiting()
        tally = _Tally()
        stamps = self.poll_stamps
        stamps.skipped = stamps.listed = 0
        self._walk([(folder, stamps, True) for folder in polled], set(), waiting, False, tally)
        return tally.noticed

    # -- the walk ----------------------------------------------------------------------------
    def _walk(
        self,
        plans: list[tuple[FolderConfig, TreeStamps, bool]],
        suspects: set[str],
        waiting: set[str],
        initial: bool,
        tally: _Tally,
    ) -> None:
        """Each (folder, its stamps, whether to trust them): directory by directory."""
        try:
            for folder, stamps, trust in plans:
                for listing in walk_changed(folder.path, folder.recursive, stamps, trust=trust):
                    if self._stop.is_set():
                        return
                    if self._scan_directory(
                        folder, listing.files, suspects, waiting, initial, tally
                    ):
                        if tally.adopted:
                            # Trusted once the rows are written; the files are not kept.
                            tally.clean.append((stamps, replace(listing, files=[])))
                        else:
                            stamps.keep(listing)
                    if len(tally.adopted) >= ADOPT_BATCH:
                        self._adopt(tally)
        finally:
            self._adopt(tally)

    def _scan_directory(
        self,
        folder: FolderConfig,
        entries: list[os.DirEntry[str]],
        suspects: set[str],
        waiting: set[str],
        initial: bool,
        tally: _Tally,
    ) -> bool:
        """One directory's files: noticed when new or changed, adopted when their sidecar
        says they are done, uploaded ones' sidecars kept true. True when every file there is
        recorded as it is (once the adopted rows are written): its stamp can be trusted."""
        clean = True
        scripts = folder.template is not None
        root_length = len(str(folder.path)) + 1
        # Sidecars seen by the walk, and uploaded files whose sidecar is to be looked at.
        listed_sidecars: dict[str, os.DirEntry[str]] = {}
        candidates: list[os.DirEntry[str]] = []
        for entry in entries:
            if entry.name.endswith(SIDECAR_SUFFIX):
                listed_sidecars[entry.path] = entry
                continue  # never uploaded (`admission.screen_name` says so too)
            # Strings, not Paths, on this path: it runs once per file of a large backlog.
            if admission.screen_name(entry.path[root_length:], folder.ignore, scripts=scripts):
                continue
            if entry.path in waiting:
                clean = False
                continue
            candidates.append(entry)
        if not candidates:
            return clean
        known = (
            {}
            if tally.journal_empty
            else self.journal.fingerprints_of([entry.path for entry in candidates])
        )
        beside = folder.sidecar_dir is None and folder.move_to is None
        uploaded: list[tuple[str, float]] = []
        for entry in candidates:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not initial and not stat.S_ISREG(info.st_mode):
                continue  # skipped kinds were logged once already
            tally.seen += 1
            record = known.get(entry.path)
            if record is not None and record[:2] == (info.st_size, info.st_mtime_ns):
                if record[2] in KEPT_STATES:
                    uploaded.append((entry.path, record[3]))
                continue
            if record is None and stat.S_ISREG(info.st_mode):
                # Beside its file (a short name), a sidecar the listing does not show is not
                # there to be read: a new file costs no failed open.
                plain = beside and (
                    len(entry.name) * 4 + SUFFIX_ROOM <= SHORT_NAME_BYTES
                    or len(os.fsencode(entry.name)) + SUFFIX_ROOM <= SHORT_NAME_BYTES
                )
                listed = listed_sidecars.get(entry.path + SIDECAR_SUFFIX) if plain else None
                if not plain or listed is not None:
                    document = (
                        read_listed_sidecar(listed.path)
                        if listed is not None and listed.is_file(follow_symlinks=False)
                        else None
                    )
                    row = adoptable_row(entry.path, folder, info, document)
                    if row is not None:
                        tally.adopted.append(row)
                        continue
            self._notice(Path(entry.path), folder)
            tally.noticed += 1
            clean = False
        self.sidecars.during_walk(folder, uploaded, listed_sidecars, suspects, initial)
        suspects.difference_update(listed_sidecars)
        return clean

    def _adopt(self, tally: _Tally) -> None:
        """Write the adopted rows; then the directories listed so far can be trusted. (A
        writer thread alongside the walk was tried: SQLite releases the interpreter lock per
        row, and taking it back from the walking thread made it slower, not faster.)"""
        if tally.adopted:
            self.journal.put_many(tally.adopted)
            tally.adopted_total += len(tally.adopted)
            tally.adopted = []
        for stamps, listing in tally.clean:
            stamps.keep(listing)
        tally.clean = []
