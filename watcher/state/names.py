"""Names that always fit: a file name of any legal length gets a sidecar (and a video) whose
name is legal too.

A sidecar is ``<name>.asset.json``; when that would exceed the filesystem's limit on a name
(NAME_MAX, 255 bytes on most), it is written under a shortened, deterministic name instead:
``<the name's first bytes>~<the first 16 hex digits of the SHA-256 of the full name>.asset.json``,
cut at a character boundary so that the whole is exactly at the limit or below. The sidecar's
``file`` field holds the full name. Downloaded videos are shortened the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_NAME_MAX = 255
HASH_CHARS = 16


def name_max(folder: Path) -> int:
    """The longest file name (in bytes) ``folder``'s filesystem takes; 255 when unknown
    (the folder may not exist yet)."""
    while True:
        try:
            return int(os.pathconf(folder, "PC_NAME_MAX"))
        except (OSError, ValueError):
            if folder.parent == folder:
                return DEFAULT_NAME_MAX
            folder = folder.parent  # the nearest existing ancestor is on the same filesystem


def fitted(stem: str, suffix: str, limit: int = DEFAULT_NAME_MAX) -> str:
    """``stem + suffix`` if it fits in ``limit`` bytes, else the shortened, deterministic form
    ``<stem's first bytes>~<hash of stem>`` + ``suffix``."""
    if len(os.fsencode(stem + suffix)) <= limit:
        return stem + suffix
    digest = hashlib.sha256(os.fsencode(stem)).hexdigest()[:HASH_CHARS]
    tail = f"~{digest}{suffix}"
    room = limit - len(os.fsencode(tail))
    encoded = os.fsencode(stem)[: max(0, room)]
    # Cut at a character boundary: drop the bytes of a character split in two.
    head = encoded.decode("utf-8", errors="ignore") if _is_utf8(stem) else os.fsdecode(encoded)
    while len(os.fsencode(head)) > room:
        head = head[:-1]
    return head + tail


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False  # undecodable bytes kept as surrogates: cut them as bytes
    return True
