"""v3 batch uploads: files ready at about the same time share slot requests and completion.

One `POST /v3/assets/direct-uploads/batches` asks for up to 100 slots at once; each file's bytes
are PUT by the worker pool as usual; once every PUT of a batch has ended, one
`POST /v3/assets/complete/batches` completes them and the batch status tells each file's
outcome. A file alone in its gathering window takes the single direct-upload path, which needs
fewer round trips. Every slot is recorded in the journal before its PUT, and completion is
idempotent, so a file interrupted anywhere resumes on the single path (complete, or PUT again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from watcher.heygen.batches import BatchItem, complete_batch, create_batch, read_batch
from watcher.heygen.errors import ApiError, PermanentError
from watcher.heygen.uploadfile import LocalFile, UploadedAsset, UploadSlot
from watcher.heygen.v3direct import V3Direct
from watcher.pipeline.outcome import AuthPause, OutcomePolicy
from watcher.pipeline.slots import remember_slot
from watcher.pipeline.upload import Uploader
from watcher.pipeline.workpool import WorkPool
from watcher.state.journal import FileRow
from watcher.state.journal_api import Journal
from watcher.state.states import FileState

log = logging.getLogger(__name__)

MAX_BATCH_FILES = 100
# Long enough for a burst's files to find each other, short enough not to delay a lone file.
GATHER_SECONDS = 0.02
POLL_FIRST_SECONDS = 0.05
POLL_MAX_SECONDS = 2.0
# After this long without every item ended, the files left complete one by one.
POLL_GIVE_UP_SECONDS = 120.0


@dataclass
class _Batch:
    batch_id: str
    slots: dict[str, UploadSlot]  # journal key → slot
    started: float
    waiting: set[str] = field(default_factory=set)  # PUTs not yet ended
    sent: set[str] = field(default_factory=set)  # PUTs that succeeded


@dataclass
class V3Batcher:
    journal: Journal
    pool: WorkPool
    protocol: V3Direct
    uploader: Uploader
    outcome: OutcomePolicy
    auth_pause: AuthPause
    gather_seconds: float = GATHER_SECONDS
    max_files: int = MAX_BATCH_FILES
    poll_give_up_seconds: float = POLL_GIVE_UP_SECONDS
    _pending: list[str] = field(default_factory=list)
    _first_pending_at: float = 0.0
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _stopped: bool = False
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop gathering; files not yet in a batch stay `queued` in the journal."""
        with self._wake:
            self._stopped = True
            left, self._pending = self._pending, []
            self._wake.notify()
        for key in left:
            self.pool.release(Path(key))
        if self._thread is not None:
            self._thread.join(timeout=5)

    def enqueue(self, key: str) -> None:
        with self._wake:
            if not self._pending:
                self._first_pending_at = time.monotonic()
            self._pending.append(key)
            self._wake.notify()

    # -- gathering ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopped:
                    self._wake.wait()
                deadline = self._first_pending_at + self.gather_seconds
                while (
                    not self._stopped
                    and len(self._pending) < self.max_files
                    and time.monotonic() < deadline
                ):
                    self._wake.wait(deadline - time.monotonic())
                if self._stopped:
                    return
                keys = self._pending[: self.max_files]
                del self._pending[: self.max_files]
                self._first_pending_at = time.monotonic()
            # The create is a round trip: let the pool make it while gathering goes on.
            if not self.pool.run_task(partial(self._start_batch_safely, keys), "a batch"):
                for key in keys:
                    self.pool.release(Path(key))

    def _start_batch_safely(self, keys: list[str]) -> None:
        try:
            self._start_batch(keys)
        except Exception as error:
            # A bug, not a refusal: logged with its traceback, counted, and every file of the
            # batch set aside for a retry rather than left `queued` until the next start.
            log.exception("batch upload failed to start")
            for key in keys:
                try:
                    self.outcome.unexpected(Path(key), error)
                finally:
                    self.pool.release(Path(key))

    def _start_batch(self, keys: list[str]) -> None:
        rows = self._live_rows(keys)
        if len(rows) == 1:
            self._single(rows[0])
            return
        if not rows:
            return
        if self.auth_pause.active or self.outcome.reachability.down:
            for row in rows:
                self.journal.update(row.path, state=FileState.HELD)
                self.pool.release(Path(row.path))
            return
        files = [LocalFile(Path(r.path), r.size, r.content_type or "", r.sha256) for r in rows]
        try:
            created = create_batch(self.protocol.client, files, self.protocol.name)
        except ApiError as error:
            for row in rows:
                self.outcome.upload_failed(row, error)
                self.pool.release(Path(row.path))
            return
        slots = {row.path: slot for row, slot in zip(rows, created.slots, strict=True)}
        batch = _Batch(created.batch_id, slots, time.monotonic(), waiting=set(slots))
        log.info("batch %s: %d files", batch.batch_id, len(rows))
        for row, file in zip(rows, files, strict=True):
            slot = batch.slots[row.path]
            remember_slot(self.journal, row.path, slot, attempts=row.attempts + 1)
            self.pool.run_task(
                partial(self._put, batch, row, file, slot), f"the upload of {file.filename}"
            )

    def _live_rows(self, keys: list[str]) -> list[FileRow]:
        rows = []
        for key in keys:
            row = self.journal.get(key)
            if (
                row is None
                or row.state != FileState.QUEUED
                or row.sha256 is None
                or not self.journal.claim(key)  # another daemon of the fleet has it
            ):
                self.pool.release(Path(key))
                continue
            rows.append(row)
        return rows

    def _single(self, row: FileRow) -> None:
        def upload() -> None:
            try:
                self.uploader.upload(row.path)
            finally:
                self.pool.release(Path(row.path))

        self.pool.run_task(upload, f"the upload of {Path(row.path).name}")

    # -- per file: the PUT -------------------------------------------------------------------
    def _put(self, batch: _Batch, row: FileRow, file: LocalFile, slot: UploadSlot) -> None:
        ok = False
        try:
            self.protocol.put_with_retries(file, slot)
            ok = True
        except (ApiError, OSError) as error:
            self.outcome.upload_failed(row, error)
            self.pool.release(Path(row.path))
        finally:
            self._put_ended(batch, row.path, ok)

    def _put_ended(self, batch: _Batch, key: str, ok: bool) -> None:
        with self._wake:
            batch.waiting.discard(key)
            if ok:
                batch.sent.add(key)
            last = not batch.waiting
        if (
            last
            and batch.sent
            and not self.pool.run_task(partial(self._complete, batch), f"batch {batch.batch_id}")
        ):
            # Shutting down: the recorded slots resume (complete first) at the next start.
            for sent in batch.sent:
                self.pool.release(Path(sent))

    # -- the batch: complete and read the outcome --------------------------------------------
    def _complete(self, batch: _Batch) -> None:
        client = self.protocol.client
        outcome: dict[str, BatchItem] = {}
        try:
            complete_batch(client, batch.batch_id)
            outcome = self._wait_for_outcome(batch)
        except ApiError as error:
            log.warning(
                "batch %s: its outcome cannot be read (%s); completing its files one by one",
                batch.batch_id,
                error,
            )
        for key in batch.sent:
            item = outcome.get(key)
            if item is None:
                # Completion is idempotent: each file completes on its own, at once, instead
                # of waiting for the per-file retry window.
                self._run_or_release(key, partial(self._complete_alone, key), f"completing {key}")
            elif item.status == "completed":
                # Recording (journal, sidecar with its fsyncs) spreads over the pool.
                self._run_or_release(key, partial(self._uploaded, batch, key), f"recording {key}")
            else:
                self._failed(key, PermanentError(f"refused by HeyGen: {item.reason}"))

    def _run_or_release(self, key: str, task: Callable[[], None], what: str) -> None:
        if not self.pool.run_task(task, what):
            self.pool.release(Path(key))

    def _wait_for_outcome(self, batch: _Batch) -> dict[str, BatchItem]:
        """Poll the batch until every sent file's item has ended (or the deadline passes);
        returns the ended items by journal key."""
        client = self.protocol.client
        delay = POLL_FIRST_SECONDS
        give_up = time.monotonic() + self.poll_give_up_seconds
        while True:
            ended = {
                key: item
                for key, item in self._items_by_key(
                    batch, read_batch(client, batch.batch_id)
                ).items()
                if item.ended
            }
            if len(ended) == len(batch.sent) or time.monotonic() > give_up:
                return ended
            client.throttle.sleep(delay)
            delay = min(delay * 2, POLL_MAX_SECONDS)

    @staticmethod
    def _items_by_key(batch: _Batch, items: list[BatchItem]) -> dict[str, BatchItem]:
        """Match items to files by ``item_index`` (the position in the submitted ``files``),
        or by ``video_id`` (which holds the asset id once the item exists)."""
        by_index = {item.index: item for item in items}
        by_id = {item.asset_id: item for item in items if item.asset_id is not None}
        matched = {}
        for index, (key, slot) in enumerate(batch.slots.items()):
            item = by_index.get(index)
            if item is None or item.asset_id not in (None, slot.asset_id):
                item = by_id.get(slot.asset_id)
            if item is not None:
                matched[key] = item
        return matched

    def _uploaded(self, batch: _Batch, key: str) -> None:
        try:
            row = self.journal.get(key)
            if row is None:
                return
            asset_id = batch.slots[key].asset_id
            # The read model names no URL: the asset's URL is built from its id.
            asset = UploadedAsset(asset_id, self.protocol.asset_url(asset_id), self.protocol.name)
            if self.uploader.succeeded(row, asset, batch.started) is not None:
                self.uploader.upload(key)
        finally:
            self.pool.release(Path(key))

    def _complete_alone(self, key: str) -> None:
        """The file's bytes are in its recorded slot: the single path completes it (and PUTs
        again only if the slot never received them)."""
        try:
            self.uploader.upload(key)
        finally:
            self.pool.release(Path(key))

    def _failed(self, key: str, error: ApiError) -> None:
        try:
            row = self.journal.get(key)
            if row is not None:
                self.outcome.upload_failed(row, error)
        finally:
            self.pool.release(Path(key))
