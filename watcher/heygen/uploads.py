"""The four upload protocols behind one interface.

Every protocol turns a `LocalFile` into an `UploadedAsset`. Those with a presigned slot report
it through ``on_slot`` *before* sending any bytes, so a journal can record it and a resumed
upload can PUT to the same slot again (a second PUT to a slot replaces its bytes; it never
creates a second asset). A slot that has expired is replaced by a fresh one.
"""

from __future__ import annotations

import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from string import Template
from typing import Any

from watcher.config.mediatypes import PROTOCOL_TYPES
from watcher.heygen.body import FileBody, FileChangedError, sha256_file
from watcher.heygen.client import HeyGenClient
from watcher.heygen.errors import (
    ApiError,
    FileTooLarge,
    PermanentError,
    RateLimited,
    ResponseLost,
    SlotExpired,
    TransientError,
    UnsupportedType,
)
from watcher.heygen.retry import is_retryable, with_retries

log = logging.getLogger(__name__)

MULTIPART_MAX_BYTES = 32 * 1024 * 1024
# Do not start a PUT on a slot that expires this soon: a big file would not make it.
SLOT_SAFETY_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class LocalFile:
    path: Path
    size: int
    content_type: str
    # None: not hashed beforehand. Protocols that do not need the checksum up front then hash
    # the bytes as they send them, so a big file is read from disk once, not twice.
    sha256: str | None

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class UploadSlot:
    """Where the bytes go: a presigned URL, the headers it was signed with, its expiry."""

    protocol: str
    asset_id: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    expires_at: float | None = None  # epoch seconds; None when the API did not say

    def usable(self, now: float | None = None) -> bool:
        if self.expires_at is None:
            return True
        return (now or time.time()) + SLOT_SAFETY_MARGIN_SECONDS < self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "asset_id": self.asset_id,
            "url": self.url,
            "headers": self.headers,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadSlot:
        return cls(
            protocol=data["protocol"],
            asset_id=data["asset_id"],
            url=data["url"],
            headers=dict(data.get("headers") or {}),
            expires_at=data.get("expires_at"),
        )


@dataclass(frozen=True)
class UploadedAsset:
    asset_id: str
    url: str
    protocol: str
    sha256: str | None = None  # the hash of the bytes sent, when they were hashed on the way
    # False when the completion answered that HeyGen is still ingesting the asset: a video
    # naming it would be refused (`asset_not_available`) until it is usable.
    usable: bool = True


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


SlotCallback = Callable[[UploadSlot], None]


def _require_str(data: Any, name: str, what: str) -> str:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise PermanentError(f"malformed response to {what}: missing {name!r}")
    return value


class _Bodies:
    """A fresh streamed body of one file for every attempt (a body can be read only once);
    the last one made tells what was sent, or why sending failed."""

    def __init__(
        self,
        file: LocalFile,
        on_block: Callable[[], None],
        prefix: bytes = b"",
        suffix: bytes = b"",
    ) -> None:
        self.file = file
        self.on_block = on_block
        self.prefix = prefix
        self.suffix = suffix
        self._made: list[FileBody] = []

    def __call__(self) -> FileBody:
        body = FileBody(
            self.file.path,
            self.file.size,
            prefix=self.prefix,
            suffix=self.suffix,
            on_block=self.on_block,
        )
        self._made.append(body)
        return body

    def raise_local_error(self) -> None:
        """If sending failed because of the file (unreadable, or its bytes changed so that the
        storage refused the checksum), say that rather than blaming the network or the server."""
        if not self._made:
            return
        body = self._made[-1]
        if body.local_error is not None:
            raise body.local_error
        if body.finished and self.file.sha256 is not None and body.sha256() != self.file.sha256:
            raise FileChangedError(f"{self.file.path} changed while it was being uploaded")

    def checked_sha256(self) -> str:
        """After sending: the bytes sent must be the bytes we hashed, or the file changed
        under us. Returns the hash of what was sent."""
        sent = self._made[-1].sha256()
        if self.file.sha256 is not None and sent != self.file.sha256:
            raise FileChangedError(f"{self.file.path} changed while it was being uploaded")
        return sent


class UploadProtocol(ABC):
    name: str
    # Whether the SHA-256 must be known before the first request (v3 signs it into the slot).
    needs_checksum: bool = False

    def __init__(self, client: HeyGenClient) -> None:
        self.client = client

    @abstractmethod
    def upload(
        self,
        file: LocalFile,
        *,
        resume: UploadSlot | None = None,
        on_slot: SlotCallback | None = None,
    ) -> UploadedAsset:
        """Upload ``file``; raise an `ApiError` (or `FileChangedError`) if it cannot be done."""

    def asset_url(self, asset_id: str) -> str:
        return Template(self.client.api.asset_url_template).safe_substitute(asset_id=asset_id)


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
        bodies = _Bodies(file, self.client.on_progress)
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
            asset_id=_require_str(data, "asset_id", "POST /v1/asset"),
            url=_require_str(data, "url", "POST /v1/asset"),
        )

    def put_headers(self, file: LocalFile, slot: UploadSlot) -> dict[str, str]:
        return {"Content-Type": file.content_type}

    def finish(self, file: LocalFile, slot: UploadSlot, sent_sha256: str) -> UploadedAsset:
        return UploadedAsset(slot.asset_id, self.asset_url(slot.asset_id), self.name)


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
        asset_id=_require_str(data, "asset_id", what),
        url=_require_str(data, "upload_url", what),
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


class V3Multipart(UploadProtocol):
    """One ``POST /v3/assets`` with the bytes in a multipart body; 32 MB at most."""

    name = "v3-multipart"

    def upload(
        self,
        file: LocalFile,
        *,
        resume: UploadSlot | None = None,
        on_slot: SlotCallback | None = None,
    ) -> UploadedAsset:
        if file.size > MULTIPART_MAX_BYTES:
            raise FileTooLarge(
                f"{file.filename} is {file.size} bytes; v3-multipart takes at most "
                f"{MULTIPART_MAX_BYTES} bytes (32 MB): use v3-direct or v1-presigned"
            )
        boundary = "heygen-watcher-" + secrets.token_hex(16)
        quoted_name = file.filename.replace("\\", "\\\\").replace('"', '\\"')
        prefix = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{quoted_name}"\r\n'
            f"Content-Type: {file.content_type}\r\n\r\n"
        ).encode()
        suffix = f"\r\n--{boundary}--\r\n".encode()
        bodies = _Bodies(file, self.client.on_progress, prefix, suffix)
        data = send_once(
            self.client,
            file,
            "/v3/assets",
            bodies,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        sent_sha256 = bodies.checked_sha256()
        asset_id = _require_str(data, "asset_id", "POST /v3/assets")
        url = data.get("url") or self.asset_url(asset_id)
        return UploadedAsset(asset_id, url, self.name, sent_sha256)


def send_once(
    client: HeyGenClient,
    file: LocalFile,
    path: str,
    bodies: _Bodies,
    headers: dict[str, str],
    *,
    upload_host: bool = False,
) -> Any:
    """POST a one-request upload, never replayed blindly.

    No idempotency key is documented for these uploads: after a timeout, a reset or a 5xx
    once the body may have arrived, the server may have stored the file, and sending it again
    at once could store it twice. Such a failure is `ResponseLost`: the pipeline tries the
    file again later (spread over ``retry_window_seconds``), accepting that an orphan copy may
    then exist; nothing can ask HeyGen whether the first one arrived. A request that certainly
    never left (connection refused) is retried at once.
    """
    try:
        return client.request(
            "POST",
            path,
            data=bodies,
            headers=headers,
            replay_safe=False,
            upload_host=upload_host,
        )
    except ResponseLost as error:
        bodies.raise_local_error()
        log.warning(
            "upload of %s got no clear answer (%s); it will be sent again later, which may "
            "leave an unused copy on HeyGen",
            file.filename,
            error,
        )
        raise
    except ApiError:
        bodies.raise_local_error()
        raise


class V1Upload(UploadProtocol):
    """HeyGen's documented one-request upload: ``POST <upload_base_url>/v1/asset`` with the
    raw bytes as the body and the file's type as ``Content-Type``."""

    name = "v1-upload"

    def upload(
        self,
        file: LocalFile,
        *,
        resume: UploadSlot | None = None,
        on_slot: SlotCallback | None = None,
    ) -> UploadedAsset:
        accepted = PROTOCOL_TYPES[self.name]
        if file.content_type not in accepted:
            raise UnsupportedType(
                f"{file.filename} is {file.content_type}; v1-upload takes "
                f"{', '.join(accepted)}: use v1-presigned or v3-direct"
            )
        bodies = _Bodies(file, self.client.on_progress)
        data = send_once(
            self.client,
            file,
            "/v1/asset",
            bodies,
            {"Content-Type": file.content_type},
            upload_host=True,
        )
        sent_sha256 = bodies.checked_sha256()
        asset_id = _require_str(data, "id", "POST /v1/asset (upload host)")
        url = data.get("url") if isinstance(data.get("url"), str) else None
        return UploadedAsset(asset_id, url or self.asset_url(asset_id), self.name, sent_sha256)


PROTOCOLS: dict[str, type[UploadProtocol]] = {
    cls.name: cls for cls in (V1Presigned, V1Upload, V3Direct, V3Multipart)
}


def make_protocol(client: HeyGenClient) -> UploadProtocol:
    return PROTOCOLS[client.api.upload_protocol](client)


__all__ = [
    "PROTOCOLS",
    "ApiError",
    "LocalFile",
    "RateLimited",
    "TransientError",
    "UploadProtocol",
    "UploadSlot",
    "UploadedAsset",
    "make_protocol",
]
