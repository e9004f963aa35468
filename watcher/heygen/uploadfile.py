"""What every upload protocol shares: the file to send, the slot its bytes go to, the asset that
comes back, the body streamed once per attempt, and the interface each protocol implements
(`watcher.heygen.uploads` names them all).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from watcher.heygen.body import FileBody, FileChangedError
from watcher.heygen.client import HeyGenClient
from watcher.heygen.errors import PermanentError

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


SlotCallback = Callable[[UploadSlot], None]


def require_str(data: Any, name: str, what: str) -> str:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise PermanentError(f"malformed response to {what}: missing {name!r}")
    return value


class Bodies:
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
