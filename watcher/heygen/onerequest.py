"""The one-request uploads: `v3-multipart` (``POST /v3/assets`` with a multipart body, 32 MB at
most) and `v1-upload` (``POST <upload_base_url>/v1/asset`` with the raw bytes). Neither has a
documented idempotency key, so neither is replayed blindly (`send_once`).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from watcher.config.mediatypes import PROTOCOL_TYPES
from watcher.heygen.client import HeyGenClient
from watcher.heygen.errors import ApiError, FileTooLarge, ResponseLost, UnsupportedType
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

MULTIPART_MAX_BYTES = 32 * 1024 * 1024


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
        bodies = Bodies(file, self.client.on_progress, prefix, suffix)
        data = send_once(
            self.client,
            file,
            "/v3/assets",
            bodies,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        sent_sha256 = bodies.checked_sha256()
        asset_id = require_str(data, "asset_id", "POST /v3/assets")
        url = data.get("url") or self.asset_url(asset_id)
        return UploadedAsset(asset_id, url, self.name, sent_sha256)


def send_once(
    client: HeyGenClient,
    file: LocalFile,
    path: str,
    bodies: Bodies,
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
        bodies = Bodies(file, self.client.on_progress)
        data = send_once(
            self.client,
            file,
            "/v1/asset",
            bodies,
            {"Content-Type": file.content_type},
            upload_host=True,
        )
        sent_sha256 = bodies.checked_sha256()
        asset_id = require_str(data, "id", "POST /v1/asset (upload host)")
        url = data.get("url") if isinstance(data.get("url"), str) else None
        return UploadedAsset(asset_id, url or self.asset_url(asset_id), self.name, sent_sha256)
