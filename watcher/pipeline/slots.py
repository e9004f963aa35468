"""Upload slots in the journal: the client's value on one side, opaque JSON on the other.

The journal knows nothing of the network; it keeps a slot as text. This is the one place that
turns an `UploadSlot` into that text and back.
"""

from __future__ import annotations

import json
from typing import Any

from watcher.heygen.uploadfile import UploadSlot
from watcher.state.journal import FileRow
from watcher.state.journal_api import Journal


def remember_slot(journal: Journal, key: str, slot: UploadSlot, **changes: Any) -> None:
    """Commit the slot before the first byte is sent: a resumed upload reuses it."""
    journal.record_slot(
        key,
        slot=json.dumps(slot.to_json()),
        asset_id=slot.asset_id,
        expires_at=slot.expires_at,
        **changes,
    )


def recorded_slot(row: FileRow) -> UploadSlot | None:
    return UploadSlot.from_json(json.loads(row.slot)) if row.slot else None
