"""The video stage: render a template, generate, wait in the journal, download.

Nothing sleeps per video: each step is short and leaves the video's next look (``next_at``)
in the journal, where the daemon's housekeeping finds it, so a restart simply carries on.
`VideoStage` starts a file's video once it is uploaded and takes one step at a time, by the
video's state: waiting for its asset (`video_asset`), for its script (`video_script`),
submitting it (`video_submit`), polling it (`video_poll`), saving it (`video_fetch`).
`VideoRunner` runs those steps on the worker pool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watcher.config import FolderConfig
from watcher.config.templates import Template
from watcher.heygen.retry import requests_for
from watcher.pipeline.video_asset import wait_for_asset
from watcher.pipeline.video_context import LOST_ANSWER, VIDEO_LOGGER, VideoContext
from watcher.pipeline.video_fetch import DOWNLOAD_HOLD_SECONDS, download
from watcher.pipeline.video_poll import poll
from watcher.pipeline.video_script import look_for_script, script_path_for
from watcher.pipeline.video_submit import submit
from watcher.state.journal import FileRow, VideoRow

log = logging.getLogger(VIDEO_LOGGER)

# Steps that call HeyGen: while the API is unreachable they wait (due) for the daemon's probe,
# which hands every due video on at once when the API answers again.
_CALLS_THE_API = frozenset(
    {"waiting_asset", "ready", "submitted", "waiting", "pending", "processing", "downloading"}
)


@dataclass
class VideoStage(VideoContext):
    # -- entry points ------------------------------------------------------------------------
    def begin(
        self, row: FileRow, folder: FolderConfig, template: Template, *, asset_usable: bool = True
    ) -> None:
        """Called once a templated folder's file is uploaded, before its sidecar is final.

        ``asset_usable=False``: HeyGen is still ingesting the asset; the video waits for it."""
        if self.journal.video(row.path) is not None:
            return  # a resumed file: its video is already on its way (or done)
        script_path = script_path_for(Path(row.path)) if template.uses_script else None
        now = time.time()
        if asset_usable:
            state = "waiting_script" if script_path else "ready"
            deadline = now + template.script_wait_seconds if script_path else None
        else:
            log.info("asset still processing; the video waits for it", extra={"file": row.path})
            state, deadline = "waiting_asset", now + template.timeout_minutes * 60
        self.journal.add_video(
            row.path,
            template.name,
            template.endpoint,
            state,
            script_path=str(script_path) if script_path else None,
            # Not due until its file is recorded: the recorder takes the first step then, so
            # no step (of any daemon) runs while the file's sidecar is still being written.
            next_at=None,
            deadline=deadline,
        )

    def resume(self) -> None:
        """At start: a generate request found in flight may have been carried out."""
        for row in self.journal.videos_in(("submitting",)):
            log.warning(
                "video request was in flight when the daemon stopped; not re-sending",
                extra={"file": row.path},
            )
            self.journal.update_video(row.path, state="unknown", error=LOST_ANSWER)
            self.rewrite_sidecar(row.path)

    def step(self, path: str) -> None:
        """Move one video forward by one step."""
        row = self.journal.video(path)
        if row is None:
            return
        template = self.live.current.templates.get(row.template)
        if template is None:
            self.finish(row, "failed", error=f"template {row.template!r} is no longer configured")
            return
        handler = _STEPS.get(row.state)
        if row.state in _CALLS_THE_API and self.client.reachability.down:
            return  # left due: the probe that finds the API back hands it on at once
        if handler is None:
            return
        # One daemon of a fleet takes each step (one status poll per interval, not one per
        # daemon): the next look moves a hold ahead (a download may take long: held longer).
        now = time.time()
        hold = self.live.current.lease_seconds
        if row.state == "downloading":
            hold = max(hold, DOWNLOAD_HOLD_SECONDS)
        if not self.journal.claim_video_step(path, now, hold):
            return
        handler(self, row, template)
        # A step that set no next look of its own leaves the video due as it found it. (One
        # that dies mid-way leaves the hold: another daemon takes the step after it.)
        after = self.journal.video(path)
        if after is not None and after.next_at == now + hold:
            self.journal.update_video(path, next_at=row.next_at if row.next_at is not None else now)


def _wait_for_asset(stage: VideoStage, row: VideoRow, template: Template) -> None:
    if wait_for_asset(stage, row, template):
        stage.step(row.path)  # usable now: its script or its submission goes ahead at once


# Each state's step.
_STEPS: dict[str, Callable[[VideoStage, VideoRow, Template], None]] = {
    "waiting_asset": _wait_for_asset,
    "waiting_script": look_for_script,
    "ready": submit,
    "submitted": poll,
    "waiting": poll,
    "pending": poll,
    "processing": poll,
    "downloading": download,
}


class VideoRunner:
    """Runs video steps on the worker pool: each file's steps one at a time, each queued once.

    A step leaves the video's next look in the journal; `on_step_done` wakes the housekeeper so
    it sees that time.
    """

    def __init__(
        self,
        stage: VideoStage,
        run_task: Callable[[Callable[[], None], str], bool],
        on_step_done: Callable[[], None],
    ) -> None:
        self.stage = stage
        self.run_task = run_task
        self.on_step_done = on_step_done
        self._lock = threading.Lock()
        self._queued: set[str] = set()
        self._running: set[str] = set()

    def submit(self, key: str) -> None:
        """Queue one step of a file's video (a poll, a download, a submission)."""
        with self._lock:
            if key in self._queued:
                return
            self._queued.add(key)

        def step() -> None:
            with self._lock:
                self._queued.discard(key)
            self.run_step(key)

        if not self.run_task(step, f"the video step of {key}"):
            with self._lock:
                self._queued.discard(key)

    def run_step(self, key: str) -> None:
        """One step of a video, never two at once for the same file."""
        with self._lock:
            if key in self._running:
                return  # the step under way leaves the next look in the journal
            self._running.add(key)
        try:
            with requests_for(key):
                self.stage.step(key)
        finally:
            with self._lock:
                self._running.discard(key)
            self.on_step_done()
