"""Whether the daemon can write where a folder's results go: sidecars, moved files, videos.

Under systemd's ``ProtectSystem=strict`` everything outside ``ReadWritePaths=`` is a read-only
mount. A drop folder left out of the drop-in can still be read, so without this check each of
its files would be uploaded and then fail at the sidecar, again at every retry. Asking once per
folder turns that into one clear line, and the folder's files are left alone until it is fixed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from watcher.config import FolderConfig
from watcher.config.templates import Template


def write_targets(folder: FolderConfig, templates: Mapping[str, Template]) -> list[Path]:
    """Every place the daemon writes to for this folder's files."""
    targets = [folder.sidecar_dir or folder.path]
    if folder.move_to is not None:
        targets.append(folder.move_to)
    template = templates.get(folder.template) if folder.template else None
    if template is not None and template.download_to is not None:
        targets.append(template.download_to)
    return targets


def _nearest_existing(path: Path) -> Path:
    # A target that does not exist yet is created inside its nearest existing ancestor.
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def unwritable(folder: FolderConfig, templates: Mapping[str, Template]) -> str | None:
    """Why the daemon could not write its results for ``folder``, or None if it can."""
    for target in write_targets(folder, templates):
        existing = _nearest_existing(target)
        try:
            read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        except OSError:
            continue  # gone: the watch reports a missing folder on its own
        if read_only:
            return f"{target} (read-only file system)"
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"{target} (no write permission)"
    return None
