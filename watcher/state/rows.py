"""Journal rows built from what is on disk: a file's stat, its folder, its sidecar."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from watcher.config import FolderConfig
from watcher.state import sidecar
from watcher.state.journal import FileRow
from watcher.state.placement import sidecar_for
from watcher.state.states import FINAL, FileState

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_listed_sidecar(location: str) -> dict[str, Any] | None:
    """The sidecar at ``location``, which a directory listing just showed as a regular file:
    one open, fstat and read (a scan adopting a million files reads a million sidecars).
    Anything unusual (it changed kind or size meanwhile, it is too large) goes the careful
    way, `sidecar.read`, which says why it is not read."""
    try:
        fd = os.open(location, _OPEN_FLAGS)
    except OSError:
        return sidecar.read(location)
    try:
        info = os.fstat(fd)
        usual = stat.S_ISREG(info.st_mode) and info.st_size <= sidecar.MAX_SIDECAR_BYTES
        data = os.read(fd, info.st_size + 1) if usual else b""
    finally:
        os.close(fd)
    if not usual or len(data) != info.st_size:
        return sidecar.read(location)
    try:
        document = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("schema") != sidecar.SCHEMA:
        return None
    return document


def adoptable_row(
    path: Path | str, folder: FolderConfig, info: Any, document: dict[str, Any] | None = None
) -> FileRow | None:
    """A final journal row for a file whose sidecar still describes it (same size and
    mtime), or None. Reads the sidecar unless given. A string path is taken as it is: this
    runs once per file of a backlog at start-up."""
    if document is None:
        name = os.path.basename(path)
        beside = (
            folder.sidecar_dir is None
            and folder.move_to is None
            # A longer name may have a shortened sidecar name (`watcher.state.names`).
            and len(os.fsencode(name)) + len(sidecar.SUFFIX) <= sidecar.SHORT_NAME_BYTES
        )
        # Beside the file (the usual case) the name is a string operation.
        document = sidecar.read(
            str(path) + sidecar.SUFFIX if beside else sidecar_for(Path(path), folder)
        )
    if document is None or document.get("status") not in FINAL:
        return None
    if document.get("size") != info.st_size or document.get("mtime_ns") != info.st_mtime_ns:
        return None
    return new_row(path, folder, info, time.time(), FileState(document["status"]), document)


def new_row(
    path: Path | str,
    folder: FolderConfig,
    info: Any,
    now: float,
    state: FileState,
    document: dict[str, Any] | None = None,
    *,
    sha256: str | None = None,
    content_type: str | None = None,
    previous_asset_id: str | None = None,
    last_error: str | None = None,
) -> FileRow:
    document = document or {}
    return FileRow(
        path=str(path),
        folder=str(folder.path),
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
        inode=info.st_ino,
        sha256=sha256 or document.get("sha256"),
        content_type=content_type or document.get("content_type"),
        state=state,
        attempts=0,
        next_attempt_at=None,
        asset_id=document.get("asset_id"),
        asset_url=document.get("url"),
        protocol=document.get("protocol"),
        reused=0,
        previous_asset_id=previous_asset_id,
        slot=None,
        slot_expires_at=None,
        sidecar=None,
        last_error=last_error or document.get("error"),
        created_at=now,
        updated_at=now,
    )
