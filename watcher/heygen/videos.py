"""Video generation calls: submit a rendered body, read a status, download the result."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from watcher.heygen.client import HeyGenClient
from watcher.heygen.errors import PermanentError, ResponseLost, TransientError

# Only these end a video. HeyGen's status list is wider than pending/processing (``waiting`` is
# the documented first status of a new v3 video, and the list API shares /v1/video_status.get's
# values): any other status means "not done yet".
TERMINAL_STATES = ("completed", "failed")
_DOWNLOAD_BLOCK_BYTES = 1024 * 1024
# Endpoints that answer the v3 Video resource, whose id is `data.id`; the others answer
# `data.video_id` (v2 generate, v2 template generate, /v3/videos).
_ID_IN_DATA_ID = ("/v3/templates/",)


@dataclass(frozen=True)
class VideoStatus:
    status: str
    video_url: str | None = None
    thumbnail_url: str | None = None
    duration: float | None = None
    error: str | None = None


def id_field(endpoint: str) -> str:
    """Where the new video's id is in the answer of ``endpoint``."""
    return "id" if endpoint.startswith(_ID_IN_DATA_ID) else "video_id"


def generate(client: HeyGenClient, endpoint: str, body: dict[str, Any]) -> str:
    """POST a generation request; returns the new video's id.

    Never re-sent without a clear answer (`ResponseLost`: lost answer, timeout, reset, 408,
    5xx): each generation costs credits and no idempotency key is documented for it.
    """
    data = client.request("POST", endpoint, json=body, replay_safe=False)
    name = id_field(endpoint)
    video_id = data.get(name) if isinstance(data, dict) else None
    if not isinstance(video_id, str) or not video_id:
        # A success without a readable id: the video was probably created, so it must not be
        # failed (and re-sent by a later retry) as if nothing had happened.
        raise ResponseLost(
            f"POST {endpoint} succeeded without {name!r} in its answer: the video may have "
            "been created"
        )
    return video_id


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and value else None


def _failure_reason(data: dict[str, Any]) -> str:
    """v2/v3 give ``failure_code``/``failure_message``; v1 gives ``error``, a string or an
    object with ``code`` and ``message`` (or ``detail``)."""
    code = _optional_str(data, "failure_code")
    message = _optional_str(data, "failure_message")
    error = data.get("error")
    if isinstance(error, dict):
        code = code or _optional_str(error, "code")
        message = message or _optional_str(error, "message") or _optional_str(error, "detail")
    elif isinstance(error, str) and error:
        message = message or error
    return ": ".join(part for part in (code, message) if part) or "failed without a reason"


def parse_status(data: Any) -> VideoStatus:
    """The v1, v2 and v3 status payloads share these fields; normalise them."""
    if not isinstance(data, dict) or not isinstance(data.get("status"), str) or not data["status"]:
        raise PermanentError(f"malformed video status: {str(data)[:200]}")
    status = data["status"]
    error = _failure_reason(data) if status == "failed" else None
    duration = data.get("duration")
    return VideoStatus(
        status=status,
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
