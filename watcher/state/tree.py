"""Walking a drop folder's tree: every file below it, symlinks not followed, hidden folders
skipped. Shared by the scans that notice files and by the journal's rebuild from sidecars."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def walk_files(root: Path, recursive: bool) -> Iterator[os.DirEntry[str]]:
    """Every non-directory entry under ``root`` (symlinks not followed), hidden folders skipped."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if is_dir:
                        if recursive and not entry.name.startswith("."):
                            stack.append(Path(entry.path))
                    else:
                        yield entry
        except FileNotFoundError:
            continue
        except OSError as error:
            log.warning("cannot list %s: %s", folder, error.strerror)
