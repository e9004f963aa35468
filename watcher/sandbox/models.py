"""Records the sandbox exposes for inspection: requests seen, assets stored, videos generated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SeenRequest:
    """One request as the sandbox received it.

    ``status`` is the status answered, or that would have been answered when a ``drop_response``
    fault swallowed the response; it is 0 while the request is still being handled and when the
    connection was reset without handling it. ``fault`` names the fault effect applied, if any.
    """

    server: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int
    body_bytes: int
    at: float
    fault: str | None = None


@dataclass(frozen=True)
class StoredAsset:
    """An asset whose bytes the storage (or the multipart endpoint) has stored."""

    asset_id: str
    content_type: str
    size: int
    sha256: str
    path: Path
    protocol: str
    filename: str | None
    put_count: int
    created_at: float


@dataclass(frozen=True)
class SandboxVideo:
    """A video generation request; ``status`` is computed when the snapshot is taken."""

    video_id: str
    endpoint: str
    body: dict[str, Any]
    created_at: float
    status: str
    outcome: str
    failure_code: str | None = None
    failure_message: str | None = None
