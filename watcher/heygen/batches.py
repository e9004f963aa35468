"""v3 batch calls on the wire: create a batch of slots, complete it, read its items.

The read model of ``GET /v3/assets/batches/{id}`` is HeyGen's, shared with video batches: each
item has ``item_index`` (its place in the submitted ``files``), ``status``, ``video_id`` (for
an asset batch, the asset id; null until the item exists) and, when it failed, an ``error``
object. Items come in pages (``has_more`` / ``next_token``, passed back as ``token``); the
default page size is not documented, so every page is read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from watcher.heygen.client import HeyGenClient
from watcher.heygen.errors import PermanentError
from watcher.heygen.uploadfile import LocalFile, UploadSlot
from watcher.heygen.v3direct import slot_from_v3, v3_file_spec

# A batch holds at most 100 items; even one per page ends well within this.
MAX_PAGES = 200


@dataclass(frozen=True)
class CreatedBatch:
    batch_id: str
    slots: list[UploadSlot]  # in the order of the files asked for


@dataclass(frozen=True)
class BatchItem:
    """One item of the batch read model, read strictly as HeyGen's schema names it."""

    index: int
    status: str
    asset_id: str | None  # `video_id` on the wire (the read model is shared with videos)
    error: dict[str, Any] | None

    @classmethod
    def parse(cls, raw: Any) -> BatchItem:
        if not isinstance(raw, dict):
            raise PermanentError("malformed batch item: not an object")
        index, status, video_id = raw.get("item_index"), raw.get("status"), raw.get("video_id")
        error = raw.get("error")
        if (
            isinstance(index, bool)
            or not isinstance(index, int)
            or not isinstance(status, str)
            or not (video_id is None or isinstance(video_id, str))
            or not (error is None or isinstance(error, dict))
        ):
            raise PermanentError(f"malformed batch item: {str(raw)[:200]}")
        return cls(index, status, video_id or None, error)

    @property
    def ended(self) -> bool:
        """Completed with its asset known, or failed; anything else is not finished yet."""
        return (self.status == "completed" and self.asset_id is not None) or (
            self.status == "failed"
        )

    @property
    def reason(self) -> str:
        """The failed item's ``error`` object, as one line for a sidecar."""
        error = self.error or {}
        code, message = error.get("code"), error.get("message")
        parts = [str(part) for part in (code, message) if part]
        return ": ".join(parts) or f"batch item {self.status} without a reason"


def create_batch(client: HeyGenClient, files: list[LocalFile], protocol: str) -> CreatedBatch:
    """One slot per file. The Idempotency-Key (documented for this call only) makes a create
    retried after a lost answer return the same batch instead of a second one."""
    data = client.request(
        "POST",
        "/v3/assets/direct-uploads/batches",
        json={"files": [v3_file_spec(file) for file in files]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    items = data.get("items") if isinstance(data, dict) else None
    batch_id = data.get("batch_id") if isinstance(data, dict) else None
    if not isinstance(batch_id, str) or not isinstance(items, list) or len(items) != len(files):
        raise PermanentError("malformed response to the batch create: items do not match")
    return CreatedBatch(
        batch_id, [slot_from_v3(item, protocol, "the batch create") for item in items]
    )


def complete_batch(client: HeyGenClient, batch_id: str) -> None:
    """Idempotent on the server (202): the items' outcomes are read with `read_batch`."""
    client.request("POST", "/v3/assets/complete/batches", json={"batch_id": batch_id})


def read_batch(client: HeyGenClient, batch_id: str) -> list[BatchItem]:
    """Every item of the batch, page by page."""
    items: list[BatchItem] = []
    params: dict[str, str] | None = None
    for _ in range(MAX_PAGES):
        data = client.request("GET", f"/v3/assets/batches/{batch_id}", params=params)
        page = data.get("items") if isinstance(data, dict) else None
        if not isinstance(page, list):
            raise PermanentError("malformed batch read: 'items' is not a list")
        items.extend(BatchItem.parse(raw) for raw in page)
        token = data.get("next_token")
        if data.get("has_more") is not True:
            return items
        if not isinstance(token, str) or not token:
            raise PermanentError("malformed batch read: 'has_more' without 'next_token'")
        params = {"token": token}
    raise PermanentError(f"batch read did not end after {MAX_PAGES} pages")
