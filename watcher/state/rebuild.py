"""Rebuild the journal from the sidecars, keeping a broken journal aside.

Only for a journal that is really damaged (or lost): a healthy journal knows more than the
sidecars (failures, retries, videos, the asset cache, files whose sidecar was deleted) and is
never set aside.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from watcher.config import Config, FolderConfig
from watcher.state import sidecar
from watcher.state.journal import FileRow, JournalError
from watcher.state.journal_sqlite import SqliteJournal
from watcher.state.rows import adoptable_row
from watcher.state.tree import walk_files


def journal_is_healthy(path: Path) -> bool:
    """True when the journal exists and opens cleanly (integrity and version checked)."""
    if not path.exists():
        return False
    try:
        SqliteJournal(path).close()
    except JournalError:
        return False
    return True


def rebuild(config: Config) -> tuple[int, Path | None]:
    """Returns (rows recovered, where the old journal was put aside or None)."""
    if config.journal_url is not None:
        raise JournalError(
            "--rebuild-journal rebuilds the SQLite journal; a shared PostgreSQL journal is "
            "repaired in the database (the files it lost are adopted from their sidecars at "
            "the next scan)"
        )
    path = config.journal_path
    kept: Path | None = None
    if path.exists():
        kept = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, kept)
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.replace(side, Path(str(kept) + suffix))
    rows = [row for folder in config.folders for row in _rows_of(folder)]
    journal = SqliteJournal(path)
    try:
        journal.put_many(rows)
        journal.cache_recorded_assets()
    finally:
        journal.close()
    return len(rows), kept


def _rows_of(folder: FolderConfig) -> list[FileRow]:
    """A row for every file whose sidecar still describes it, wherever sidecars are kept."""
    roots = [folder.sidecar_dir or folder.path]
    if folder.move_to is not None:
        roots.append(folder.move_to)
    rows = []
    for root in roots:
        if not root.is_dir():
            continue
        for entry in walk_files(root, recursive=True):
            if not entry.name.endswith(sidecar.SUFFIX):
                continue
            location = Path(entry.path)
            media = location.with_name(location.name[: -len(sidecar.SUFFIX)])
            if "~" in media.name:
                # Perhaps a shortened name (`watcher.state.names`): the document has the file's.
                named = (sidecar.read(location) or {}).get("file")
                if isinstance(named, str) and "/" not in named and named not in ("", ".", ".."):
                    media = media.with_name(named)
            if folder.sidecar_dir is not None and root == folder.sidecar_dir:
                media = folder.path / media.relative_to(folder.sidecar_dir)
            row = _row_for(media, folder, location)
            if row is not None:
                rows.append(row)
    return rows


def _row_for(media: Path, folder: FolderConfig, location: Path) -> FileRow | None:
    document = sidecar.read(location)
    try:
        info = media.lstat()
    except OSError:
        return None
    row = adoptable_row(media, folder, info, document) if document else None
    if row is None or document is None:
        return None
    # The cache's age limit counts from the original upload, not from this rebuild.
    uploaded_at = _epoch(document.get("uploaded_at"))
    return replace(row, sidecar=str(location), created_at=uploaded_at or row.created_at)


def _epoch(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
