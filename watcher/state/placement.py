"""Where a file's sidecar lives, and where a file goes after upload (``after_upload: move``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from watcher.config import FolderConfig
from watcher.state import sidecar


def sidecar_for(file: Path, folder: FolderConfig) -> Path:
    """Beside the file; mirrored under ``sidecar_dir`` for read-only drop folders; always
    beside a file that was moved after upload (the two travel together)."""
    if folder.move_to is not None and file.is_relative_to(folder.move_to):
        return sidecar.sidecar_path(file)
    return sidecar.sidecar_path(file, folder.path, folder.sidecar_dir)


def moved_path(file: Path, folder: FolderConfig) -> Path | None:
    """Where ``after_upload: move`` puts the file (same relative path), or None to keep it."""
    if folder.move_to is None or file.is_relative_to(folder.move_to):
        return None
    return folder.move_to / file.relative_to(folder.path)


def move_file(source: Path, target: Path) -> Path:
    """Move without ever overwriting or deleting: a name taken at the target gets a suffix."""
    target.parent.mkdir(parents=True, exist_ok=True)
    candidate = target
    counter = 1
    while candidate.exists() or Path(str(candidate) + sidecar.SUFFIX).exists():
        candidate = target.with_name(f"{target.stem} ({counter}){target.suffix}")
        counter += 1
    try:
        # link + unlink refuses to replace an existing name, unlike rename.
        os.link(source, candidate)
        os.unlink(source)
    except OSError:
        shutil.move(str(source), str(candidate))
    return candidate
