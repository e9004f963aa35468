"""What every video step works with: the stage's collaborators, the shared quota pause, and
the one way a video comes to an end (`VideoContext.finish`).

The step modules (`video_asset`, `video_script`, `video_submit`, `video_poll`, `video_fetch`)
take a `VideoContext`; `videos.VideoStage` is one, and wires the steps together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from watcher.config.live import LiveConfig
from watcher.heygen.client import HeyGenClient
from watcher.pipeline.notices import Notices
from watcher.pipeline.video_sidecar import sidecar_video
from watcher.state.journal import VideoRow
from watcher.state.journal_api import Journal

# Every video step logs under the stage's name: the messages are about the video stage,
# whichever of its modules writes them.
VIDEO_LOGGER = "watcher.pipeline.videos"
log = logging.getLogger(VIDEO_LOGGER)

LOST_ANSWER = (
    "the answer to the generate request was lost: the video may or may not have been "
    "created; run `heygen-watcher retry` to submit it again"
)


@dataclass
class VideoPause:
    """402: video generation waits (uploads go on); shared by every video."""

    until: float = 0.0
    reason: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, seconds: float, reason: str) -> None:
        with self._lock:
            self.until = time.time() + seconds
            self.reason = reason

    def active(self) -> bool:
        with self._lock:
            return time.time() < self.until

    def clear_if_over(self) -> bool:
        """True once, when a pause that has run out is cleared."""
        with self._lock:
            if self.until and time.time() >= self.until:
                self.until = 0.0
                self.reason = ""
                return True
            return False


@dataclass
class VideoContext:
    live: LiveConfig
    journal: Journal
    client: HeyGenClient
    rewrite_sidecar: Callable[[str], object]
    on_event: Callable[[str, dict[str, Any]], None] = lambda kind, details: None
    pause: VideoPause = field(default_factory=VideoPause)
    # Failed local writes of each file's download, for the backoff (reset by a success).
    local_failures: dict[str, int] = field(default_factory=dict)
    # An error that may mean HeyGen is down: True when it is (a probe failed too, as for the
    # uploads); the video then waits for the API, not on its own interval.
    on_outage: Callable[[Exception], bool] = lambda error: False
    # Who is told when a video is done (set by `build_pipeline`).
    notices: Notices = field(init=False)

    def __post_init__(self) -> None:
        self.notices = Notices(self.live)

    def finish(self, row: VideoRow, state: str, *, error: str | None) -> None:
        """The video's last state: no next look, and its sidecar says so."""
        event = "video_completed" if state == "completed" else "video_failed"
        file_row = self.journal.get(row.path)
        folder = self.live.current.folder_of(file_row.folder if file_row else "")
        done = replace(row, state=state, error=error)
        events = self.notices.events(
            event, row.path, folder, lambda: {"video": sidecar_video(done)}
        )
        self.journal.update_video(row.path, state=state, error=error, next_at=None, events=events)
        if events:
            self.notices.on_written()
        if state != "completed":
            log.warning("video %s: %s", state, error, extra={"file": row.path})
        self.on_event("video", {"status": state})
        self.rewrite_sidecar(row.path)
