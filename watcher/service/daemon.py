"""The daemon: wires sources → settler → pipeline → journal, and keeps them running.

`Daemon.start` resumes unfinished work from the journal, schedules one watch per folder on the
one shared observer and scans what is already there. A housekeeping thread then runs the
periodic rescan, re-arms folders that went away, came back or were replaced, hands due
retries to the pipeline, probes an unreachable API and notices a changed key file.

Threads, what each owns, and which lock guards what:

- **main** (`shell`): start, signals, reload (`apply_config`), stop. Owns `watches` (the list
  and each `FolderWatch`), together with housekeeping: both only touch it under
  `_watches_lock`.
- **watch** (one watchdog observer for every folder; polling folders have none: housekeeping
  polls them):
  runs the event handlers, which only hand paths to the settler (`notice`) or a moved-in
  folder to the scan pool (`notice_tree`), and wake housekeeping when a watched folder itself
  is deleted. Never does I/O beyond a path check.
- **scan-tree** (a `ThreadPoolExecutor` of 2): walks folders moved in or come back, noticing
  each file. Bounded: a burst of folders queues instead of making a thread each.
- **settler** (`intake.settle`): owns the settling set (its own lock); hands finished paths
  to the work pool.
- **worker-N** (`pipeline.workpool`, `api.concurrency` of them): run a file's stages and video
  steps. The pool's `_lock` guards its per-path bookkeeping; the journal's lock (an `RLock`
  around the one SQLite connection) makes every journal call atomic; the shared `Throttle`,
  `AuthPause` and `Reachability` have their own locks.
- **batcher** (v3-direct only): gathers files into batches (its own lock).
- **housekeeping**: rescans (and the full walk asked for by an inotify overflow), polls of
  polling folders, root checks, due retries and sidecars, files handed over by a command
  (`take_requests`), probes while the API is unreachable, the key file. Sleeps on
  `_wake`, which anyone may set to make it look now; a failed round is logged and the next
  one comes all the same.
- **sd_notify/metrics** (`service.shell`, `service.metrics`): read-only views (`health`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from watcher import __version__
from watcher.config import Config, FolderConfig
from watcher.config.apikey import ApiKey, ApiKeyError, key_file_path, load_api_key
from watcher.config.live import LiveConfig
from watcher.heygen.client import HeyGenClient
from watcher.heygen.reachability import probe_delay_seconds
from watcher.heygen.throttle import Throttle
from watcher.heygen.uploads import make_protocol
from watcher.intake import admission
from watcher.intake.settle import Settler
from watcher.intake.sources import FolderWatch, Observers
from watcher.pipeline.handpicked import folder_for_file
from watcher.pipeline.outcome import AuthPause
from watcher.pipeline.pipeline import Pipeline, build_pipeline
from watcher.pipeline.videos import VideoStage
from watcher.service.claims import ClaimKeeper
from watcher.service.fleetpause import (
    AUTH,
    RATE_LIMIT,
    UNTIL_KEY_RELOADED_SECONDS,
    FleetPause,
)
from watcher.service.heartbeat import Heartbeat
from watcher.state import stampfile
from watcher.state.claim import FolderClaims, FolderTaken
from watcher.state.journal import VIDEO_ACTIVE_STATES, FileRow, JournalError
from watcher.state.journal_api import Journal
from watcher.state.journals import open_journal
from watcher.state.lock import StateLock
from watcher.state.rows import adoptable_row, read_listed_sidecar
from watcher.state.sidecar import SHORT_NAME_BYTES, iso_from_epoch
from watcher.state.sidecar import SUFFIX as SIDECAR_SUFFIX
from watcher.state.states import DUE, KEPT_STATES, FileState
from watcher.state.tree import Listing, TreeStamps, walk_changed, walk_files
from watcher.state.writable import unwritable

log = logging.getLogger(__name__)


def _log_transition(path: str, old: str | None, new: str) -> None:
    """Every state change of every file, at -v (the journal calls this as it commits)."""
    log.debug("%s → %s", old or "new", new, extra={"file": path})


# How often folders are checked for being gone, back or replaced (a stat each).
ROOT_CHECK_SECONDS = 2.0
# Walking folders moved in: bounded, so a burst of folders cannot make a thread each.
TREE_SCAN_WORKERS = 2
ABORT_GRACE_SECONDS = 1.0
AUTH_REMINDER_SECONDS = 300.0
# While a 401 pauses uploads, how often the fleet's pause is looked at for its end.
FLEET_AUTH_CHECK_SECONDS = 1.0
# While the API is unreachable, the log says so again every this many failed probes.
UNREACHABLE_REMINDER_PROBES = 30
# Adopted rows written to the journal per transaction while a scan walks a large tree.
ADOPT_BATCH = 5000
# Room a sidecar's suffix takes in a name whose sidecar is `<name>.asset.json` (longer names
# have shortened sidecar names: `watcher.state.names`).
SUFFIX_ROOM = len(SIDECAR_SUFFIX)
# The periodic rescan takes at most this share of the time: a tree so large that a pass
# lasts long waits proportionally longer for the next (up to RESCAN_STRETCH_MAX times the
# configured interval; an inotify overflow still asks for one at once).
RESCAN_DUTY = 0.01
RESCAN_STRETCH_MAX = 10.0
# A periodic pass this soon after a full walk: files made while watches were re-armed.
AFTER_FULL_SCAN_SECONDS = 2.0
# How often folders that poll (`polling: true`, or no inotify watch left) are looked at: a
# stat per directory, and a listing of those whose stamp moved.
POLL_SECONDS = 1.0
# Rows a previous process left mid-way, picked up again at start.
RESUMED_STATES = (FileState.QUEUED, FileState.UPLOADING, FileState.RECORDING, FileState.HELD)


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


@dataclass
class Daemon:
    initial_config: Config
    key: ApiKey | None = None  # None: read it as configured
    on_event: Callable[[str, dict[str, Any]], None] = lambda kind, details: None
    # Called about every second while a shared journal's database is awaited at start.
    on_journal_wait: Callable[[], None] = lambda: None
    journal: Journal = field(init=False)
    client: HeyGenClient = field(init=False)
    pipeline: Pipeline = field(init=False)
    videos: VideoStage = field(init=False)
    settler: Settler = field(init=False)
    leases: ClaimKeeper = field(init=False)
    root_check_seconds: float = ROOT_CHECK_SECONDS
    watches: list[FolderWatch] = field(default_factory=list)
    observers: Observers = field(init=False)
    _watches_lock: threading.Lock = field(default_factory=threading.Lock)
    _tree_scans: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            TREE_SCAN_WORKERS, thread_name_prefix="scan-tree"
        )
    )
    lock: StateLock = field(init=False)
    key_origin: str = field(init=False, default="")
    # Files the last scan saw, and how many of them it handed on (the rest needed nothing).
    scanned: int = field(init=False, default=0)
    scan_noticed: int = field(init=False, default=0)
    # Directory stamps of the last pass, and how long it took (`scan_all`).
    stamps: TreeStamps = field(default_factory=TreeStamps)
    poll_stamps: TreeStamps = field(default_factory=TreeStamps)  # `poll_folders`'
    scan_seconds: float = field(init=False, default=0.0)
    pass_seconds: float = field(init=False, default=0.0)  # the last periodic pass's
    full_scans: int = field(init=False, default=0)  # asked for by lost events
    _full_scan_why: tuple[int, str] = field(init=False, default=(logging.INFO, ""))
    # Files the start-up scan stat'ed (after a clean stop: those in changed directories).
    start_scanned: int = field(init=False, default=0)
    _full_scan: threading.Event = field(default_factory=threading.Event)  # events were lost
    claims: FolderClaims = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)  # a retry was scheduled
    _housekeeper: threading.Thread | None = None
    _key_stamp: tuple[float, int] | None = None
    _auth_paused: bool = False  # as the housekeeper last saw it
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    live: LiveConfig = field(init=False)

    def __post_init__(self) -> None:
        self.live = LiveConfig(self.initial_config)
        self.observers = Observers(on_events_lost=self.events_lost)

    @property
    def config(self) -> Config:
        """The configuration in force (a reload swaps it for every stage at once)."""
        return self.live.current

    # -- life cycle --------------------------------------------------------------------------
    def open(self) -> None:
        """Everything that can fail on bad input, before any thread starts."""
        self.lock = StateLock(self.config.state_dir)
        self.lock.acquire()
        # Each folder belongs to one journal: refuse one a daemon of another state dir holds.
        # A shared journal is the one journal of every daemon of its fleet: they share the
        # folders through its claims, with no lock on the shared file system.
        self.claims = FolderClaims(self.config.state_dir)
        try:
            if self.config.journal_url is None:
                for folder in self.config.folders:
                    self.claims.claim(folder.path)
        except FolderTaken:
            self.claims.release_all()
            self.lock.release()
            raise
        # A shared database that does not answer yet is waited for, loudly: never a crash loop.
        self.journal = open_journal(self.config, wait=True, on_waiting=self.on_journal_wait)
        self.journal.on_waiting = self.heartbeat.beat
        if log.isEnabledFor(logging.DEBUG):
            # Only at -v: without a listener the journal spares the read of each old state.
            self.journal.on_transition = _log_transition
        self.journal.set_meta("uploads_paused", None)
        self.journal.set_meta("videos_paused", None)
        self.journal.set_meta("api_unreachable", None)
        self.journal.register_daemon(__version__)
        key = self.key or load_api_key(self.config.api)
        self._key_stamp = self._key_file_stamp()
        self.key_origin = key.origin
        # A 429 or a 401 seen by any daemon sharing the journal pauses them all. This daemon
        # has just read its key: a 401's pause recorded before (by it, or by another daemon
        # of the fleet) ends, as a reload of the key ends it.
        fleet_pause = FleetPause(self.journal, RATE_LIMIT)
        fleet_auth = FleetPause(self.journal, AUTH)
        fleet_auth.end()
        auth_pause = AuthPause(
            shared=fleet_auth.reason,
            on_set=lambda reason: fleet_auth.publish(UNTIL_KEY_RELOADED_SECONDS, reason),
            on_clear=fleet_auth.end,
        )
        throttle = Throttle(
            self.config.api.requests_per_second,
            on_wait=self.heartbeat.beat,
            concurrency=self.config.api.concurrency,
            adaptive=self.config.api.adaptive_concurrency,
            on_pause=fleet_pause.publish,
            shared_pause=fleet_pause.current,
        )
        self.client = HeyGenClient(
            self.config.api, key, throttle=throttle, on_progress=self.heartbeat.beat
        )
        self.settler = Settler(on_ready=self._ready)
        self.pipeline = build_pipeline(
            self.live,
            self.journal,
            self.client,
            make_protocol(self.client),
            renotice=self.notice,
            on_event=self.on_event,
            on_retry_scheduled=self._wake.set,
            progress=self.heartbeat,
            auth_pause=auth_pause,
        )
        self.videos = self.pipeline.videos
        self.leases = ClaimKeeper(self.journal, self.pipeline.pool, self.live)

    def start(self, *, watch: bool = True, scan: bool = True) -> None:
        """Open, resume and (with ``watch``) watch the folders. ``scan=False`` serves commands
        that work on named files only (`upload`, `retry PATH`): nothing else is resumed or
        scanned, the caller submits what it wants."""
        for warning in self.config.warnings:
            log.warning("configuration: %s", warning)
        self.open()
        self.pipeline.pool.start()
        self.leases.start()
        if self.pipeline.batcher is not None:
            self.pipeline.batcher.start()
        self.settler.start()
        if not scan:
            return
        self.videos.resume()
        self.resume_unfinished()
        if watch:
            with self._watches_lock:
                for folder in self.config.folders:
                    folder_watch = self._folder_watch(folder)
                    if not self._open_watch(folder_watch) and folder_watch.blocked is None:
                        log.warning(
                            "folder is missing; watching for it to come back",
                            extra={"folder": str(folder.path)},
                        )
                        folder_watch.missing = True
                    self.watches.append(folder_watch)
        # After a clean stop, the directories unchanged since are not listed again; what was
        # rewritten in place meanwhile is found by a full walk in the background (`stampfile`).
        kept = None
        if watch and self.config.journal_url is None:
            kept = stampfile.take(self.config.state_dir, self.journal)
        if kept is not None:
            self.stamps = kept
        self.scan_all(initial=True, trusted=kept is not None)
        self.start_scanned = self.scanned
        if kept is not None:
            self._full_scan_why = (
                logging.INFO,
                "walking every folder for files rewritten in place while stopped",
            )
            self._full_scan.set()
        if watch:
            self._housekeeper = threading.Thread(
                target=self._housekeeping, name="housekeeping", daemon=True
            )
            self._housekeeper.start()
            self.announce()

    def announce(self) -> None:
        """What an operator needs to know at start: the version, where uploads go, where the
        key came from (never the key), where the state is, and each folder's settings."""
        config = self.config
        log.info(
            "heygen-watcher %s started",
            __version__,
            extra={
                "api": config.api.base_url,
                "protocol": config.api.upload_protocol,
                "key_from": self.key_origin,
                "state_dir": str(config.state_dir),
                "journal": str(config.journal_path),
            },
        )
        for folder in config.folders:
            log.info(
                "watching folder",
                extra={
                    "folder": str(folder.path),
                    "types": ",".join(folder.types),
                    "settle_seconds": folder.settle_seconds,
                    "recursive": folder.recursive,
                    "protocol": config.api.upload_protocol,
                    "template": folder.template or "-",
                },
            )
        log.info("watching %d folder(s)", len(config.folders))

    def stop(self) -> bool:
        """Take no new work, let in-flight uploads finish for a while, then abort them.

        Returns True when everything in flight finished; anything cut short is still in the
        journal and resumes at the next start.
        """
        self._stop.set()
        self._wake.set()
        with self._watches_lock:
            for folder_watch in self.watches:
                folder_watch.stop()
        self.observers.stop()
        self._tree_scans.shutdown(wait=False, cancel_futures=True)
        self.settler.stop()
        if self.pipeline.batcher is not None:
            self.pipeline.batcher.stop()
        self.pipeline.pool.stop_accepting()
        self.pipeline.pool.drain_queue()
        finished = self.pipeline.pool.join(self.config.shutdown_timeout_seconds)
        if not finished:
            log.warning(
                "uploads still running after %.0fs; aborting them (they resume at the next start)",
                self.config.shutdown_timeout_seconds,
            )
            self.client.throttle.stop()
            self.client.close()
            # A worker blocked in a socket cannot be woken; its row is in the journal and
            # resumes at the next start, so only a short grace is worth waiting.
            self.pipeline.pool.join(ABORT_GRACE_SECONDS)
        else:
            self.client.close()
        if self._housekeeper is not None:
            self._housekeeper.join(timeout=5)
            if self.config.journal_url is None and not self._housekeeper.is_alive():
                stampfile.save(self.config.state_dir, self.journal, self.stamps)
        self.leases.stop()
        if self.journal.outage is None:  # else its row ages out of the fleet's view
            try:
                self.journal.unregister_daemon()
            except JournalError as error:
                log.warning("could not leave the journal's list of daemons: %s", error)
        self.journal.close()
        self.claims.release_all()
        self.lock.release()
        return finished

    # -- sources -----------------------------------------------------------------------------
    def notice(self, path: Path, folder: FolderConfig, finished: bool = False) -> None:
        """Look at ``path`` once it settles. Cheap: called from watchdog's thread."""
        if path.name.endswith(SIDECAR_SUFFIX):
            # Someone (or we) wrote a sidecar: the next rescan compares it with the journal.
            self.pipeline.keeper.suspect(str(path))
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

    def _scan_tree(self, root: Path, folder: FolderConfig) -> None:
        try:
            for entry in walk_files(root, folder.recursive):
                if self._stop.is_set():
                    return
                self.notice(Path(entry.path), folder)
        except Exception:
            log.exception("error while scanning %s", root)

    def _folder_watch(self, folder: FolderConfig) -> FolderWatch:
        return FolderWatch(
            folder, self.observers, self.notice, self.notice_tree, on_root_gone=self._wake.set
        )

    def _ready(self, path: Path, folder: FolderConfig) -> None:
        self.pipeline.pool.submit(path, folder)

    def scan_all(self, *, initial: bool = False, full: bool = False, trusted: bool = False) -> int:
        """Notice every file whose size or mtime differs from what the journal recorded.

        Files whose sidecar from an earlier run still matches are adopted into the journal
        right here, in batches, instead of going through the pipeline one by one: a restart
        over a large, finished backlog costs a directory walk and a read of each sidecar.

        Folder by folder and directory by directory: memory holds one directory's listing
        and one batch of adopted rows, never the tree. A periodic pass (neither ``initial``
        nor ``full``) lists only directories whose stamp moved since the last pass: files
        created, deleted or renamed behind inotify's back move their directory's mtime; a
        file rewritten in place does not, but inotify reports that (IN_MODIFY, IN_CLOSE_WRITE)
        and a lost event shows as a queue overflow, which asks for a ``full`` pass at once.
        """
        started = time.monotonic()
        # Sidecars written since the last look (events): these are read and compared.
        suspects = self.pipeline.keeper.take_suspects()
        # Files the daemon already holds, waiting to settle or queued for a worker: looking at
        # them again would only cost a stat each (a burst larger than inotify's queue).
        waiting = self.settler.waiting() | self.pipeline.pool.queued()
        tally = _Tally(journal_empty=initial and not self.journal.counts())
        stamps = self.stamps
        stamps.skipped = stamps.listed = 0
        blocked = {w.config.path for w in self.watches if w.blocked is not None}
        polled = {w.config.path for w in self.watches if w.polling}
        plans: list[tuple[FolderConfig, TreeStamps, bool]] = []
        for folder in self.config.folders:
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
        self._check_suspects(suspects)
        if tally.adopted_total:
            log.info("adopted %d file(s) already recorded in their sidecars", tally.adopted_total)
        if tally.noticed and not initial:
            log.info("rescan found %d new or changed file(s)", tally.noticed)
        self.scanned, self.scan_noticed = tally.seen, tally.noticed
        self.scan_seconds = time.monotonic() - started
        if not (initial or full):
            self.pass_seconds = self.scan_seconds
        return tally.noticed

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
            self.notice(Path(entry.path), folder)
            tally.noticed += 1
            clean = False
        self._keep_sidecars_true(folder, uploaded, listed_sidecars, suspects, initial)
        suspects.difference_update(listed_sidecars)
        return clean

    def poll_folders(self) -> int:
        """One look at the folders that poll: only directories whose stamp moved since the
        last look are listed, and only their new or changed files noticed. A file rewritten
        in place moves no directory's stamp: the periodic rescan walks these folders in full
        (see `scan_all`). Returns how many files were noticed."""
        with self._watches_lock:
            polled = [w.config for w in self.watches if w.polled and w.blocked is None]
        if not polled:
            return 0
        waiting = self.settler.waiting() | self.pipeline.pool.queued()
        tally = _Tally()
        stamps = self.poll_stamps
        stamps.skipped = stamps.listed = 0
        self._walk([(folder, stamps, True) for folder in polled], set(), waiting, False, tally)
        return tally.noticed

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

    def _check_suspects(self, suspects: set[str]) -> None:
        """Sidecars an event said were written, in directories the pass did not list (an
        edit in place moves no directory's mtime): read and compared with the journal."""
        for location in suspects:
            key = location[: -len(SIDECAR_SUFFIX)]
            row = self.journal.get(key)
            if row is None or row.state not in KEPT_STATES:
                continue
            folder = self.config.folder_of(row.folder)
            if folder.sidecar_dir is not None:
                continue
            self.pipeline.keeper.check_listed(key, folder, os.path.lexists(location), True)

    def _keep_sidecars_true(
        self,
        folder: FolderConfig,
        uploaded: list[tuple[str, float]],
        listed: dict[str, os.DirEntry[str]],
        suspects: set[str],
        initial: bool,
    ) -> None:
        """Write again from the journal the sidecars of uploaded files that are missing,
        damaged or say something else. The walk's listing tells which exist; after the
        start, events tell which were written (no stat, no read of the others); at start,
        one stat each tells which were changed after the journal recorded their file."""
        keeper = self.pipeline.keeper
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

    def keep_sidecars_true(self, paths: list[str] | None = None) -> int:
        """Outside a scan (`retry`): the sidecars of decided files (all, or ``paths``),
        each looked at with one stat. Returns how many were written again."""
        keys = [row.path for row in self.journal.rows_in(KEPT_STATES)] if paths is None else paths
        repaired = 0
        for key in keys:
            row = self.journal.get(key)
            if row is None or row.state not in KEPT_STATES:
                continue
            folder = self.config.folder_of(row.folder)
            location = str(self.pipeline.keeper.location(Path(key), folder))
            try:
                info = os.lstat(location)
                seen: tuple[int, int] | None = (info.st_size, info.st_mtime_ns)
            except OSError:
                seen = None
            repaired += self.pipeline.keeper.check(key, location, folder, seen, row.updated_at)
        return repaired

    def resume_unfinished(self) -> None:
        """Rows a previous process left mid-way, and failures worth another go at start."""
        for row in self.journal.rows_in((FileState.FAILED,)):
            self.journal.update(
                row.path, state=FileState.RETRYING, attempts=0, next_attempt_at=time.time()
            )
        self._resubmit(self.journal.rows_in(RESUMED_STATES))
        self.submit_due()

    def _resubmit(self, rows: Iterable[FileRow]) -> None:
        """Hand rows of the journal back to the pool, each with its folder."""
        for row in rows:
            self.pipeline.pool.submit(Path(row.path), self.config.folder_of(row.folder), row=row)

    def submit_due(self, only: Collection[str] | None = None) -> None:
        """Hand due retries (and video steps) to the pool; ``only`` these paths if given
        (`retry PATH` retries what it was asked to and nothing else)."""
        now = time.time()
        self._resubmit(row for row in self.journal.due(now) if only is None or row.path in only)
        # While the API is unreachable, videos wait (due) for the probe that finds it back.
        for key in [] if self.client.reachability.down else self.journal.due_videos(now):
            if only is None or key in only:
                self.pipeline.video_runner.submit(key)
        self.pipeline.sidecars.retry_due(now)

    def take_requests(self) -> None:
        """Files a command (`upload`, `scan`) handed to this daemon through the journal."""
        configured = {folder.path: folder for folder in self.config.folders}
        for key, _folder in self.journal.take_requests():
            path = Path(key)
            if path in configured:
                log.info("scan requested by a command", extra={"folder": key})
                self.notice_tree(path, configured[path])
                continue
            row = self.journal.get(key)
            resume = row if row is not None and row.state in (FileState.QUEUED, *DUE) else None
            self.pipeline.pool.submit(path, folder_for_file(self.config, path), row=resume)

    # -- waiting (scan mode) -----------------------------------------------------------------
    def wait_until_idle(
        self,
        progress: Callable[[int], None] | None = None,
        *,
        include_videos: bool = False,
        only: Collection[str] | None = None,
    ) -> None:
        """Until nothing is settling, queued or uploading (retries scheduled later don't count).
        With ``include_videos``, also until every video has finished (polling them as due);
        ``only`` limits that to these paths' files and videos."""
        next_probe = time.monotonic()
        while not self._stop.is_set():
            busy = self.settler.pending_count() + self.pipeline.pool.busy
            if include_videos:
                if self.client.reachability.down and time.monotonic() >= next_probe:
                    # No housekeeper here (`retry`): videos wait for a probe as in the daemon.
                    next_probe = time.monotonic() + self._probe_delay()
                    self._probe()
                self.submit_due(only)
                busy += sum(
                    1
                    for video in self.journal.videos_in(VIDEO_ACTIVE_STATES)
                    if video.next_at is not None and (only is None or video.path in only)
                )
            if progress is not None:
                progress(busy)
            if (
                busy == 0
                and self.pipeline.pool.wait_idle(0.05)
                and self.settler.pending_count() == 0
            ):
                return
            self._stop.wait(0.05)

    def final_counts(self) -> dict[str, int]:
        """Rows per state, read after `stop` from a fresh journal handle."""
        journal = open_journal(self.config)
        try:
            return journal.counts()
        finally:
            journal.close()

    # -- housekeeping ------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        next_rescan = time.monotonic() + self.config.rescan_seconds
        next_root_check = time.monotonic() + self.root_check_seconds
        next_poll = time.monotonic() + POLL_SECONDS
        next_auth_reminder = time.monotonic() + AUTH_REMINDER_SECONDS
        next_probe: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            wake = min(next_rescan, next_root_check)
            if any(w.polled for w in self.watches):  # else no wake-up a second for nothing
                wake = min(wake, next_poll)
            if self._auth_paused:
                # The fleet's 401 pause may end at another daemon's reload: looked at often.
                wake = min(wake, now + FLEET_AUTH_CHECK_SECONDS)
            if self.client.reachability.down:
                if next_probe is None:
                    next_probe = now + self._probe_delay()
                wake = min(wake, next_probe)
            for due_at in (
                self.journal.next_due_at(),
                None if self.client.reachability.down else self.journal.next_video_at(),
                self.journal.next_sidecar_at(),
            ):
                if due_at is not None:
                    wake = min(wake, now + max(0.0, due_at - time.time()))
            self._wake.wait(max(0.0, wake - now))
            self._wake.clear()
            if self._stop.is_set():
                return
            now = time.monotonic()
            try:
                if next_probe is not None and now >= next_probe:
                    next_probe = now + self._probe_delay()
                    if self._probe():
                        next_probe = None
                self.submit_due()
                self.take_requests()
                if now >= next_poll:
                    next_poll = time.monotonic() + POLL_SECONDS
                    self.poll_folders()
                if now >= next_root_check:
                    next_root_check = now + self.root_check_seconds
                    self._check_roots()
                    self._check_key_file()
                if self._full_scan.is_set():
                    # Events were lost: every file of every folder is looked at, now.
                    self._full_scan.clear()
                    log.log(self._full_scan_why[0], self._full_scan_why[1])
                    self.scan_all(full=True)
                    self.full_scans += 1
                    log.info(
                        "walked every folder: %d file(s) in %.1f s", self.scanned, self.scan_seconds
                    )
                    # watchdog re-arms its watches after it reports an overflow, perhaps after
                    # this walk listed a folder: a periodic pass (changed folders only) soon.
                    next_rescan = time.monotonic() + AFTER_FULL_SCAN_SECONDS
                elif now >= next_rescan:
                    self.scan_all()
                    next_rescan = time.monotonic() + self._rescan_interval()
                self._resume_if_fleet_key_reloaded()
            except Exception:
                # One bad round (a folder that cannot be read, a bug) must not end the thread
                # that retries, rescans and re-arms everything else.
                log.exception("housekeeping round failed; going on")
                self._stop.wait(1.0)  # a failure that repeats must not spin
            if self.pipeline.auth_pause.active and now >= next_auth_reminder:
                next_auth_reminder = now + AUTH_REMINDER_SECONDS
                log.error(
                    "uploads paused: the API refused the key from %s (%s); fix the key "
                    "and send SIGHUP or update the key file",
                    self.client.key_origin,
                    self.pipeline.auth_pause.reason,
                )

    def _rescan_interval(self) -> float:
        """The configured interval, stretched for a tree so large that a periodic pass takes
        long (the start's walk, or a full one, says nothing of what a periodic pass costs)."""
        configured = self.config.rescan_seconds
        stretched = max(configured, self.pass_seconds / RESCAN_DUTY)
        return min(stretched, configured * RESCAN_STRETCH_MAX)

    def events_lost(self) -> None:
        """The kernel dropped events (its inotify queue overflowed): scan every folder in
        full at once. Cheap: called from watchdog's thread; repeated overflows while a scan
        is due make one scan."""
        self._full_scan_why = (
            logging.WARNING,
            "inotify's event queue overflowed; walking every folder now",
        )
        self._full_scan.set()
        self._wake.set()

    # -- outages -----------------------------------------------------------------------------
    def _probe_delay(self) -> float:
        outage = self.client.reachability.outage
        api = self.config.api
        failed = outage.probes if outage is not None else 1
        return probe_delay_seconds(failed, api.probe_base_seconds, api.probe_max_seconds)

    def _probe(self, only: Collection[str] | None = None) -> bool:
        """One probe while the API is unreachable; True once it answers (uploads resume:
        every held file, or those of ``only``)."""
        outage = self.client.reachability.outage
        if outage is None:
            return True
        failure = self.client.probe(outage.storage_url)
        if failure is not None:
            self.client.reachability.declare_down(failure)
            self.pipeline.outcome.record_outage()
            if outage.probes % UNREACHABLE_REMINDER_PROBES == 0:
                log.error(
                    "the API is still unreachable (since %s): %s",
                    iso_from_epoch(outage.since),
                    failure,
                )
            return False
        self.client.reachability.declare_up()
        self.journal.set_meta("api_unreachable", None)
        if not self.pipeline.auth_pause.active:
            self.journal.set_meta("uploads_paused", None)
        held = [
            row
            for row in self.journal.rows_in((FileState.HELD,))
            if only is None or row.path in only
        ]
        log.info(
            "the API answers again after %.0fs; resuming %d held file(s)",
            time.time() - outage.since,
            len(held),
        )
        self.on_event("api", {"unreachable": False})
        if not self.pipeline.auth_pause.active:
            self._resubmit(held)
        return True

    def wait_for_api(self, seconds: float, only: Collection[str] | None = None) -> bool:
        """Without a housekeeper (`scan`, `retry`): while the API is unreachable, probe it as
        the housekeeper does (backed off up to `probe_max_seconds`), for at most ``seconds``.
        True once it answers (the held files, or those of ``only``, are resumed), False when
        it did not in time."""
        deadline = time.monotonic() + seconds
        while self.client.reachability.down:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.wait(min(self._probe_delay(), remaining)):
                return False
            self._probe(only)
        return True

    def _open_watch(self, folder_watch: FolderWatch) -> bool:
        """Start watching; False if the folder is missing or the results could not be written.

        A folder whose sidecars (or moves, or videos) cannot be written is not taken at all:
        uploading its files would only end in a failure per file. Said once, at error level.
        """
        folder = folder_watch.config
        problem = unwritable(folder, self.config.templates) if folder.path.is_dir() else None
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

    def _check_roots(self) -> None:
        with self._watches_lock:
            watches = list(self.watches)
        for folder_watch in watches:
            root = folder_watch.config.path
            present = root.is_dir()
            if folder_watch.blocked is not None:
                if self._open_watch(folder_watch):
                    self.notice_tree(root, folder_watch.config)
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
            opened = self._open_watch(folder_watch)
            folder_watch.missing = not opened and folder_watch.blocked is None
            if opened:
                self.notice_tree(root, folder_watch.config)

    # -- reload ------------------------------------------------------------------------------
    def apply_config(self, new: Config) -> None:
        """Take a re-read configuration: folders come and go without a restart."""
        if new.api != self.config.api or new.state_dir != self.config.state_dir:
            log.warning("changes to `api` and `state_dir` take effect at the next restart")
            new = replace(new, api=self.config.api, state_dir=self.config.state_dir)
        wanted = {folder.path: folder for folder in new.folders}
        self.live.swap(new)
        with self._watches_lock:
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
                    if self.config.journal_url is None:
                        self.claims.claim(folder.path)
                except FolderTaken as error:
                    log.error("folder not watched: %s", error, extra={"folder": str(folder.path)})
                    continue
                folder_watch = self._folder_watch(folder)
                opened = self._open_watch(folder_watch)
                folder_watch.missing = not opened and folder_watch.blocked is None
                self.watches.append(folder_watch)
                if folder_watch.blocked is None:
                    log.info("watching folder", extra={"folder": str(folder.path)})
                    self.notice_tree(folder.path, folder)
        self._wake.set()

    # -- health ------------------------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        """(True, "ok") while working; else False and why (paused, stuck, missing folder)."""
        if self.journal.outage is not None:
            return False, f"work paused: {self.journal.outage}"
        if self.pipeline.auth_pause.active:
            return (
                False,
                f"uploads paused: the API refused the key ({self.pipeline.auth_pause.reason})",
            )
        outage = self.client.reachability.outage
        if outage is not None:
            return (
                False,
                f"uploads paused: the API is unreachable since {iso_from_epoch(outage.since)} "
                f"({outage.last_error})",
            )
        if self.videos.pause.active():
            return False, f"video generation paused: {self.videos.pause.reason}"
        if not self.making_progress():
            return False, "stuck: a worker has shown no sign of life for too long"
        failing = self.local_write_failures()
        if failing:
            return False, f"cannot write ({len(failing)} waiting): {failing[0]}"
        missing = [str(w.config.path) for w in self.watches if w.missing]
        if missing:
            return False, f"folder missing: {', '.join(missing)}"
        blocked = [str(w.config.path) for w in self.watches if w.blocked is not None]
        if blocked:
            return False, f"folder not writable: {', '.join(blocked)}"
        return True, "ok"

    def local_write_failures(self) -> list[str]:
        """Why sidecars, moves or downloads cannot be written right now (retried soon)."""
        reasons = [pending.reason for pending in self.journal.pending_sidecars()]
        reasons += [
            row.last_error
            for row in self.journal.rows_in((FileState.RECORDING,))
            if row.last_error and row.next_attempt_at is not None
        ]
        reasons += [
            video.error
            for video in self.journal.videos_in(("downloading",))
            if video.error and video.error.startswith("cannot save")
        ]
        return reasons

    def making_progress(self) -> bool:
        """False when a worker is wedged or a service thread died: stop the watchdog pings."""
        threads_alive = (
            self._housekeeper is None or self._housekeeper.is_alive()
        ) and self.leases.alive
        return threads_alive and self.heartbeat.longest_silence() <= self.config.stall_limit_seconds

    # -- the key -----------------------------------------------------------------------------
    def _key_file_stamp(self) -> tuple[float, int] | None:
        path = key_file_path(self.config.api)
        if path is None:
            return None
        try:
            info = path.stat()
        except OSError:
            return None
        return (info.st_mtime, info.st_ino)

    def _check_key_file(self) -> None:
        stamp = self._key_file_stamp()
        if stamp != self._key_stamp:
            self._key_stamp = stamp
            self.reload_key()

    def reload_key(self) -> None:
        """Read the key again; if it changed, resume whatever a 401 had paused."""
        if self.key is not None:
            key = self.key
        else:
            try:
                key = load_api_key(self.config.api)
            except ApiKeyError as error:
                log.error("cannot reload the API key: %s", error)
                return
        self.client.set_key(key)
        if self.pipeline.auth_pause.active:
            log.info("API key reloaded from %s; resuming uploads", key.origin)
            self.pipeline.auth_pause.clear()  # for the whole fleet
            self._resume_held()

    def _resume_if_fleet_key_reloaded(self) -> None:
        """A 401 pause taken from the fleet ended (another daemon reloaded its key): resume
        too. Every daemon resubmits the held files; each is claimed by one of them."""
        active = self.pipeline.auth_pause.active
        if self._auth_paused and not active:
            log.info("the fleet's API key was reloaded by another daemon; resuming uploads")
            self._resume_held()
        self._auth_paused = active

    def _resume_held(self) -> None:
        self._auth_paused = False
        self.journal.set_meta("uploads_paused", None)
        self._resubmit(self.journal.rows_in((FileState.HELD,)))
