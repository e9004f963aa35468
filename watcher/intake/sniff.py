"""What a file really is, from its bytes, never from its name.

libmagic judges, but it sees only a bounded window from the start of the file. Two kinds of file
need more than that, and get it from small, bounded readers first:

- ISO base media files (MP4, MOV, 3GP, M4A, HEIC, AVIF): their `ftyp` brands and track handlers
  say what they hold (`watcher.intake.isobmff`);
- MP3s behind an ID3v2 tag, which can be far bigger than the window (album art): the window is
  taken where the tag says the audio starts (`watcher.intake.id3`).

A libmagic cookie returns a pointer into its own buffer, so one cookie shared by two threads
can corrupt results or crash. Each thread therefore gets its own cookies: one for MIME types,
one for libmagic's descriptions (used to name a file we refuse when its MIME type says nothing).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import magic

from watcher.config.mediatypes import OCTET_STREAM, TYPE_NAMES, canonical_type
from watcher.intake import id3, isobmff
from watcher.intake.boundedread import BoundedReader, open_regular

# Enough for every signature libmagic knows (RIFF/WAVE headers, PNG/JPEG markers, EBML heads)
# without reading whole files.
SNIFF_BYTES = 64 * 1024
# Packet sizes of MPEG transport streams: plain, with a 4-byte timecode (M2TS, from AVCHD
# cameras and Blu-ray), and with 16 bytes of FEC. libmagic knows none of them reliably.
_TS_PACKETS = ((188, 0), (192, 4), (204, 0))
_TS_PACKETS_CHECKED = 8

# libmagic descriptions that start with the container and name the content second.
_CONTAINER_WORDS = ("ISO Media", "RIFF (little-endian) data", "RIFF (big-endian) data")

_local = threading.local()


@dataclass(frozen=True)
class Sniffed:
    """The verdict on a file's content."""

    content_type: str  # the API's name for the type (application/octet-stream if unknown)
    name: str = ""  # what to call it in words, "" when nothing is known beyond the type
    damage: str | None = None  # recognised, but broken in a way that makes it unusable

    @property
    def what(self) -> str:
        return f"{self.name} ({self.content_type})" if self.name else self.content_type


def _mime_cookie() -> magic.Magic:
    cookie = getattr(_local, "mime", None)
    if cookie is None:
        cookie = magic.Magic(mime=True)
        _local.mime = cookie
    return cookie


def _text_cookie() -> magic.Magic:
    cookie = getattr(_local, "text", None)
    if cookie is None:
        cookie = magic.Magic()
        _local.text = cookie
    return cookie


def describe(head: bytes) -> str:
    """libmagic's description, cut to its first clause ("MPEG transport stream data" →
    "MPEG transport stream", "ISO Media, Apple iTunes Video" → "Apple iTunes Video"); "" when
    it knows nothing ("data")."""
    text = _text_cookie().from_buffer(head).replace("\\012", "\n").split("\n", 1)[0]
    clauses = [clause.strip() for clause in text.split(",")]
    if len(clauses) > 1 and clauses[0] in _CONTAINER_WORDS:
        clauses = clauses[1:]
    first = clauses[0].removesuffix(" data").strip()
    return "" if first in ("", "data") else first


def _transport_stream(head: bytes) -> bool:
    """Sync bytes (0x47) at the start of several consecutive packets."""
    for packet, first in _TS_PACKETS:
        offsets = range(first, min(len(head), first + packet * _TS_PACKETS_CHECKED), packet)
        if len(offsets) >= 3 and all(head[offset] == 0x47 for offset in offsets):
            return True
    return False


def sniff_bytes(head: bytes) -> Sniffed:
    """libmagic's verdict on a buffer, named."""
    if not head:
        return Sniffed("application/x-empty", "empty file")
    content_type = canonical_type(_mime_cookie().from_buffer(head))
    if content_type == OCTET_STREAM and _transport_stream(head):
        return Sniffed("video/mp2t", TYPE_NAMES["video/mp2t"])
    return Sniffed(content_type, TYPE_NAMES.get(content_type) or describe(head))


def _tagged_audio(reader: BoundedReader) -> Sniffed:
    span = id3.audio_span(reader)
    if span.damage is not None:
        return Sniffed(
            "audio/mpeg", "MP3 audio", f"MP3 audio but the tag is corrupt: {span.damage}"
        )
    window = reader.read_at(span.start, min(SNIFF_BYTES, span.end - span.start))
    # Some taggers pad with zeros beyond the size they declare.
    window = window.lstrip(b"\0")
    found = sniff_bytes(window) if window else Sniffed(OCTET_STREAM)
    # Behind an ID3 tag only audio makes sense (MP3, or AAC/FLAC from some taggers).
    if not found.content_type.startswith("audio/"):
        return Sniffed(
            "audio/mpeg",
            "MP3 audio",
            "MP3 audio but the tag is corrupt: no MPEG audio frame where the "
            f"{span.tag_versions[-1]} tag ends (byte {span.start})",
        )
    return found


def sniff_reader(reader: BoundedReader) -> Sniffed:
    """The verdict on an open file, from a few bounded reads."""
    head = reader.read_at(0, SNIFF_BYTES)
    if head[4:8] == b"ftyp":
        found = isobmff.identify(reader)
        if found is not None:
            return Sniffed(found.content_type, found.name)
    if head.startswith(b"ID3"):
        return _tagged_audio(reader)
    return sniff_bytes(head)


def sniff_path(path: Path) -> Sniffed:
    """The verdict on a file; `NotRegularFile` for anything but a regular file (a symlink is
    not followed, a FIFO is not waited on)."""
    with open_regular(path) as reader:
        return sniff_reader(reader)


def sniff_file(path: Path) -> str:
    """The API's name for a file's type."""
    return sniff_path(path).content_type
