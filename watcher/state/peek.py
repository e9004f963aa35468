"""Reading the journal without touching it (``scan --dry-run``): no state directory is created,
no schema written, no lock taken."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote


def read_only_fingerprints(path: Path) -> dict[str, tuple[int, int, str]]:
    """path → (size, mtime_ns, state) of every row; empty when there is no journal yet."""
    if not path.exists():
        return {}
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        return {
            file: (size, mtime_ns, state)
            for file, size, mtime_ns, state in db.execute(
                "SELECT path, size, mtime_ns, state FROM files"
            )
        }
    finally:
        db.close()
