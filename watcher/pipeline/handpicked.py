"""Files named by hand (`upload FILE`, a command's request to the running daemon): which rules
judge them.

A file inside a configured folder is judged by that folder's rules; any other by the `defaults`
rules, widened to every type the chosen protocol takes unless `defaults.types` narrows them,
rooted at the file's own folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from watcher.config import Config, FolderConfig
from watcher.config.mediatypes import DEFAULT_TYPES, PROTOCOL_TYPES


def folder_for_file(config: Config, path: Path) -> FolderConfig:
    for folder in config.folders:
        if path.is_relative_to(folder.path) and (folder.recursive or path.parent == folder.path):
            return folder
    types = config.defaults.types
    if types == DEFAULT_TYPES:
        types = PROTOCOL_TYPES[config.api.upload_protocol]
    return replace(config.defaults, path=path.parent, types=types, recursive=False)
