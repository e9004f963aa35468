"""Whether the daemon is working, and if not why: read by sd_notify's watchdog pings, the
`/healthz` endpoint and `status`. Read-only: nothing here changes what the daemon does.
"""

from __future__ import annotations

from collections.abc import Callable

from watcher.config.live import LiveConfig
from watcher.heygen.client import HeyGenClient
from watcher.intake.folders import FolderWatches
from watcher.pipeline.pipeline import Pipeline
from watcher.service.heartbeat import Heartbeat
from watcher.state.journal_api import Journal
from watcher.state.sidecar import iso_from_epoch
from watcher.state.states import FileState


class Health:
    def __init__(
        self,
        live: LiveConfig,
        journal: Journal,
        client: HeyGenClient,
        pipeline: Pipeline,
        folders: FolderWatches,
        heartbeat: Heartbeat,
        threads_alive: Callable[[], bool],
    ) -> None:
        self.live = live
        self.journal = journal
        self.client = client
        self.pipeline = pipeline
        self.folders = folders
        self.heartbeat = heartbeat
        self._threads_alive = threads_alive

    def check(self) -> tuple[bool, str]:
        """(True, "ok") while working; else False and why (paused, stuck, missing folder)."""
        if self.journal.outage is not None:
            return False, f"work paused: {self.journal.outage}"
        auth_pause = self.pipeline.auth_pause
        if auth_pause.active:
            return False, f"uploads paused: the API refused the key ({auth_pause.reason})"
        outage = self.client.reachability.outage
        if outage is not None:
            return (
                False,
                f"uploads paused: the API is unreachable since {iso_from_epoch(outage.since)} "
                f"({outage.last_error})",
            )
        video_pause = self.pipeline.videos.pause
        if video_pause.active():
            return False, f"video generation paused: {video_pause.reason}"
        if not self.making_progress():
            return False, "stuck: a worker has shown no sign of life for too long"
        failing = self.local_write_failures()
        if failing:
            return False, f"cannot write ({len(failing)} waiting): {failing[0]}"
        missing = self.folders.missing()
        if missing:
            return False, f"folder missing: {', '.join(missing)}"
        blocked = self.folders.blocked()
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
        stall_limit = self.live.current.stall_limit_seconds
        return self._threads_alive() and self.heartbeat.longest_silence() <= stall_limit
