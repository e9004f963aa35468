"""The notifications a file's or a video's outcome causes, built where the outcome is decided
and written by the journal in the same transaction (`OutboxEvent`); the outbox worker
(`watcher.service.outbox`) delivers them.

A receiver sees, as the body of every event (the same body for every retry)::

    {"type": "file.uploaded", "timestamp": "2026-12-06T15:02:11Z",
     "data": {"event": "uploaded", "path": "/srv/drop/a.png", "folder": "/srv/drop",
              "sidecar": {...the file's sidecar document: asset id, URL, reason, video...}}}
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.state.journal import OutboxEvent
from watcher.state.sidecar import iso_from_epoch

TYPES = {
    "uploaded": "file.uploaded",
    "rejected": "file.rejected",
    "failed": "file.failed",
    "video_completed": "video.completed",
    "video_failed": "video.failed",
}


class Notices:
    def __init__(self, live: LiveConfig, on_written: Callable[[], None] = lambda: None) -> None:
        self.live = live
        # Wakes the outbox worker once the events are committed.
        self.on_written = on_written

    def events(
        self,
        event: str,
        path: str,
        folder: FolderConfig,
        document: Callable[[], dict[str, Any] | None],
    ) -> list[OutboxEvent]:
        """One event per target that wants ``event`` for this folder's files (the document is
        built only when someone does)."""
        targets = self.live.current.notify_for(folder, event)
        if not targets:
            return []
        now = time.time()
        body = json.dumps(
            {
                "type": TYPES[event],
                "timestamp": iso_from_epoch(now),
                "data": {
                    "event": event,
                    "path": path,
                    "folder": str(folder.path),
                    "sidecar": document(),
                },
            },
            ensure_ascii=False,
            sort_keys=True,
        )
        return [
            OutboxEvent(
                id=f"msg_{secrets.token_hex(16)}",
                event=event,
                path=path,
                target=target.url,
                body=body,
                next_at=now,
                created_at=now,
            )
            for target in targets
        ]
