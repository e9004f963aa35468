"""`v3-direct`: ``POST /v3/assets/direct-uploads`` for a slot, PUT with exactly the signed
headers, then ``POST /v3/assets/{id}/complete`` (shared with the v3 batches, which use the same
slots and completion).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from watcher.heygen.body import sha256_file
from watcher.heygen.client import HeyGenClient
from watcher.heygen.errors import ApiError, PermanentError
from watcher.heygen.presigned import PresignedProtocol
from watcher.heygen.uploadfile import (
    LocalFile,
    SlotCallback,
    UploadedAsset,
    UploadSlot,
    require_str,
)

log = logging.getLogger("watcher.heygen.uploads")

# Completion statuses that mean "stored, but not usable yet". HeyGen's schema shows
# `processing` as the example; the value for "usable" is not documented, so anything else that
# is not `failed` counts as usable (a video refused later with `asset_not_available` still
# waits, see `watcher.pipeline.video_submit`).
NOT_USABLE_YET = ("processing", "pending", "pending_upload", "queued", "uploading")


@dataclass(frozen=True)
class Completion:
    """What ``POST /v3/assets/{id}/complete`` answered."""

    asset_id: str
    url: str | None
    status: str | None

    @property
    def usable(self) -> bool:
        return self.status not in NOT_USABLE_YET


def complete_v3(client: HeyGenClient, asset_id: str, sha256: str | None) -> Completion:
    """Complete a v3 direct upload. Idempotent on the server, so retrying it, repeating it on
    resume, or asking again while the asset is processing is safe."""
    body = {"checksum_sha256": sha256} if sha256 else {}
    data = client.request("POST", f"/v3/assets/{asset_id}/complete", json=body)
    if not isinstance(data, dict):
        raise PermanentError(f"malformed response to POST /v3/assets/{asset_id}/complete")
    status = data.get("status")
    if status == "failed":
        raise PermanentError(f"HeyGen could not ingest asset {asset_id} (status: failed)")
    url = data.get("url")
    return Completion(
        asset_id,
        url if isinstance(url, str) and url else None,
        status if isinstance(status, str) else None,
    )


def slot_from_v3(data: Any, protocol: str, what: str) -> UploadSlot:
    """An `UploadSlot` from one v3 direct-upload item (single or batch)."""
    headers = data.get("upload_headers") if isinstance(data, dict) else None
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise PermanentError(f"malformed response to {what}: bad 'upload_headers'")
    expires_in = data.get("expires_in_seconds")
    expires_at = time.time() + float(expires_in) if isinstance(expires_in, (int, float)) else None
    return UploadSlot(
        protocol=protocol,
        asset_id=require_str(data, "asset_id", what),
        url=require_str(data, "upload_url", what),
        headers=headers,
        expires_at=expires_at,
    )


def v3_file_spec(file: LocalFile) -> dict[str, Any]:
    """One file of a v3 create. The checksum is optional there: when the file was not hashed
    beforehand, its bytes are hashed on the way and the checksum goes with the completion,
    where the server checks it all the same."""
    spec: dict[str, Any] = {
        "filename": file.filename,
        "content_type": file.content_type,
        "size_bytes": file.size,
    }
    if file.sha256 is not None:
        spec["checksum_sha256"] = file.sha256
    return spec


class V3Direct(PresignedProtocol):
    """``POST /v3/assets/direct-uploads`` → PUT with exactly the signed headers → complete."""

    name = "v3-direct"

    def new_slot(self, file: LocalFile) -> UploadSlot:
        # No Idempotency-Key: HeyGen documents it for the batch create only. A retried create
        # whose answer was lost just leaves an unused slot, which stores nothing.
        data = self.client.request("POST", "/v3/assets/direct-uploads", json=v3_file_spec(file))
        return slot_from_v3(data, self.name, "POST /v3/assets/direct-uploads")

    def upload(
        self,
        file: LocalFile,
        *,
        resume: UploadSlot | None = None,
        on_slot: SlotCallback | None = None,
    ) -> UploadedAsset:
        if resume is not None:
            # The PUT that was in flight when we stopped may well have finished: completing
            # is idempotent and tells, and it saves sending the bytes (or a second asset) again.
            try:
                # The checksum makes the server refuse bytes that are not this file's.
                return self.complete(resume.asset_id, file.sha256 or sha256_file(file.path))
            except ApiError as error:
                if not resend_after_refused_completion(error):
                    raise
                log.info(
                    "resumed upload of %s not complete (%s); sending its bytes again",
                    file.filename,
                    error,
                )
        return super().upload(file, resume=resume, on_slot=on_slot)

    def finish(self, file: LocalFile, slot: UploadSlot, sent_sha256: str) -> UploadedAsset:
        return self.complete(slot.asset_id, sent_sha256)

    def complete(self, asset_id: str, sha256: str) -> UploadedAsset:
        completion = complete_v3(self.client, asset_id, sha256)
        url = completion.url or self.asset_url(asset_id)
        return UploadedAsset(asset_id, url, self.name, usable=completion.usable)


def resend_after_refused_completion(error: ApiError) -> bool:
    """Whether a resumed upload whose completion was refused should send its bytes again.

    HeyGen documents no code for "the bytes never arrived" or "other bytes arrived", so the
    status decides: any 4xx is a statement about this asset (missing, unfinished, checksum
    refused, slot gone) and sending the bytes again (to the recorded slot while it is valid,
    else to a fresh one) is both safe and the only way forward: a PUT replaces a slot's bytes,
    and a fresh slot stores nothing until its bytes arrive. Not 401 (the key: everything
    pauses), 408 or 429 (about the request, not the asset: try the completion again later),
    and not a 5xx or a network failure, after which the completion may yet succeed.
    """
    status = error.status
    return status is not None and 400 <= status < 500 and status not in (401, 408, 429)
