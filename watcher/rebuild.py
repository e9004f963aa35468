"""Rebuild the journal from the sidecars, keeping a broken journal aside."""

from __future__ import annotations

import os
import time
from pathlib import Path

from watcher import sidecar
from watcher.config import Config
from watcher.journal import FileRow, Journal
from watcher.sources import walk_files

JOURNAL_NAME = "journal.sqlite3"


def rebuild(config: Config) -> tuple[int, Path | None]:
    """Returns (rows recovered, where the old journal was put aside or None)."""
    path = config.state_dir / JOURNAL_NAME
    kept: Path | None = None
    if path.exists():
        kept = path.with_name(f"{JOURNAL_NAME}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, kept)
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.replace(side, Path(str(kept) + suffix))
    journal = Journal(path)
    recovered = 0
    try:
        for folder in config.folders:
            roots = [folder.sidecar_dir or folder.path]
            if folder.move_to is not None:
                roots.append(folder.move_to)
            for root in roots:
                if not root.is_dir():
                    continue
                for entry in walk_files(root, recursive=True):
                    if not entry.name.endswith(sidecar.SUFFIX):
                        continue
                    row = _row_from_sidecar(Path(entry.path), root, folder.path, folder)
                    if row is not None:
                        journal.put(row)
                        recovered += 1
    finally:
        journal.close()
    return recovered, kept


def _row_from_sidecar(location: Path, root: Path, folder_root: Path, folder) -> FileRow | None:
    document = sidecar.read(location)
    if document is None or document.get("status") not in ("uploaded", "rejected"):
        return None
    media = location.with_name(location.name[: -len(sidecar.SUFFIX)])
    if folder.sidecar_dir is not None and root == folder.sidecar_dir:
        media = folder_root / media.relative_to(folder.sidecar_dir)
    try:
        info = media.lstat()
    except OSError:
        return None
    now = time.time()
    status = document["status"]
    if (info.st_size, info.st_mtime_ns) != (document.get("size"), document.get("mtime_ns")):
        return None  # the file changed since: let the daemon look at it afresh
    return FileRow(
        path=str(media),
        folder=str(folder_root),
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
        inode=info.st_ino,
        sha256=document.get("sha256"),
        content_type=document.get("content_type"),
        state=status,
        attempts=0,
        next_attempt_at=None,
        asset_id=document.get("asset_id"),
        asset_url=document.get("url"),
        protocol=document.get("protocol"),
        reused=int(bool(document.get("reused"))),
        previous_asset_id=document.get("previous_asset_id"),
        slot=None,
        slot_expires_at=None,
        sidecar=str(location),
        last_error=document.get("error"),
        created_at=now,
        updated_at=now,
    )
