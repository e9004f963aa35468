"""One file's way through admit → sniff → hash → upload → sidecar, and what failures mean.

Every step commits its state to the journal before the next one starts, so a process killed
anywhere resumes from the last committed step (see `Daemon.resume_unfinished`). The threads
that run these steps, ``api.concurrency`` of them, are the `WorkPool`'s.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher import gate, records, sidecar
from watcher.config import Config, FolderConfig
from watcher.gate import Decision, Outcome
from watcher.heygen.body import FileChangedError, sha256_file
from watcher.heygen.errors import ApiError, AuthError, PermanentError
from watcher.heygen.uploads import LocalFile, UploadedAsset, UploadProtocol, UploadSlot
from watcher.journal import FINAL_STATES, FileRow, Journal
from watcher.placement import move_file, moved_path, sidecar_for
from watcher.videostage import VideoStage, sidecar_video
from watcher.workpool import Work, WorkPool

if TYPE_CHECKING:
    from watcher.batching import V3Batcher

log = logging.getLogger(__name__)

RETRY_HINT = "at the next start of the daemon, or with `heygen-watcher retry`"
# Files up to this size go up in v3 batches (hashed first); bigger ones alone, hashed on the way.
BATCH_MAX_FILE_BYTES = 16 * 1024 * 1024


class AuthPause:
    """Shared by all workers: set on a 401, cleared when the key changes. (A 403 refuses one
    request, not the key: that file fails with the reason and the others go on.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: str | None = None

    def set(self, reason: str) -> bool:
        with self._lock:
            first = self.reason is None
            self.reason = reason
            return first

    def clear(self) -> None:
        with self._lock:
            self.reason = None

    @property
    def active(self) -> bool:
        return self.reason is not None


@dataclass
class Pipeline:
    config: Config
    journal: Journal
    protocol: UploadProtocol
    renotice: Callable[[Path, FolderConfig], None]
    auth_pause: AuthPause = field(default_factory=AuthPause)
    on_event: Callable[[str, dict[str, Any]], None] = lambda kind, details: None
    on_retry_scheduled: Callable[[], None] = lambda: None
    videos: VideoStage | None = None
    batcher: V3Batcher | None = None
    _videos_queued: set[str] = field(default_factory=set)
    _videos_running: set[str] = field(default_factory=set)
    _video_lock: threading.Lock = field(default_factory=threading.Lock)
    pool: WorkPool = field(init=False)

    def __post_init__(self) -> None:
        self.pool = WorkPool(self.config.api.concurrency, self.process, self.renotice)

    def submit_video(self, key: str) -> None:
        """Queue one step of a file's video (a poll, a download, a submission)."""
        with self._video_lock:
            if key in self._videos_queued:
                return
            self._videos_queued.add(key)

        def step() -> None:
            with self._video_lock:
                self._videos_queued.discard(key)
            self.run_video_step(key)

        self.pool.run_task(step, f"the video step of {key}")

    # -- one file ----------------------------------------------------------------------------
    def process(self, work: Work) -> None:
        folder = work.folder
        path = work.path
        relative = path.relative_to(folder.path) if path.is_relative_to(folder.path) else path
        screened = gate.screen_name(relative, folder.ignore, scripts=folder.template is not None)
        if screened is not None:
            return
        try:
            info = path.lstat()
        except FileNotFoundError:
            self._vanished(path)
            return
        verdict = gate.screen_stat(info)
        if verdict is not None and verdict.outcome is Outcome.IGNORE:
            return
        if verdict is not None and verdict.outcome is Outcome.SKIP:
            log.info("skipped %s", verdict.reason, extra={"file": str(path)})
            self.on_event("skipped", {"reason": verdict.reason})
            return
        row = self.journal.get(str(path))
        unchanged = row is not None and row.same_file(info.st_size, info.st_mtime_ns, info.st_ino)
        if unchanged and work.row is not None and row is not None and row.state != "rejected":
            self.upload(row.path)  # a retry or a resume: carry on where the row stands
            return
        if unchanged and row is not None and row.state != "queued":
            return  # nothing changed since we decided; retries come from the scheduler
        earlier = None if row is not None else sidecar.read(sidecar_for(path, folder))
        if earlier is not None and self._adopt_sidecar(path, folder, info, earlier):
            return
        if verdict is None:
            verdict = gate.classify(path, info, folder)
        if verdict.outcome is Outcome.REJECT:
            self._reject(path, folder, info, verdict)
            return
        assert verdict.content_type is not None
        self._admit(path, folder, info, verdict.content_type, row, earlier)

    def _vanished(self, path: Path) -> None:
        row = self.journal.get(str(path))
        if row is not None and row.state not in FINAL_STATES:
            log.info("file vanished before upload", extra={"file": str(path)})
            self.journal.forget(str(path))

    def _adopt_sidecar(
        self, path: Path, folder: FolderConfig, info: Any, document: dict[str, Any]
    ) -> bool:
        """A sidecar from an earlier run (or a lost journal) that still matches: skip the file."""
        row = adoptable_row(path, folder, info, document)
        if row is None:
            return False
        self.journal.put(row)
        return True

    def _reject(self, path: Path, folder: FolderConfig, info: Any, verdict: Decision) -> None:
        log.info("rejected: %s", verdict.reason, extra={"file": str(path)})
        self.on_event("rejected", {"reason": verdict.reason_code})
        now = time.time()
        self.journal.put(
            _new_row(
                path,
                folder,
                info,
                now,
                "rejected",
                last_error=verdict.reason,
                content_type=verdict.detected_type,
            )
        )
        if folder.on_reject == "sidecar":
            document = records.rejected(path, info, verdict, folder.types)
            self._write_sidecar(path, folder, document)

    def _admit(
        self,
        path: Path,
        folder: FolderConfig,
        info: Any,
        content_type: str,
        row: FileRow | None,
        earlier: dict[str, Any] | None,
    ) -> None:
        if row is not None and row.state == "uploaded":
            previous_sha256, previous_asset = row.sha256, row.asset_id
        elif earlier is not None and earlier.get("status") == "uploaded":
            previous_sha256, previous_asset = earlier.get("sha256"), earlier.get("asset_id")
        else:
            previous_sha256 = previous_asset = None
        digest: str | None = None
        if self._hash_first(info.st_size, content_type, previous_sha256 is not None):
            digest = sha256_file(path)
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
                self.journal.put(_new_row(path, folder, info, now, "uploaded", earlier))
            self._refresh_sidecar_fingerprint(path, folder, info)
            return
        fresh = _new_row(
            path,
            folder,
            info,
            now,
            "queued",
            sha256=digest,
            content_type=content_type,
            previous_asset_id=previous_asset,
        )
        if (
            row is not None
            and row.slot
            and row.state in ("queued", "uploading", "retrying")
            and row.content_type == content_type
        ):
            # An upload of this path was cut short (its bytes changed under it): PUT into the
            # same slot again, which replaces its bytes instead of leaving a stray asset.
            fresh = replace(fresh, slot=row.slot, slot_expires_at=row.slot_expires_at)
        self.journal.put(fresh)
        if self.batcher is not None and digest is not None:
            # Several files ready at once go up together: slots and completion in batches.
            self.pool.hand_off(path)
            self.batcher.enqueue(str(path))
            return
        self.upload(str(path))

    def _hash_first(self, size: int, content_type: str, uploaded_before: bool) -> bool:
        """Hash before uploading only when something needs the hash up front: the protocol
        (v3 signs it), a comparison with this path's earlier upload, or a cached asset of the
        same size. Otherwise the bytes are hashed while they are sent: one read, not two."""
        if self.protocol.needs_checksum or uploaded_before:
            return True
        if self.batcher is not None and size <= BATCH_MAX_FILE_BYTES:
            return True  # batch creates carry each file's checksum; small files hash quickly
        cache_after = time.time() - self.config.asset_cache_days * 86400
        return self.journal.may_have_asset(size, content_type, cache_after)

    def _refresh_sidecar_fingerprint(self, path: Path, folder: FolderConfig, info: Any) -> None:
        location = sidecar_for(path, folder)
        document = sidecar.read(location)
        if document is not None and document.get("mtime_ns") != info.st_mtime_ns:
            document["mtime_ns"] = info.st_mtime_ns
            self._write_sidecar(path, folder, document)

    # -- upload and record -------------------------------------------------------------------
    def upload(self, key: str) -> None:
        """Carry a journal row from `queued`/`uploading`/`recording` to `uploaded`."""
        row = self.journal.get(key)
        if row is None or row.state in FINAL_STATES:
            return
        asset_usable = True
        if row.state != "recording":
            if self.auth_pause.active:
                self.journal.update(key, state="held")
                return
            asset = self._send(row)
            if asset is None:
                return
            asset_usable = asset.usable
            row = self.journal.get(key)
            assert row is not None
        self._record(row, asset_usable=asset_usable)

    def _send(self, row: FileRow) -> UploadedAsset | None:
        path = Path(row.path)
        assert row.content_type is not None
        local = LocalFile(path, row.size, row.content_type, row.sha256)
        cache_after = time.time() - self.config.asset_cache_days * 86400
        cached = (
            self.journal.cached_asset(row.sha256, row.content_type, cache_after)
            if row.sha256
            else None
        )
        if cached is not None:
            log.info(
                "same bytes already uploaded; reusing asset %s",
                cached.asset_id,
                extra={"file": row.path},
            )
            self.journal.update(
                row.path,
                state="recording",
                asset_id=cached.asset_id,
                asset_url=cached.url,
                protocol=cached.protocol,
                reused=1,
            )
            return UploadedAsset(cached.asset_id, cached.url, cached.protocol)
        self.journal.update(row.path, state="uploading", attempts=row.attempts + 1)
        started = time.monotonic()
        try:
            asset = self.protocol.upload(
                local,
                resume=row.upload_slot(),
                on_slot=lambda slot: self._slot_taken(row.path, slot),
            )
        except (ApiError, OSError) as error:
            self.upload_failed(row, error)
            return None
        return self.upload_succeeded(row, asset, started)

    def upload_failed(self, row: FileRow, error: ApiError | OSError) -> None:
        """Decide what a failed upload attempt means for its file."""
        if isinstance(error, AuthError):
            self._hold_for_auth(row, error)
        elif isinstance(error, FileChangedError):
            self._requeue_changed(row, str(error))
        elif isinstance(error, PermanentError):
            self._fail(row, str(error), final=True)
        elif isinstance(error, ApiError):
            self._fail(row, str(error), final=False)
        elif isinstance(error, FileNotFoundError):
            self._vanished(Path(row.path))
        else:
            self._fail(row, f"cannot read the file: {error.strerror or error}", final=False)

    def upload_succeeded(
        self, row: FileRow, asset: UploadedAsset, started: float
    ) -> UploadedAsset | None:
        """Record the asset of a finished upload (state `recording`), unless the file changed."""
        sha256 = row.sha256 or asset.sha256
        if row.sha256 is None and not self._unchanged_since_admitted(row):
            # Hashed on the way: the stat must show the same file, or what went up may be a mix.
            self._requeue_changed(row, "file changed during its upload")
            return None
        self.on_event(
            "uploaded",
            {
                "content_type": row.content_type,
                "bytes": row.size,
                "seconds": time.monotonic() - started,
            },
        )
        self.journal.update(
            row.path,
            state="recording",
            asset_id=asset.asset_id,
            asset_url=asset.url,
            protocol=asset.protocol,
            sha256=sha256,
            reused=0,
        )
        return asset

    def _requeue_changed(self, row: FileRow, reason: str) -> None:
        """The file changed under its upload: look again once it settles (keeping its slot)."""
        log.info("%s; it will be uploaded again once it settles", reason, extra={"file": row.path})
        self.journal.update(row.path, state="queued")
        self._renotice_row(row)

    @staticmethod
    def _unchanged_since_admitted(row: FileRow) -> bool:
        try:
            info = Path(row.path).lstat()
        except OSError:
            return False
        return row.same_file(info.st_size, info.st_mtime_ns, info.st_ino)

    def _slot_taken(self, key: str, slot: UploadSlot) -> None:
        # Committed before the first byte is sent: a resumed upload reuses this slot.
        self.journal.record_slot(key, slot)

    def _record(self, row: FileRow, *, asset_usable: bool = True) -> None:
        """Asset known: start its video (templated folders), move it, write the sidecar.

        ``asset_usable=False``: the completion said HeyGen is still ingesting the asset, so
        its video waits for it (see `VideoStage.begin`)."""
        folder = self.folder_of(row)
        template = self.config.template_for(folder)
        if template is not None and self.videos is not None:
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
        if not self.rewrite_sidecar(key):
            moved = self.journal.get(key)
            if moved is not None:
                self._schedule_retry(moved, "cannot write sidecar", state="recording")
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

    def uploaded_document(self, row: FileRow) -> dict[str, Any]:
        """The sidecar of an uploaded file, rebuilt from the journal (with its video, if any)."""
        assert row.asset_id is not None and row.asset_url is not None
        local = LocalFile(Path(row.path), row.size, row.content_type or "", row.sha256 or "")
        asset = UploadedAsset(row.asset_id, row.asset_url, row.protocol or "")
        extra: dict[str, Any] = {"mtime_ns": row.mtime_ns}
        if row.reused:
            extra["reused"] = True
        if row.previous_asset_id and row.previous_asset_id != row.asset_id:
            extra["previous_asset_id"] = row.previous_asset_id
        video = self.journal.video(row.path)
        if video is not None and video.state not in ("waiting_script", "ready"):
            extra["video"] = sidecar_video(video)
        return records.uploaded(local, asset, **extra)

    def rewrite_sidecar(self, key: str) -> bool:
        row = self.journal.get(key)
        if row is None or row.asset_id is None:
            return False
        return self._write_sidecar(Path(key), self.folder_of(row), self.uploaded_document(row))

    def run_video_step(self, key: str) -> None:
        """One step of a video, never two at once for the same file."""
        if self.videos is None:
            return
        with self._video_lock:
            if key in self._videos_running:
                return  # the step under way leaves the next look in the journal
            self._videos_running.add(key)
        try:
            self.videos.step(key)
        finally:
            with self._video_lock:
                self._videos_running.discard(key)
            # The step left its next look in the journal: the housekeeper must see it.
            self.on_retry_scheduled()

    def _write_sidecar(self, path: Path, folder: FolderConfig, document: dict[str, Any]) -> bool:
        location = sidecar_for(path, folder)
        try:
            sidecar.write(location, document)
        except OSError as error:
            log.error("cannot write sidecar %s: %s", location, error.strerror or error)
            self.on_event("failure", {"kind": "sidecar"})
            return False
        return True

    # -- failures ----------------------------------------------------------------------------
    def _hold_for_auth(self, row: FileRow, error: AuthError) -> None:
        self.journal.update(row.path, state="held", attempts=row.attempts, last_error=str(error))
        if self.auth_pause.set(str(error)):
            self.journal.set_meta("uploads_paused", str(error))
            log.error(
                "the API refused the key (%s): uploads are paused until the key changes", error
            )
        self.on_event("failure", {"kind": "auth"})

    def _fail(self, row: FileRow, reason: str, *, final: bool) -> None:
        attempts = row.attempts + 1
        self.on_event("failure", {"kind": "permanent" if final else "transient"})
        if not final and attempts < self.config.api.max_attempts:
            self._schedule_retry(row, reason, attempts=attempts)
            return
        log.warning("upload failed: %s", reason, extra={"file": row.path})
        self.journal.update(
            row.path, state="failed", attempts=attempts, last_error=reason, next_attempt_at=None
        )
        folder = self.folder_of(row)
        local = LocalFile(Path(row.path), row.size, row.content_type or "", row.sha256 or "")
        document = records.failed(
            Path(row.path),
            row.size,
            reason,
            local,
            attempts=attempts,
            retry=RETRY_HINT,
            mtime_ns=row.mtime_ns,
        )
        self._write_sidecar(Path(row.path), folder, document)

    def _schedule_retry(
        self, row: FileRow, reason: str, *, attempts: int | None = None, state: str = "retrying"
    ) -> None:
        """Park the row until ``next_attempt_at``; the scheduler then calls `retry`."""
        attempts = row.attempts + 1 if attempts is None else attempts
        delay = retry_delay_seconds(
            attempts, self.config.api.max_attempts, self.config.retry_window_seconds
        )
        log.info("will retry in %.0fs: %s", delay, reason, extra={"file": row.path})
        self.journal.update(
            row.path,
            state=state,
            attempts=attempts,
            last_error=reason,
            next_attempt_at=time.time() + delay,
        )
        self.on_retry_scheduled()

    def folder_of(self, row: FileRow) -> FolderConfig:
        for folder in self.config.folders:
            if str(folder.path) == row.folder:
                return folder
        # The folder left the configuration: keep its own rules' defaults for the record.
        return FolderConfig(path=Path(row.folder))

    def _renotice_row(self, row: FileRow) -> None:
        self.renotice(Path(row.path), self.folder_of(row))


def adoptable_row(
    path: Path, folder: FolderConfig, info: Any, document: dict[str, Any] | None = None
) -> FileRow | None:
    """A final journal row for a file whose sidecar still describes it (same size and
    mtime), or None. Reads the sidecar unless given."""
    if document is None:
        beside = folder.sidecar_dir is None and folder.move_to is None
        # Beside the file (the usual case) the name is a string operation: this runs once per
        # file of a backlog at start-up.
        document = sidecar.read(str(path) + sidecar.SUFFIX if beside else sidecar_for(path, folder))
    if document is None or document.get("status") not in FINAL_STATES:
        return None
    if document.get("size") != info.st_size or document.get("mtime_ns") != info.st_mtime_ns:
        return None
    return _new_row(path, folder, info, time.time(), document["status"], document)


def retry_delay_seconds(attempt: int, max_attempts: int, window_seconds: float) -> float:
    """Exponential delays with ±25% jitter whose sum over all attempts is about ``window``."""
    steps = max(1, max_attempts - 1)
    base = window_seconds / (2**steps - 1)
    raw = base * 2 ** (attempt - 1)
    return max(0.05, raw * random.uniform(0.75, 1.25))


def _new_row(
    path: Path,
    folder: FolderConfig,
    info: Any,
    now: float,
    state: str,
    document: dict[str, Any] | None = None,
    *,
    sha256: str | None = None,
    content_type: str | None = None,
    previous_asset_id: str | None = None,
    last_error: str | None = None,
) -> FileRow:
    document = document or {}
    return FileRow(
        path=str(path),
        folder=str(folder.path),
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
        inode=info.st_ino,
        sha256=sha256 or document.get("sha256"),
        content_type=content_type or document.get("content_type"),
        state=state,
        attempts=0,
        next_attempt_at=None,
        asset_id=document.get("asset_id"),
        asset_url=document.get("url"),
        protocol=document.get("protocol"),
        reused=0,
        previous_asset_id=previous_asset_id,
        slot=None,
        slot_expires_at=None,
        sidecar=None,
        last_error=last_error or document.get("error"),
        created_at=now,
        updated_at=now,
    )
