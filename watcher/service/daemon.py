"""The daemon: wires sources → settler → pipeline → journal, and keeps them running.

`Daemon.open` builds every part with its collaborators handed in; `Daemon.start` resumes
unfinished work from the journal, schedules one watch per folder on the one shared observer
and scans what is already there; a housekeeping thread then does everything periodic
(`service.housekeeping`). What each part does lives in its own module:

- noticing files: `intake.notice` (one path), `intake.folders` (the watches), `intake.scan`
  (the walks, directory stamps, adoption of finished files at start);
- the pipeline's doors from the journal: `pipeline.resume`; sidecars kept true:
  `pipeline.upkeep`; an unreachable API: `pipeline.outages`;
- the key after start: `service.keys`; health: `service.health`.

Threads, what each owns, and which lock guards what:

- **main** (`shell`): start, signals, reload (`apply_config`), stop. Owns the folder watches
  (`FolderWatches`), together with housekeeping: both only touch them under its `lock`.
- **watch** (one watchdog observer for every folder; polling folders have none: housekeeping
  polls them): runs the event handlers, which only hand paths to the settler (`notice`) or a
  moved-in folder to the scan pool (`notice_tree`), and wake housekeeping when a watched
  folder itself is deleted. Never does I/O beyond a path check.
- **scan-tree** (a `ThreadPoolExecutor` of 2, `intake.notice`): walks folders moved in or
  come back, noticing each file. Bounded: a burst of folders queues instead of making a
  thread each.
- **settler** (`intake.settle`): owns the settling set (its own lock); hands finished paths
  to the work pool.
- **worker-N** (`pipeline.workpool`, `api.concurrency` of them): run a file's stages and video
  steps. The pool's `_lock` guards its per-path bookkeeping; the journal's lock (an `RLock`
  around the one SQLite connection) makes every journal call atomic; the shared `Throttle`,
  `AuthPause` and `Reachability` have their own locks.
- **batcher** (v3-direct only): gathers files into batches (its own lock).
- **housekeeping** (`service.housekeeping`): rescans (and the full walk asked for by an
  inotify overflow), polls of polling folders, root checks, due retries and sidecars, files
  handed over by a command, probes while the API is unreachable, the key file. Sleeps on
  `_wake`, which anyone may set to make it look now.
- **outbox** (`service.outbox`), with a pool of 4 **notify-N**: delivers notifications from
  the journal's outbox; never waited for by anything else.
- **sd_notify/metrics** (`service.shell`, `service.metrics`): read-only views (`health`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from watcher import __version__
from watcher.config import Config, FolderConfig
from watcher.config.apikey import ApiKey, load_api_key
from watcher.config.live import LiveConfig
from watcher.heygen.client import HeyGenClient
from watcher.heygen.throttle import Throttle
from watcher.heygen.uploads import make_protocol
from watcher.intake.folders import FolderWatches
from watcher.intake.notice import Noticer
from watcher.intake.scan import Scanner
from watcher.intake.settle import Settler
from watcher.intake.sources import Observers
from watcher.pipeline.outages import ApiProbe
from watcher.pipeline.outcome import AuthPause
from watcher.pipeline.pipeline import Pipeline, build_pipeline
from watcher.pipeline.resume import Resumer
from watcher.pipeline.upkeep import SidecarUpkeep
from watcher.pipeline.videos import VideoStage
from watcher.service.claims import ClaimKeeper
from watcher.service.fleetpause import (
    AUTH,
    RATE_LIMIT,
    UNTIL_KEY_RELOADED_SECONDS,
    FleetPause,
)
from watcher.service.health import Health
from watcher.service.heartbeat import Heartbeat
from watcher.service.housekeeping import Housekeeper
from watcher.service.keys import KeyWatch
from watcher.service.outbox import OutboxWorker
from watcher.state import stampfile
from watcher.state.claim import FolderClaims, FolderTaken
from watcher.state.journal import VIDEO_ACTIVE_STATES, JournalError
from watcher.state.journal_api import Journal
from watcher.state.journals import open_journal
from watcher.state.lock import StateLock

log = logging.getLogger(__name__)


def _log_transition(path: str, old: str | None, new: str) -> None:
    """Every state change of every file, at -v (the journal calls this as it commits)."""
    log.debug("%s → %s", old or "new", new, extra={"file": path})


# How often folders are checked for being gone, back or replaced (a stat each).
ROOT_CHECK_SECONDS = 2.0
ABORT_GRACE_SECONDS = 1.0
OUTBOX_GRACE_SECONDS = 2.0


@dataclass
class Daemon:
    initial_config: Config
    key: ApiKey | None = None  # None: read it as configured
    on_event: Callable[[str, dict[str, Any]], None] = lambda kind, details: None
    # Called about every second while a shared journal's database is awaited at start.
    on_journal_wait: Callable[[], None] = lambda: None
    root_check_seconds: float = ROOT_CHECK_SECONDS
    # The parts, built by `open`.
    journal: Journal = field(init=False)
    client: HeyGenClient = field(init=False)
    pipeline: Pipeline = field(init=False)
    videos: VideoStage = field(init=False)
    settler: Settler = field(init=False)
    noticer: Noticer = field(init=False)
    folders: FolderWatches = field(init=False)
    scanner: Scanner = field(init=False)
    upkeep: SidecarUpkeep = field(init=False)
    resumer: Resumer = field(init=False)
    probe: ApiProbe = field(init=False)
    keys: KeyWatch = field(init=False)
    health: Health = field(init=False)
    leases: ClaimKeeper = field(init=False)
    outbox: OutboxWorker = field(init=False)
    housekeeper: Housekeeper | None = field(init=False, default=None)
    observers: Observers = field(init=False)
    lock: StateLock = field(init=False)
    claims: FolderClaims = field(init=False)
    key_origin: str = field(init=False, default="")
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    live: LiveConfig = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)  # a retry was scheduled

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
        self.key_origin = key.origin
        self.client = self._client(key)
        auth_pause = self._auth_pause()
        self.settler = Settler(on_ready=self._ready)
        self.outbox = OutboxWorker(self.live, self.journal, self.on_event, busy=self._busy)
        self.pipeline = build_pipeline(
            self.live,
            self.journal,
            self.client,
            make_protocol(self.client),
            renotice=self._notice,
            on_event=self.on_event,
            on_retry_scheduled=self._wake.set,
            progress=self.heartbeat,
            auth_pause=auth_pause,
            on_notices_written=self.outbox.wake.set,
        )
        self.videos = self.pipeline.videos
        self.leases = ClaimKeeper(self.journal, self.pipeline.pool, self.live)
        self._wire_parts()

    def _client(self, key: ApiKey) -> HeyGenClient:
        # A 429 seen by any daemon sharing the journal pauses them all.
        fleet_pause = FleetPause(self.journal, RATE_LIMIT)
        throttle = Throttle(
            self.config.api.requests_per_second,
            on_wait=self.heartbeat.beat,
            concurrency=self.config.api.concurrency,
            adaptive=self.config.api.adaptive_concurrency,
            on_pause=fleet_pause.publish,
            shared_pause=fleet_pause.current,
        )
        return HeyGenClient(
            self.config.api, key, throttle=throttle, on_progress=self.heartbeat.beat
        )

    def _auth_pause(self) -> AuthPause:
        """A 401 seen by any daemon of the fleet pauses them all. This daemon has just read its
        key: a 401's pause recorded before (by it, or by another daemon) ends, as a reload of
        the key ends it."""
        fleet_auth = FleetPause(self.journal, AUTH)
        fleet_auth.end()
        return AuthPause(
            shared=fleet_auth.reason,
            on_set=lambda reason: fleet_auth.publish(UNTIL_KEY_RELOADED_SECONDS, reason),
            on_clear=fleet_auth.end,
        )

    def _wire_parts(self) -> None:
        """The intake, the journal's doors into the pipeline, and the service's own parts."""
        pipeline = self.pipeline
        self.noticer = Noticer(self.settler, pipeline.keeper.suspect, self._stop)
        self.folders = FolderWatches(
            self.live,
            self.observers,
            self.noticer.notice,
            self.noticer.notice_tree,
            on_root_gone=self._wake.set,
        )
        self.upkeep = SidecarUpkeep(self.live, self.journal, pipeline.keeper)
        self.scanner = Scanner(
            self.live,
            self.journal,
            self.folders,
            self.noticer.notice,
            # Files the daemon already holds, waiting to settle or queued for a worker:
            # looking at them again would only cost a stat each.
            lambda: self.settler.waiting() | pipeline.pool.queued(),
            self.upkeep,
            self._stop,
        )
        self.resumer = Resumer(
            self.live, self.journal, pipeline, self.client.reachability, self.noticer.notice_tree
        )
        self.probe = ApiProbe(
            self.live, self.journal, self.client, pipeline, self.resumer, self.on_event
        )
        self.keys = KeyWatch(
            self.live, self.key, self.client, pipeline.auth_pause, self.journal, self.resumer
        )
        self.health = Health(
            self.live,
            self.journal,
            self.client,
            pipeline,
            self.folders,
            self.heartbeat,
            threads_alive=self._threads_alive,
        )

    def start(self, *, watch: bool = True, scan: bool = True) -> None:
        """Open, resume and (with ``watch``) watch the folders. ``scan=False`` serves commands
        that work on named files only (`upload`, `retry PATH`): nothing else is resumed or
        scanned, the caller submits what it wants."""
        for warning in self.config.warnings:
            log.warning("configuration: %s", warning)
        self.open()
        # Converted bytes a killed process left (this one holds the state lock now): their
        # rows are converted again, unless their upload was recorded.
        self.pipeline.converting.clean_leftovers()
        self.pipeline.pool.start()
        self.outbox.start()
        self.leases.start()
        if self.pipeline.batcher is not None:
            self.pipeline.batcher.start()
        self.settler.start()
        if not scan:
            return
        self.videos.resume()
        self.resumer.resume_unfinished()
        if watch:
            self.folders.watch_all()
        # After a clean stop, the directories unchanged since are not listed again; what was
        # rewritten in place meanwhile is found by a full walk in the background (`stampfile`).
        kept = None
        if watch and self.config.journal_url is None:
            kept = stampfile.take(self.config.state_dir, self.journal)
        if kept is not None:
            self.scanner.stamps = kept
        self.scanner.scan_all(initial=True, trusted=kept is not None)
        if kept is not None:
            self.scanner.want_full_scan(
                logging.INFO, "walking every folder for files rewritten in place while stopped"
            )
        if watch:
            self.housekeeper = Housekeeper(
                self.live,
                self.journal,
                self.client,
                self.pipeline.auth_pause,
                self.folders,
                self.scanner,
                self.resumer,
                self.probe,
                self.keys,
                wake=self._wake,
                stop=self._stop,
                root_check_seconds=self.root_check_seconds,
            )
            self.housekeeper.start()
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
        self.folders.stop()
        self.noticer.stop()
        self.settler.stop()
        if self.pipeline.batcher is not None:
            self.pipeline.batcher.stop()
        self.pipeline.pool.stop_accepting()
        self.pipeline.pool.drain_queue()
        # A conversion is local work redone at the next start: not worth waiting for.
        self.pipeline.converting.stop()
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
        if self.housekeeper is not None:
            ended = self.housekeeper.join(timeout=5)
            if self.config.journal_url is None and ended:
                stampfile.save(self.config.state_dir, self.journal, self.scanner.stamps)
        # Deliveries under way get a moment; what is left is delivered at the next start.
        self.outbox.stop(OUTBOX_GRACE_SECONDS)
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

    # -- wiring ------------------------------------------------------------------------------
    def _ready(self, path: Path, folder: FolderConfig) -> None:
        self.pipeline.pool.submit(path, folder)

    def _notice(self, path: Path, folder: FolderConfig) -> None:
        # The pool notices a path again (its file changed while uploading): as a watch would.
        self.noticer.notice(path, folder)

    def _busy(self) -> bool:
        return self.pipeline.pool.busy > 0 or self.settler.pending_count() > 0

    def _threads_alive(self) -> bool:
        housekeeper = self.housekeeper
        return (housekeeper is None or housekeeper.alive) and self.leases.alive

    def events_lost(self) -> None:
        """The kernel dropped events (its inotify queue overflowed): scan every folder in
        full at once. Cheap: called from watchdog's thread; repeated overflows while a scan
        is due make one scan."""
        self.scanner.want_full_scan(
            logging.WARNING, "inotify's event queue overflowed; walking every folder now"
        )
        self._wake.set()

    # -- reload ------------------------------------------------------------------------------
    def apply_config(self, new: Config) -> None:
        """Take a re-read configuration: folders come and go without a restart."""
        if new.api != self.config.api or new.state_dir != self.config.state_dir:
            log.warning("changes to `api` and `state_dir` take effect at the next restart")
            new = replace(new, api=self.config.api, state_dir=self.config.state_dir)
        self.live.swap(new)
        self.folders.apply(new, self.claims)
        self._wake.set()

    # -- waiting (commands without a housekeeper) --------------------------------------------
    def wait_for_api(self, seconds: float, only: Collection[str] | None = None) -> bool:
        """`pipeline.outages.ApiProbe.wait_for_api`, cut short when the daemon stops."""
        return self.probe.wait_for_api(seconds, self._stop, only)

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
                    next_probe = time.monotonic() + self.probe.delay()
                    self.probe.probe()
                self.resumer.submit_due(only)
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
