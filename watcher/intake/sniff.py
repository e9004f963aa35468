"""What a file really is, from its bytes (libmagic), never from its name.

A libmagic cookie returns a pointer into its own buffer, so one cookie shared by two threads
can corrupt results or crash. Each thread therefore gets its own `magic.Magic`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import magic

from watcher.config.mediatypes import canonical_type

# Enough for every container signature we care about (MP4's ftyp box, ID3 tags before an MP3
# frame, RIFF/WAVE headers) without reading whole files.
SNIFF_BYTES = 64 * 1024

_local = threading.local()


def _cookie() -> magic.Magic:
    cookie = getattr(_local, "cookie", None)
    if cookie is None:
        cookie = magic.Magic(mime=True)
        _local.cookie = cookie
    return cookie


def sniff_bytes(head: bytes) -> str:
    """The API's name for the type of a buffer (``application/octet-stream`` if unknown)."""
    if not head:
        return "application/x-empty"
    return canonical_type(_cookie().from_buffer(head))


def sniff_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return sniff_bytes(handle.read(SNIFF_BYTES))
