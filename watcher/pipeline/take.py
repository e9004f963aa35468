"""Where a file's fate is decided: ignore it, skip it, refuse it (with a sidecar saying why),
adopt what an earlier run recorded, carry on with a retry, or admit it and start its upload.

Every decision is committed to the journal before the next step starts, so a process killed
anywhere resumes from the last committed step.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.convert.ffmpeg import ConversionStopped
from watcher.heygen.body import FileChangedError, sha256_file
from watcher.intake import admission
from watcher.intake.admission import Decision, Outcome
from watcher.pipeline import records
from watcher.pipeline.conversion import ConvertStep
from watcher.pipeline.notices import Notices
from watcher.pipeline.outcome import OutcomePolicy
from watcher.pipeline.record import Sidecars
from watcher.pipeline.upload import Uploader
from watcher.pipeline.workpool import Work
from watcher.state import sidecar
from watcher.state.journal import FileRow
from watcher.state.journal_api import Journal
from watcher.state.placement import sidecar_for
from watcher.state.rows import adoptable_row, new_row
from watcher.state.states import FileState

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]
# Files up to this size go up in v3 batches (hashed first); bigger ones alone, hashed on the way.
BATCH_MAX_FILE_BYTES = 16 * 1024 * 1024
# A row whose upload was cut short keeps its slot when the file is admitted again.
_SLOT_KEEPING = (FileState.QUEUED, FileState.UPLOADING, FileState.RETRYING)


class Taker:
    def __init__(
        self,
        journal: Journal,
        live: LiveConfig,
        sidecars: Sidecars,
        uploader: Uploader,
        outcome: OutcomePolicy,
        *,
        checksum_first: bool,
        hand_to_batcher: Callable[[Path], None] | None,
        renotice: Callable[[Path, FolderConfig], None],
        on_event: EventSink,
        converting: ConvertStep,
        notices: Notices,
    ) -> None:
        self.journal = journal
        self.live = live
        self.sidecars = sidecars
        self.uploader = uploader
        self.outcome = outcome
        # The protocol signs the checksum into the slot (v3): hash before anything is sent.
        self.checksum_first = checksum_first
        # v3 batches: several files ready at once share slot requests and completion.
        self.hand_to_batcher = hand_to_batcher
        self.renotice = renotice
        self.on_event = on_event
        self.converting = converting
        self.notices = notices

    def process(self, work: Work) -> None:
        folder = work.folder
        path = work.path
        relative = path.relative_to(folder.path) if path.is_relative_to(folder.path) else path
        if admission.screen_name(relative, folder.ignore, scripts=folder.template is not None):
            return
        try:
            info = path.lstat()
        except FileNotFoundError:
            self.outcome.vanished(str(path))
            return
        verdict = admission.screen_stat(info)
        if verdict is not None and verdict.outcome is Outcome.IGNORE:
            return
        if verdict is not None and verdict.outcome is Outcome.SKIP:
            log.info("skipped %s", verdict.reason, extra={"file": str(path)})
            self.on_event("skipped", {"reason": verdict.reason})
            return
        row = self.journal.get(str(path))
        unchanged = row is not None and row.same_file(info.st_size, info.st_mtime_ns, info.st_ino)
        if unchanged and row is not None:
            if work.row is not None and row.state is not FileState.REJECTED:
                self.uploader.upload(row.path)  # a retry or a resume: carry on from the row
                return
            if row.state is not FileState.QUEUED:
                return  # nothing changed since we decided; retries come from the scheduler
        earlier = None if row is not None else sidecar.read(sidecar_for(path, folder))
        if earlier is not None and self._adopt(path, folder, info, earlier):
            return
        if verdict is None:
            verdict = admission.classify(path, info, folder, self.live.current.api.upload_protocol)
        if verdict.outcome is Outcome.SKIP:
            # It became something else (a symlink, a FIFO) between the look and the sniff.
            log.info("skipped %s", verdict.reason, extra={"file": str(path)})
            self.on_event("skipped", {"reason": verdict.reason})
            return
        if verdict.target_type is not None:
            # A type the folder converts (or an MP4 that may hold HEVC): the converter looks.
            try:
                verdict = self.converting.judge(path, folder, verdict)
            except ConversionStopped:
                return  # the daemon is stopping: the next start looks at the file again
        if verdict.outcome is Outcome.REJECT or verdict.content_type is None:
            self._reject(path, folder, info, verdict)
            return
        converted = verdict if verdict.plan is not None else None
        self._admit(path, folder, info, verdict.content_type, row, earlier, converted)

    def _adopt(
        self, path: Path, folder: FolderConfig, info: os.stat_result, document: dict[str, Any]
    ) -> bool:
        """A sidecar from an earlier run (or a lost journal) that still matches: skip the file."""
        row = adoptable_row(path, folder, info, document)
        if row is None:
            return False
        self.journal.put(row)
        return True

    def _reject(
        self, path: Path, folder: FolderConfig, info: os.stat_result, verdict: Decision
    ) -> None:
        log.info("rejected: %s", verdict.reason, extra={"file": str(path)})
        self.on_event("rejected", {"reason": verdict.reason_code})
        accepted = admission.accepted_types(folder, self.live.current.api.upload_protocol)
        document = records.rejected(path, info, verdict, accepted)
        row = new_row(
            path,
            folder,
            info,
            time.time(),
            FileState.REJECTED,
            last_error=verdict.reason,
            content_type=verdict.detected_type,
        )
        events = self.notices.events("rejected", str(path), folder, lambda: document)
        self.journal.put(row, events=events)
        if events:
            self.notices.on_written()
        if folder.on_reject == "sidecar":
            self.sidecars.write(path, folder, document)

    def _admit(
        self,
        path: Path,
        folder: FolderConfig,
        info: os.stat_result,
        content_type: str,
        row: FileRow | None,
        earlier: dict[str, Any] | None,
        converted: Decision | None = None,
    ) -> None:
        """Queue the file for its upload as ``content_type``; ``converted``: the decision to
        convert it to ``content_type`` first (hashed first then: the asset cache and the
        conversion's record key on the original's bytes)."""
        if row is not None and row.state is FileState.UPLOADED:
            previous_sha256, previous_asset = row.sha256, row.asset_id
        elif earlier is not None and earlier.get("status") == "uploaded":
            previous_sha256, previous_asset = earlier.get("sha256"), earlier.get("asset_id")
        else:
            previous_sha256 = previous_asset = None
        digest: str | None = None
        converting = converted is not None
        if converting or self._hash_first(info.st_size, content_type, previous_sha256 is not None):
            try:
                digest = sha256_file(path)
            except FileChangedError as error:
                # Swapped for a FIFO or a device since it was judged: judge it again.
                log.info("%s", error, extra={"file": str(path)})
                self.renotice(path, folder)
                return
            after = path.lstat()
            if (after.st_size, after.st_mtime_ns) != (info.st_size, info.st_mtime_ns):
                log.info(
                    "file changed while being hashed; waiting for it to settle",
                    extra={"file": str(path)},
                )
                self.renotice(path, folder)
                return
        now = time.time()
        if digest is not None and previous_sha256 == digest:
            # Same bytes (touched, or copied over with identical content): nothing to upload.
            if row is not None:
                self.journal.update(
                    str(path), size=info.st_size, mtime_ns=info.st_mtime_ns, inode=info.st_ino
                )
            else:
                self.journal.put(new_row(path, folder, info, now, FileState.UPLOADED, earlier))
            self._refresh_sidecar_fingerprint(path, folder, info)
            return
        fresh = new_row(
            path,
            folder,
            info,
            now,
            FileState.QUEUED,
            sha256=digest,
            content_type=content_type,
            previous_asset_id=previous_asset,
        )
        if (
            row is not None
            and row.slot
            and row.state in _SLOT_KEEPING
            and row.content_type == content_type
        ):
            # An upload of this path was cut short (its bytes changed under it): PUT into the
            # same slot again, which replaces its bytes instead of leaving a stray asset.
            fresh = replace(fresh, slot=row.slot, slot_expires_at=row.slot_expires_at)
        if converted is not None and digest is not None:
            self.converting.plan(digest, converted, info.st_size)
        self.journal.put(fresh)
        if self.hand_to_batcher is not None and digest is not None and not converting:
            self.hand_to_batcher(path)
            return
        self.uploader.upload(str(path))

    def _hash_first(self, size: int, content_type: str, uploaded_before: bool) -> bool:
        """Hash before uploading only when something needs the hash up front: the protocol
        (v3 signs it), a comparison with this path's earlier upload, or a cached asset of the
        same size. Otherwise the bytes are hashed while they are sent: one read, not two."""
        if self.checksum_first or uploaded_before:
            return True
        if self.hand_to_batcher is not None and size <= BATCH_MAX_FILE_BYTES:
            return True  # batch creates carry each file's checksum; small files hash quickly
        cache_after = time.time() - self.live.current.asset_cache_days * 86400
        return self.journal.may_have_asset(size, content_type, cache_after)

    def _refresh_sidecar_fingerprint(
        self, path: Path, folder: FolderConfig, info: os.stat_result
    ) -> None:
        location = sidecar_for(path, folder)
        document = sidecar.read(location)
        if document is not None and document.get("mtime_ns") != info.st_mtime_ns:
            document["mtime_ns"] = info.st_mtime_ns
            self.sidecars.write(path, folder, document)
