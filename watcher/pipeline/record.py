"""The record step: once a file's asset is known, its video begins, it is moved (if the folder
says so), its sidecar is written and the journal marks it `uploaded`.

`Sidecars` is the one writer of sidecar documents for the whole pipeline: rejections, failures
and uploads all go through it, so a sidecar that cannot be written is logged and counted in one
place.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.heygen.uploads import LocalFile, UploadedAsset
from watcher.pipeline import records
from watcher.pipeline.videos import VideoStage, sidecar_video
from watcher.state import sidecar
from watcher.state.journal import FileRow, Journal
from watcher.state.placement import move_file, moved_path, sidecar_for
from watcher.state.sidecar import iso_from_epoch
from watcher.state.states import FileState

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]
# Video states before the generate request is built: nothing to show in the sidecar yet.
_VIDEO_NOT_STARTED = ("waiting_script", "ready")


class Sidecars:
    def __init__(self, journal: Journal, live: LiveConfig, on_event: EventSink) -> None:
        self.journal = journal
        self.live = live
        self.on_event = on_event

    def write(
        self, path: Path, folder: FolderConfig, document: dict[str, Any]
    ) -> os.stat_result | None:
        """The stat of the written sidecar, or None (logged, counted) when it cannot be."""
        location = sidecar_for(path, folder)
        try:
            return sidecar.write(location, document)
        except OSError as error:
            log.error("cannot write sidecar %s: %s", location, error.strerror or error)
            self.on_event("failure", {"kind": "sidecar"})
            return None

    def uploaded_document(self, row: FileRow) -> dict[str, Any] | None:
        """The sidecar of an uploaded file, rebuilt from the journal (with its video, if any);
        None while the journal knows no asset for it."""
        if row.asset_id is None or row.asset_url is None:
            return None
        local = LocalFile(Path(row.path), row.size, row.content_type or "", row.sha256 or "")
        asset = UploadedAsset(row.asset_id, row.asset_url, row.protocol or "")
        extra: dict[str, Any] = {"mtime_ns": row.mtime_ns}
        if row.reused:
            extra["reused"] = True
        if row.previous_asset_id and row.previous_asset_id != row.asset_id:
            extra["previous_asset_id"] = row.previous_asset_id
        video = self.journal.video(row.path)
        if video is not None and video.state not in _VIDEO_NOT_STARTED:
            extra["video"] = sidecar_video(video)
        # Written again later (a video moved on, a sidecar repaired): the upload's own time.
        uploaded_at = iso_from_epoch(row.updated_at) if row.state is FileState.UPLOADED else None
        return records.uploaded(local, asset, uploaded_at=uploaded_at, **extra)

    def rewrite(self, key: str) -> bool:
        """Write the sidecar of an uploaded file again from the journal (a video moved on)."""
        row = self.journal.get(key)
        document = self.uploaded_document(row) if row is not None else None
        if row is None or document is None:
            return False
        return self.write(Path(key), self.live.current.folder_of(row.folder), document) is not None


class Recorder:
    def __init__(
        self,
        journal: Journal,
        live: LiveConfig,
        sidecars: Sidecars,
        videos: VideoStage,
        run_video_step: Callable[[str], None],
        retry_recording: Callable[[FileRow, str], None],
    ) -> None:
        self.journal = journal
        self.live = live
        self.sidecars = sidecars
        self.videos = videos
        self.run_video_step = run_video_step
        # A sidecar that cannot be written yet: the outcome policy parks the row for a retry.
        self.retry_recording = retry_recording

    def record(self, row: FileRow, *, asset_usable: bool = True) -> None:
        """Asset known: start its video (templated folders), move it, write the sidecar.

        ``asset_usable=False``: the completion said HeyGen is still ingesting the asset, so
        its video waits for it (see `VideoStage.begin`)."""
        config = self.live.current
        folder = config.folder_of(row.folder)
        template = config.template_for(folder)
        if template is not None:
            # Before the move: the companion script is looked for beside the original file.
            self.videos.begin(row, folder, template, asset_usable=asset_usable)
        path = Path(row.path)
        target = moved_path(path, folder)
        if target is not None and path.exists():
            target = move_file(path, target)
            self.journal.move(row.path, str(target))
            log.info("moved to %s", target, extra={"file": row.path})
            path = target
        key = str(path)
        if not self.sidecars.rewrite(key):
            moved = self.journal.get(key)
            if moved is not None and moved.state is FileState.RECORDING:
                self.retry_recording(moved, "cannot write sidecar")
            return
        self.journal.finish_upload(
            key,
            cache=not row.reused,
            slot=None,
            slot_expires_at=None,
            last_error=None,
            next_attempt_at=None,
            sidecar=str(sidecar_for(path, folder)),
        )
        log.info(
            "uploaded as %s%s",
            row.asset_id,
            " (reused)" if row.reused else "",
            extra={"file": key},
        )
        if template is not None:
            self.run_video_step(key)
