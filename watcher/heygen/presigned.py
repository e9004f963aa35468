"""The presigned flows: get a slot, PUT the bytes to it, then whatever makes them an asset; and
the seed's own flow, `v1-presigned` (``POST /v1/asset`` for a slot, then PUT).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import replace

from watcher.heygen.errors import ApiError, SlotExpired
from watcher.heygen.retry import is_retryable, with_retries
from watcher.heygen.uploadfile import (
    Bodies,
    LocalFile,
    SlotCallback,
    UploadedAsset,
    UploadProtocol,
    UploadSlot,
    require_str,
)

log = logging.getLogger("watcher.heygen.uploads")


class PresignedProtocol(UploadProtocol):
    """Shared slot logic of the presigned protocols: get a slot, PUT, maybe complete."""

    @abstractmethod
    def new_slot(self, file: LocalFile) -> UploadSlot: ...

    @abstractmethod
    def finish(self, file: LocalFile, slot: UploadSlot, sent_sha256: str) -> UploadedAsset:
        """After the bytes are in: whatever the protocol needs to turn them into an asset."""

    def put_headers(self, file: LocalFile, slot: UploadSlot) -> dict[str, str]:
        return dict(slot.headers)

    def upload(
        self,
        file: LocalFile,
        *,
        resume: UploadSlot | None = None,
        on_slot: SlotCallback | None = None,
    ) -> UploadedAsset:
        slot = resume if resume is not None and resume.usable() else None
        fresh_slots = 0
        while True:
            if slot is None:
                fresh_slots += 1
                slot = self.new_slot(file)
                if on_slot is not None:
                    on_slot(slot)
            try:
                sent_sha256 = self.put_with_retries(file, slot)
                return replace(self.finish(file, slot, sent_sha256), sha256=sent_sha256)
            except SlotExpired:
                if fresh_slots >= self.client.policy.max_attempts:
                    raise
                log.info("upload slot for %s expired; asking for a fresh one", file.filename)
                slot = None

    def put_with_retries(self, file: LocalFile, slot: UploadSlot) -> str:
        """Retry the PUT on the same slot; an expired slot is the caller's business.
        Returns the hash of the bytes sent."""
        return with_retries(
            lambda: self._put(file, slot),
            self.client.policy,
            self.client.throttle,
            what=f"upload of {file.filename}",
            retryable=lambda error: is_retryable(error) and not isinstance(error, SlotExpired),
            # A storage known to be down holds the file instead of spending its quick retries.
            reachability=self.client.reachability,
        )

    def _put(self, file: LocalFile, slot: UploadSlot) -> str:
        bodies = Bodies(file, self.client.on_progress)
        try:
            self.client.put_to_storage(slot.url, bodies, self.put_headers(file, slot))
        except ApiError:
            bodies.raise_local_error()
            raise
        return bodies.checked_sha256()


class V1Presigned(PresignedProtocol):
    """The seed's flow: ``POST /v1/asset`` for a slot, then PUT the bytes."""

    name = "v1-presigned"

    def new_slot(self, file: LocalFile) -> UploadSlot:
        # A lost answer here costs nothing but an unused slot, so plain retries are safe.
        data = self.client.request("POST", "/v1/asset", json={"content_type": file.content_type})
        return UploadSlot(
            protocol=self.name,
            asset_id=require_str(data, "asset_id", "POST /v1/asset"),
            url=require_str(data, "url", "POST /v1/asset"),
        )

    def put_headers(self, file: LocalFile, slot: UploadSlot) -> dict[str, str]:
        return {"Content-Type": file.content_type}

    def finish(self, file: LocalFile, slot: UploadSlot, sent_sha256: str) -> UploadedAsset:
        return UploadedAsset(slot.asset_id, self.asset_url(slot.asset_id), self.name)
