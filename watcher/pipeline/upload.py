"""The upload step: carry a journal row from `queued` (or a resumed `uploading`) to `recording`.

Identical bytes already uploaded reuse their asset (the cache); otherwise the protocol sends
the file (`watcher.heygen.uploads` is where the bytes actually go), its slot committed to the
journal before the first byte. What a failure means is the outcome policy's decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watcher.config.live import LiveConfig
from watcher.convert.ffmpeg import ConversionStopped
from watcher.heygen.body import FileChangedError
from watcher.heygen.errors import ApiError
from watcher.heygen.uploadfile import LocalFile, UploadedAsset, UploadProtocol, UploadSlot
from watcher.pipeline.conversion import ConversionRefused, ConvertStep
from watcher.pipeline.outcome import AuthPause, OutcomePolicy
from watcher.pipeline.record import Recorder
from watcher.pipeline.slots import recorded_slot, remember_slot
from watcher.state.journal import ConversionRow, FileRow
from watcher.state.journal_api import Journal
from watcher.state.states import FileState

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]


class Uploader:
    def __init__(
        self,
        journal: Journal,
        live: LiveConfig,
        protocol: UploadProtocol,
        auth_pause: AuthPause,
        outcome: OutcomePolicy,
        recorder: Recorder,
        on_event: EventSink,
        converting: ConvertStep,
    ) -> None:
        self.journal = journal
        self.live = live
        self.protocol = protocol
        self.auth_pause = auth_pause
        self.outcome = outcome
        self.recorder = recorder
        self.on_event = on_event
        self.converting = converting

    def upload(self, key: str) -> None:
        """Carry a journal row from `queued`/`uploading`/`recording` to `uploaded`."""
        row = self.journal.claim_row(key)
        if row is None:
            return  # gone, final, or another daemon of the fleet is working on it
        asset_usable = True
        if row.state is not FileState.RECORDING:
            if self.auth_pause.active or self.outcome.reachability.down:
                self.journal.update(key, state=FileState.HELD)
                return
            asset = self._send(row)
            if asset is None:
                return
            # A v3 completion may say HeyGen is still ingesting: a video must wait for it.
            asset_usable = asset.usable
            row = self.journal.get(key)
            if row is None:
                return  # the file vanished meanwhile
        self.recorder.record(row, asset_usable=asset_usable)

    def _send(self, row: FileRow) -> UploadedAsset | None:
        if row.content_type is None:
            # Every admitted row has its type; one without cannot be sent: judge the file again.
            self.outcome.requeue_changed(row, "no content type recorded")
            return None
        cached = self._cached(row, row.content_type)
        if cached is not None:
            return cached
        local = LocalFile(Path(row.path), row.size, row.content_type, row.sha256)
        conversion = self.converting.pending(row)
        self.journal.update(row.path, state=FileState.UPLOADING, attempts=row.attempts + 1)
        if conversion is not None:
            converted = self._converted(row, conversion)
            if converted is None:
                return None
            local = converted
        started = time.monotonic()
        try:
            asset = self.protocol.upload(
                local,
                resume=recorded_slot(row),
                on_slot=lambda slot: self._slot_taken(row.path, slot),
            )
        except (ApiError, OSError) as error:
            self.outcome.upload_failed(row, error)
            if conversion is not None:
                self.converting.discard_if_done(row)
            return None
        if conversion is not None:
            self.converting.sent(row, conversion, local.sha256 or asset.sha256)
        recorded = self.succeeded(row, asset, started)
        if conversion is not None and recorded is not None:
            self.converting.discard(row)  # the asset is in the journal: the bytes are done
        return recorded

    def _converted(self, row: FileRow, conversion: ConversionRow) -> LocalFile | None:
        """The bytes to send for a file converted first; None when there are none (refused,
        failed for now, or the daemon is stopping: the row says what comes next)."""
        try:
            return self.converting.prepare(row, conversion)
        except ConversionStopped:
            return None  # still `uploading`: resumed (converted again) at the next start
        except ConversionRefused as error:
            self.outcome.refuse(row, f"cannot convert it: {error}", conversion.source_type)
        except FileNotFoundError:
            self.outcome.vanished(row.path)
        except FileChangedError as error:
            self.outcome.requeue_changed(row, str(error))
        except OSError as error:
            # The machine's fault (a full disk, a read-only state directory): tried again.
            reason = str(error.strerror or error)
            if not reason.startswith("cannot write the converted file"):
                reason = f"cannot write the converted file: {reason}"
            self.outcome.fail(row, reason, final=False)
        return None

    def _cached(self, row: FileRow, content_type: str) -> UploadedAsset | None:
        """The same bytes uploaded within ``asset_cache_days``: reuse that asset."""
        if row.sha256 is None:
            return None
        cache_after = time.time() - self.live.current.asset_cache_days * 86400
        cached = self.journal.cached_asset(row.sha256, content_type, cache_after)
        if cached is None or cached.asset_id == row.previous_asset_id:
            # Never "reuse" the very asset this upload replaces (`upload --force`).
            return None
        log.info(
            "same bytes already uploaded; reusing asset %s",
            cached.asset_id,
            extra={"file": row.path},
        )
        self.on_event("reused", {"content_type": content_type})
        self.journal.update(
            row.path,
            state=FileState.RECORDING,
            asset_id=cached.asset_id,
            asset_url=cached.url,
            protocol=cached.protocol,
            reused=1,
        )
        return UploadedAsset(cached.asset_id, cached.url, cached.protocol)

    def succeeded(self, row: FileRow, asset: UploadedAsset, started: float) -> UploadedAsset | None:
        """Record the asset of a finished upload (state `recording`), unless the file changed."""
        sha256 = row.sha256 or asset.sha256
        if row.sha256 is None and not _unchanged_since_admitted(row):
            # Hashed on the way: the stat must show the same file, or what went up may be a mix.
            self.outcome.requeue_changed(row, "file changed during its upload")
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
            state=FileState.RECORDING,
            asset_id=asset.asset_id,
            asset_url=asset.url,
            protocol=asset.protocol,
            sha256=sha256,
            reused=0,
        )
        return asset

    def _slot_taken(self, key: str, slot: UploadSlot) -> None:
        # Committed before the first byte is sent: a resumed upload reuses this slot.
        remember_slot(self.journal, key, slot)


def _unchanged_since_admitted(row: FileRow) -> bool:
    try:
        info = Path(row.path).lstat()
    except OSError:
        return False
    return row.same_file(info.st_size, info.st_mtime_ns, info.st_ino)
