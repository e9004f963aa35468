"""The ``video`` object of a file's sidecar, built from the journal's row of its video."""

from __future__ import annotations

from typing import Any

from watcher.state.journal import VideoRow
from watcher.state.sidecar import iso_from_epoch


def sidecar_status(state: str) -> str:
    return {"downloading": "completed", "submitting": "unknown"}.get(state, state)


def sidecar_video(row: VideoRow) -> dict[str, Any]:
    """The sidecar's ``video`` object."""
    document: dict[str, Any] = {
        "template": row.template,
        "endpoint": row.endpoint,
        "video_id": row.video_id,
        "status": sidecar_status(row.state),
        "video_url": row.video_url,
        "thumbnail_url": row.thumbnail_url,
        "duration": row.duration,
        "error": row.error,
        "submitted_at": iso_from_epoch(row.submitted_at) if row.submitted_at else None,
        "completed_at": iso_from_epoch(row.completed_at) if row.completed_at else None,
        "downloaded_to": row.downloaded_to,
    }
    return document
