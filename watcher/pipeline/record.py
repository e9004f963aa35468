"""The record step: once a file's asset is known, its video begins, it is moved (if the folder
says so), its sidecar is written and the journal marks it `uploaded`.

`Sidecars` is the one writer of sidecar documents for the whole pipeline: rejections, failures
and uploads all go through it, so a sidecar that cannot be written is logged and counted in one
place.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.heygen.uploadfile import LocalFile, UploadedAsset
from watcher.intake import admission
from watcher.pipeline import records
from watcher.pipeline.localretry import local_error_text, local_retry_delay_seconds
from watcher.pipeline.notices import Notices
from watcher.pipeline.video_sidecar import sidecar_video
from watcher.pipeline.videos import VideoStage
from watcher.state import sidecar
from watcher.state.journal import FileRow
from watcher.state.journal_api import Journal
from watcher.state.placement import move_file, moved_path, sidecar_for
from watcher.state.sidecar import iso_from_epoch
from watcher.state.states import FINAL, FileState

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]
# Video states before the generate request is built: nothing to show in the sidecar yet.
_VIDEO_NOT_STARTED = ("waiting_script", "ready")


class Sidecars:
    def __init__(
        self,
        journal: Journal,
        live: LiveConfig,
        on_event: EventSink,
        on_deferred: Callable[[], None] = lambda: None,
    ) -> None:
        self.journal = journal
        self.live = live
        self.on_event = on_event
        # Wakes the housekeeper: a sidecar waits for a second try.
        self.on_deferred = on_deferred

    def write(
        self, path: Path, folder: FolderConfig, document: dict[str, Any], *, defer: bool = True
    ) -> os.stat_result | None:
        """The stat of the written sidecar, or None (logged, counted) when it cannot be. One
        that cannot be written is kept in the journal with why and written again soon
        (`retry_due`), unless ``defer`` is False: the caller then retries on its own (an
        upload's record)."""
        return self._write(path, folder, document, defer)[0]

    def write_or_reason(
        self, path: Path, folder: FolderConfig, document: dict[str, Any], *, defer: bool = True
    ) -> str | None:
        """`write`, returning None on success or why it failed."""
        return self._write(path, folder, document, defer)[1]

    def _write(
        self, path: Path, folder: FolderConfig, document: dict[str, Any], defer: bool
    ) -> tuple[os.stat_result | None, str | None]:
        location = sidecar_for(path, folder)
        try:
            written = sidecar.write(location, document)
        except OSError as error:
            reason = f"cannot write sidecar {location}: {local_error_text(error)}"
            log.error("%s", reason, extra={"file": str(path)})
            self.on_event("failure", {"kind": "sidecar"})
            if defer:
                self.journal.defer_sidecar(
                    str(location),
                    str(path),
                    str(folder.path),
                    document,
                    reason,
                    lambda failures: time.time() + local_retry_delay_seconds(failures),
                )
                self.on_deferred()
            return None, reason
        self.journal.sidecar_written(str(location))
        return written, None

    def retry_due(self, now: float) -> None:
        """Write the sidecars whose earlier write failed and whose time has come."""
        for pending in self.journal.pending_sidecars(due_before=now):
            folder = self.live.current.folder_of(pending.folder)
            self.write(Path(pending.file), folder, pending.document)

    def uploaded_document(self, row: FileRow) -> dict[str, Any] | None:
        """The sidecar of an uploaded file, rebuilt from the journal (with its video, if any);
        None while the journal knows no asset for it."""
        if row.asset_id is None or row.asset_url is None:
            return None
        local = LocalFile(Path(row.path), row.size, row.content_type or "", row.sha256 or "")
        asset = UploadedAsset(row.asset_id, row.asset_url, row.protocol or "")
        extra: dict[str, Any] = {"mtime_ns": row.mtime_ns}
        conversion = (
            self.journal.conversion(row.sha256, row.content_type)
            if row.sha256 and row.content_type
            else None
        )
        if conversion is not None and conversion.output_sha256 and conversion.output_size:
            # What went up is the converted file; the original is named as its source.
            local = LocalFile(
                local.path, conversion.output_size, local.content_type, conversion.output_sha256
            )
            extra["converted_from"] = records.converted_from(conversion)
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

    def kept_document(self, row: FileRow) -> dict[str, Any] | None:
        """What the sidecar of a decided file must say, rebuilt from the journal: uploaded,
        rejected (when its folder writes rejection sidecars) or failed for good. None when the
        file has no sidecar to keep."""
        if row.state is FileState.UPLOADED:
            return self.uploaded_document(row)
        if row.state is FileState.FAILED:
            return records.failed_from_row(row)
        if row.state is FileState.REJECTED:
            folder = self.live.current.folder_of(row.folder)
            if folder.on_reject != "sidecar":
                return None
            protocol = self.live.current.api.upload_protocol
            return records.rejected_from_row(row, admission.accepted_types(folder, protocol))
        return None

    def rewrite(self, key: str) -> bool:
        """Write the sidecar of an uploaded file again from the journal (a video moved on)."""
        return self.rewrite_or_reason(key) is None

    def rewrite_or_reason(
        self, key: str, *, defer: bool = True, row: FileRow | None = None
    ) -> str | None:
        """`rewrite`, returning None on success or why it failed. ``row``: the caller's fresh
        copy of the row for ``key``, spared a second read."""
        if row is None:
            row = self.journal.get(key)
        document = self.uploaded_document(row) if row is not None else None
        if row is None or document is None:
            return "the journal knows no asset for it"
        folder = self.live.current.folder_of(row.folder)
        return self.write_or_reason(Path(key), folder, document, defer=defer)


class Recorder:
    def __init__(
        self,
        journal: Journal,
        live: LiveConfig,
        sidecars: Sidecars,
        videos: VideoStage,
        run_video_step: Callable[[str], None],
        retry_recording: Callable[[FileRow, str], None],
        notices: Notices,
    ) -> None:
        self.notices = notices
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
        # The move and the sidecar are on the shared folder, where no fence reaches: the
        # claim is renewed (and found still this daemon's) just before them, so they come a
        # whole lease before any other daemon could take the file over.
        if not self.journal.claim(row.path):
            found = self.journal.get(row.path)
            if found is not None and found.state not in FINAL:
                log.warning(
                    "another daemon took the file over (this one stalled past its lease); "
                    "not recording it here",
                    extra={"file": row.path},
                )
            return
        config = self.live.current
        folder = config.folder_of(row.folder)
        template = config.template_for(folder)
        if template is not None:
            # Before the move: the companion script is looked for beside the original file.
            self.videos.begin(row, folder, template, asset_usable=asset_usable)
        path = Path(row.path)
        current: FileRow | None = row  # the row as read just before: still true unless moved
        target = moved_path(path, folder)
        if target is not None and path.exists():
            try:
                target = move_file(path, target)
            except OSError as error:
                reason = f"cannot move it to {target}: {local_error_text(error)}"
                log.error("%s", reason, extra={"file": row.path})
                self.retry_recording(row, reason)
                return
            self.journal.move(row.path, str(target), inode=_inode_of(target))
            current = None
            log.info("moved to %s", target, extra={"file": row.path})
            path = target
        key = str(path)
        if template is not None:
            current = None  # the video step may have changed what the sidecar shows
        failure = self.sidecars.rewrite_or_reason(key, defer=False, row=current)
        if failure is not None:
            moved = self.journal.get(key)
            if moved is not None and moved.state is FileState.RECORDING:
                self.retry_recording(moved, failure)
            return
        written = current
        events = self.notices.events(
            "uploaded", key, folder, lambda: self._uploaded_now(key, written)
        )
        self.journal.finish_upload(
            key,
            cache=not row.reused,
            events=events,
            slot=None,
            slot_expires_at=None,
            last_error=None,
            next_attempt_at=None,
            sidecar=str(sidecar_for(path, folder)),
        )
        if events:
            self.notices.on_written()
        log.info(
            "uploaded as %s%s",
            row.asset_id,
            " (reused)" if row.reused else "",
            extra={"file": key},
        )
        if template is not None:
            self.run_video_step(key)

    def _uploaded_now(self, key: str, current: FileRow | None) -> dict[str, Any] | None:
        """The sidecar a receiver is told of: as just written (the row is `recording` still,
        so its upload time is now). ``current``: the row, when nothing changed it since."""
        row = current if current is not None else self.journal.get(key)
        return self.sidecars.uploaded_document(row) if row is not None else None


def _inode_of(path: Path) -> int | None:
    try:
        return path.lstat().st_ino
    except OSError:
        return None
