"""Everything the sandbox remembers, behind one lock.

Handlers hold ``state.lock`` (re-entrant) across check-then-act sequences such as idempotent
creates; every method here also takes it, so single calls are safe on their own.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watcher.sandbox.faults import Fault, FaultQueue
from watcher.sandbox.models import SandboxVideo, SeenRequest, StoredAsset
from watcher.sandbox.ratelimit import RateLimiter

V1_PRESIGNED = "v1-presigned"
V3_DIRECT = "v3-direct"
V3_MULTIPART = "v3-multipart"
V1_UPLOAD = "v1-upload"
# Bounds the memory of a sandbox left running for days; far above what any test sends.
REQUEST_LOG_LIMIT = 100_000


@dataclass
class Settings:
    """Run-time tunables; plain attributes so tests may change them while the sandbox runs."""

    api_key: str
    url_ttl_seconds: float
    latency_seconds: float
    video_pending_seconds: float
    video_processing_seconds: float
    batch_processing_seconds: float
    # HeyGen leaves the default page size of batch reads undocumented; a page smaller than a
    # full batch makes a client that never follows `next_token` fail here, not in production.
    batch_page_size: int = 10
    video_url_ttl_seconds: float = 900.0
    # How long a completed direct upload answers `processing` (and is refused by videos).
    asset_processing_seconds: float = 0.0
    # Requests per second and key the API and upload hosts accept (0: no limit), and how many
    # may come at once after a quiet spell; more are answered 429 with Retry-After.
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 10


@dataclass
class Slot:
    """A presigned upload slot; the asset exists only once bytes were PUT into it."""

    asset_id: str
    protocol: str
    content_type: str
    size_bytes: int | None = None
    checksum_sha256: str | None = None
    filename: str | None = None
    batch_id: str | None = None
    completed: bool = False
    completed_at: float | None = None  # monotonic time of the first completion


@dataclass
class Batch:
    batch_id: str
    asset_ids: list[str]
    title: str | None
    created_at: float = field(default_factory=time.time)
    completed_at: float | None = None
    missing: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ItemError:
    """Why a batch item failed: the read model's ``error`` object."""

    code: str
    message: str


@dataclass(frozen=True)
class PageCursor:
    """Where a `next_token` continues: which listing, from which position."""

    listing: str
    offset: int


@dataclass
class VideoRecord:
    video_id: str
    endpoint: str
    body: dict[str, Any]
    created_at: float
    started: float
    outcome: str
    failure_code: str | None = None
    failure_message: str | None = None
    # What the video reports before processing starts: v3 videos start at `waiting`.
    first_status: str = "pending"


@dataclass
class Remembered:
    """A stored response for an idempotency key."""

    fingerprint: str
    status: int
    payload: dict[str, Any]


@dataclass
class _Seen:
    server: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    at: float
    status: int = 0
    body_bytes: int = 0
    fault: str | None = None


@dataclass(frozen=True)
class _Outcome:
    kind: str
    failure_code: str | None
    failure_message: str | None


@dataclass
class _Stores:
    slots: dict[str, Slot] = field(default_factory=dict)
    assets: dict[str, StoredAsset] = field(default_factory=dict)
    batches: dict[str, Batch] = field(default_factory=dict)
    videos: dict[str, VideoRecord] = field(default_factory=dict)
    outcomes: deque[_Outcome] = field(default_factory=deque)
    idempotency: dict[tuple[str, str], Remembered] = field(default_factory=dict)
    ingestion_failures: dict[str, ItemError] = field(default_factory=dict)
    cursors: dict[str, PageCursor] = field(default_factory=dict)
    seen: deque[_Seen] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_LIMIT))


def new_id() -> str:
    return uuid.uuid4().hex


class SandboxState:
    def __init__(self, data_dir: Path, settings: Settings) -> None:
        self.lock = threading.RLock()
        self.settings = settings
        self.assets_dir = data_dir / "assets"
        self.incoming_dir = data_dir / "incoming"
        self.assets_dir.mkdir(parents=True, exist_ok=True)
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self._faults = FaultQueue()
        self._stores = _Stores()
        self.rate_limiter = RateLimiter()

    # Requests -------------------------------------------------------------------------------

    def record_arrival(
        self, server: str, method: str, path: str, query: str, headers: dict[str, str]
    ) -> _Seen:
        seen = _Seen(server, method, path, query, headers, at=time.time())
        with self.lock:
            self._stores.seen.append(seen)
        return seen

    def record_outcome(self, seen: _Seen, status: int, body_bytes: int, fault: str | None) -> None:
        with self.lock:
            seen.status, seen.body_bytes, seen.fault = status, body_bytes, fault

    def requests(self) -> list[SeenRequest]:
        with self.lock:
            return [
                SeenRequest(
                    server=s.server,
                    method=s.method,
                    path=s.path,
                    query=s.query,
                    headers=dict(s.headers),
                    status=s.status,
                    body_bytes=s.body_bytes,
                    at=s.at,
                    fault=s.fault,
                )
                for s in self._stores.seen
            ]

    def clear_requests(self) -> None:
        with self.lock:
            self._stores.seen.clear()

    # Faults ---------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self._faults.add(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self, server: str, method: str, path: str) -> Fault | None:
        with self.lock:
            return self._faults.take(server, method, path)

    # Slots and assets -----------------------------------------------------------------------

    def new_slot(self, protocol: str, content_type: str, **details: Any) -> Slot:
        slot = Slot(asset_id=new_id(), protocol=protocol, content_type=content_type, **details)
        with self.lock:
            self._stores.slots[slot.asset_id] = slot
        return slot

    def slot(self, asset_id: str) -> Slot | None:
        with self.lock:
            return self._stores.slots.get(asset_id)

    def incoming_path(self) -> Path:
        return self.incoming_dir / f"{new_id()}.part"

    def commit_put(self, slot: Slot, received: Path, size: int, sha256: str) -> bool:
        """Store the received bytes as the slot's asset, replacing earlier bytes."""
        with self.lock:
            if self._stores.slots.get(slot.asset_id) is not slot:
                return False  # forgotten by reset() while the body was arriving
            target = self.assets_dir / slot.asset_id
            os.replace(received, target)
            previous = self._stores.assets.get(slot.asset_id)
            self._stores.assets[slot.asset_id] = StoredAsset(
                asset_id=slot.asset_id,
                content_type=slot.content_type,
                size=size,
                sha256=sha256,
                path=target,
                protocol=slot.protocol,
                filename=slot.filename,
                put_count=previous.put_count + 1 if previous else 1,
                created_at=previous.created_at if previous else time.time(),
            )
            return True

    def store_upload(
        self,
        received: Path,
        content_type: str,
        filename: str | None,
        size: int,
        sha256: str,
        protocol: str = V3_MULTIPART,
    ) -> StoredAsset:
        """Store bytes received through the API itself (multipart, or the upload host)."""
        asset_id = new_id()
        target = self.assets_dir / asset_id
        os.replace(received, target)
        asset = StoredAsset(
            asset_id=asset_id,
            content_type=content_type,
            size=size,
            sha256=sha256,
            path=target,
            protocol=protocol,
            filename=filename,
            put_count=1,
            created_at=time.time(),
        )
        with self.lock:
            self._stores.assets[asset_id] = asset
        return asset

    def stored(self, asset_id: str) -> StoredAsset | None:
        with self.lock:
            return self._stores.assets.get(asset_id)

    def usable(self, asset_id: str) -> StoredAsset | None:
        """An asset videos may use: stored and, for direct uploads, completed."""
        with self.lock:
            asset = self._stores.assets.get(asset_id)
            slot = self._stores.slots.get(asset_id)
            if asset is None or slot is None or slot.protocol != V3_DIRECT:
                return asset
            usable = self._is_completed(slot) and not self.still_processing(slot)
            return asset if usable else None

    def still_processing(self, slot: Slot) -> bool:
        """A completed direct upload is ingested for ``asset_processing_seconds``."""
        with self.lock:
            if slot.completed_at is None:
                return False
            waited = time.monotonic() - slot.completed_at
            return waited < self.settings.asset_processing_seconds

    def assets(self) -> dict[str, StoredAsset]:
        with self.lock:
            return dict(self._stores.assets)

    def mark_completed(self, slot: Slot) -> None:
        with self.lock:
            slot.completed = True
            if slot.completed_at is None:
                slot.completed_at = time.monotonic()

    def _is_completed(self, slot: Slot) -> bool:
        if slot.completed:
            return True
        batch = self._stores.batches.get(slot.batch_id or "")
        return batch is not None and self.batch_item_status(batch, slot.asset_id) == "completed"

    # Batches --------------------------------------------------------------------------------

    def new_batch(self, slots: list[Slot], title: str | None) -> Batch:
        batch = Batch(new_id(), [slot.asset_id for slot in slots], title)
        with self.lock:
            for slot in slots:
                slot.batch_id = batch.batch_id
            self._stores.batches[batch.batch_id] = batch
        return batch

    def batch(self, batch_id: str) -> Batch | None:
        with self.lock:
            return self._stores.batches.get(batch_id)

    def complete_batch(self, batch: Batch) -> None:
        """Freeze which items were uploaded; later calls change nothing (idempotent)."""
        with self.lock:
            if batch.completed_at is not None:
                return
            stored = self._stores.assets
            batch.missing = frozenset(a for a in batch.asset_ids if a not in stored)
            batch.completed_at = time.monotonic()

    def batch_item_status(self, batch: Batch, asset_id: str) -> str:
        return self.batch_item(batch, asset_id)[0]

    def batch_item(self, batch: Batch, asset_id: str) -> tuple[str, ItemError | None]:
        """(status, error) of one item: queued until the batch is completed, then processing
        for ``batch_processing_seconds``, then completed, or failed with the reason."""
        with self.lock:
            if batch.completed_at is None:
                return "queued", None
            if asset_id in batch.missing:
                return "failed", ItemError(
                    "asset_not_available", "no bytes were uploaded for this item"
                )
            waited = time.monotonic() - batch.completed_at
            if waited < self.settings.batch_processing_seconds:
                return "processing", None
            slot = self._stores.slots.get(asset_id)
            failure = self._stores.ingestion_failures.get(slot.filename or "") if slot else None
            if failure is not None:
                return "failed", failure
            return "completed", None

    def fail_ingestion(self, filename: str, code: str, message: str) -> None:
        """Batch items for files of this name fail ingestion with this error."""
        with self.lock:
            self._stores.ingestion_failures[filename] = ItemError(code, message)

    # Pagination -----------------------------------------------------------------------------

    def new_cursor(self, listing: str, offset: int) -> str:
        """An opaque `next_token` for ``listing`` continuing at ``offset``."""
        token = new_id()
        with self.lock:
            self._stores.cursors[token] = PageCursor(listing, offset)
        return token

    def cursor(self, token: str) -> PageCursor | None:
        with self.lock:
            return self._stores.cursors.get(token)

    # Videos ---------------------------------------------------------------------------------

    def queue_outcome(
        self, kind: str, failure_code: str | None, failure_message: str | None
    ) -> None:
        with self.lock:
            self._stores.outcomes.append(_Outcome(kind, failure_code, failure_message))

    def new_video(
        self, endpoint: str, body: dict[str, Any], first_status: str = "pending"
    ) -> VideoRecord:
        with self.lock:
            outcome = (
                self._stores.outcomes.popleft()
                if self._stores.outcomes
                else _Outcome("completed", None, None)
            )
            video = VideoRecord(
                video_id=new_id(),
                endpoint=endpoint,
                body=body,
                created_at=time.time(),
                started=time.monotonic(),
                outcome=outcome.kind,
                failure_code=outcome.failure_code,
                failure_message=outcome.failure_message,
                first_status=first_status,
            )
            self._stores.videos[video.video_id] = video
            return video

    def video(self, video_id: str) -> VideoRecord | None:
        with self.lock:
            return self._stores.videos.get(video_id)

    def video_status(self, video: VideoRecord) -> str:
        """Status by time since creation, read with the current timing settings."""
        elapsed = time.monotonic() - video.started
        pending = self.settings.video_pending_seconds
        processing = self.settings.video_processing_seconds
        if elapsed < pending:
            return video.first_status
        if elapsed < pending + processing or video.outcome == "stuck":
            return "processing"
        return "failed" if video.outcome == "failed" else "completed"

    def videos(self) -> dict[str, SandboxVideo]:
        with self.lock:
            records = list(self._stores.videos.values())
        return {
            v.video_id: SandboxVideo(
                video_id=v.video_id,
                endpoint=v.endpoint,
                body=v.body,
                created_at=v.created_at,
                status=self.video_status(v),
                outcome=v.outcome,
                failure_code=v.failure_code,
                failure_message=v.failure_message,
            )
            for v in records
        }

    # Idempotency ----------------------------------------------------------------------------

    def recall(self, api_key: str, key: str) -> Remembered | None:
        with self.lock:
            return self._stores.idempotency.get((api_key, key))

    def remember(self, api_key: str, key: str, remembered: Remembered) -> None:
        with self.lock:
            self._stores.idempotency[(api_key, key)] = remembered

    # Reset ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything, including stored bytes."""
        with self.lock:
            self._stores = _Stores()
            self._faults.clear()
            self.rate_limiter.reset()
            shutil.rmtree(self.assets_dir, ignore_errors=True)
            self.assets_dir.mkdir(parents=True, exist_ok=True)
