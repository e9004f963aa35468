"""Video generation calls: submit a rendered body, read a status, download the result."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from watcher.heygen.client import HeyGenClient
from watcher.heygen.errors import PermanentError, TransientError

VIDEO_STATES = ("pending", "processing", "completed", "failed")
_DOWNLOAD_BLOCK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class VideoStatus:
    status: str
    video_url: str | None = None
    thumbnail_url: str | None = None
    duration: float | None = None
    error: str | None = None


def generate(client: HeyGenClient, endpoint: str, body: dict[str, Any]) -> str:
    """POST a generation request; returns the new ``video_id``.

    Never replayed on a lost answer (`ResponseLost`): each generation costs credits.
    """
    data = client.request("POST", endpoint, json=body, replay_safe=False)
    video_id = data.get("video_id") if isinstance(data, dict) else None
    if not isinstance(video_id, str) or not video_id:
        raise PermanentError(f"malformed response to POST {endpoint}: missing 'video_id'")
    return video_id


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and value else None


def parse_status(data: Any) -> VideoStatus:
    """The v1, v2 and v3 status payloads share these fields; normalise them."""
    if not isinstance(data, dict) or data.get("status") not in VIDEO_STATES:
        raise PermanentError(f"malformed video status: {str(data)[:200]}")
    error = None
    if data["status"] == "failed":
        code = _optional_str(data, "failure_code")
        message = _optional_str(data, "failure_message") or _optional_str(data, "error")
        error = ": ".join(part for part in (code, message) if part) or "failed without a reason"
    duration = data.get("duration")
    return VideoStatus(
        status=data["status"],
        video_url=_optional_str(data, "video_url"),
        thumbnail_url=_optional_str(data, "thumbnail_url"),
        duration=float(duration) if isinstance(duration, (int, float)) else None,
        error=error,
    )


def get_status(client: HeyGenClient, status_path: str) -> VideoStatus:
    path, _, query = status_path.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
    return parse_status(client.request("GET", path, params=params or None))


def download(client: HeyGenClient, url: str, destination: Path, mode: int = 0o644) -> int:
    """Stream ``url`` into ``destination`` through a temp file in the same folder, then rename,
    so a reader never sees a half-written video, created with permissions ``mode``. Returns the
    number of bytes written."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with client.open_download(url) as response:
        # A short temp name of fixed length: a legal destination name never fails for it.
        handle, temp_name = tempfile.mkstemp(prefix=".", suffix=".mp4.part", dir=destination.parent)
        try:
            os.fchmod(handle, mode)
            with os.fdopen(handle, "wb") as out:
                for block in response.iter_content(_DOWNLOAD_BLOCK_BYTES):
                    out.write(block)
                    written += len(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp_name, destination)
        except requests.RequestException as error:
            Path(temp_name).unlink(missing_ok=True)
            raise TransientError(f"download interrupted ({type(error).__name__})") from None
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
    return written
