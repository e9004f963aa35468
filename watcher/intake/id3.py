"""Where the audio starts and ends in a tagged MP3: ID3v2 at the head, ID3v1 and APE at the tail.

libmagic is shown a bounded window of the file. An ID3v2 tag carrying a 1000×1000 cover is bigger
than that window, so libmagic never reaches an MPEG frame and calls the file
``application/octet-stream``. The tag declares its own size, though: read the 10-byte header,
jump past the tag, and show libmagic the bytes where the audio begins.

ID3v2 sizes are "syncsafe" (four 7-bit bytes); a size byte with its high bit set, an unknown
major version, or a size that runs to or past the end of the audio is a corrupt tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from watcher.intake.boundedread import BoundedReader

HEADER_BYTES = 10
ID3V1_BYTES = 128
APE_FOOTER_BYTES = 32
# Several tags in a row happen (a tagger prepending to an already tagged file); more than a few
# is not a real file.
MAX_STACKED_TAGS = 4
_FOOTER_PRESENT = 0x10  # ID3v2.4 header flag: a 10-byte footer follows the tag
_APE_HAS_HEADER = 0x80000000


@dataclass(frozen=True)
class AudioSpan:
    """Where the audio lies between the tags, or why the tags make no sense."""

    start: int
    end: int
    tag_versions: tuple[str, ...] = ()
    damage: str | None = None


def syncsafe(raw: bytes) -> int | None:
    """A 28-bit syncsafe integer, or None if a byte has its high bit set (not syncsafe)."""
    value = 0
    for byte in raw:
        if byte & 0x80:
            return None
        value = (value << 7) | byte
    return value


def _tail_start(reader: BoundedReader) -> int:
    """Where the trailing tags (APE, then ID3v1, both optional) begin: the end of the audio."""
    end = reader.size
    if end >= ID3V1_BYTES and reader.read_at(end - ID3V1_BYTES, 3) == b"TAG":
        end -= ID3V1_BYTES
    if end >= APE_FOOTER_BYTES:
        footer = reader.read_at(end - APE_FOOTER_BYTES, APE_FOOTER_BYTES)
        if footer[:8] == b"APETAGEX":
            size = int.from_bytes(footer[12:16], "little")  # items + footer, without the header
            flags = int.from_bytes(footer[20:24], "little")
            if flags & _APE_HAS_HEADER:
                size += APE_FOOTER_BYTES
            if APE_FOOTER_BYTES <= size <= end:
                end -= size
    return end


def audio_span(reader: BoundedReader) -> AudioSpan:
    """Skip every ID3v2 tag at the head of the file and the tags at its tail."""
    offset = 0
    versions: list[str] = []
    end = _tail_start(reader)
    if reader.size < HEADER_BYTES:
        return AudioSpan(0, end, (), f"the ID3v2 header is cut short ({reader.size} bytes)")
    for _ in range(MAX_STACKED_TAGS):
        header = reader.read_at(offset, HEADER_BYTES)
        if len(header) < HEADER_BYTES or header[:3] != b"ID3":
            break
        major, revision, flags = header[3], header[4], header[5]
        if major not in (2, 3, 4) or revision == 0xFF:
            return AudioSpan(offset, end, tuple(versions), f"unknown ID3v2 version 2.{major}")
        versions.append(f"ID3v2.{major}")
        size = syncsafe(header[6:10])
        if size is None:
            return AudioSpan(offset, end, tuple(versions), "its ID3v2 size is not syncsafe")
        tag_end = offset + HEADER_BYTES + size
        if major == 4 and flags & _FOOTER_PRESENT:
            tag_end += HEADER_BYTES
        if tag_end >= end:
            where = "the end of the file" if end == reader.size else "the trailing tags"
            return AudioSpan(
                offset,
                end,
                tuple(versions),
                f"its ID3v2 tag claims {tag_end - offset} bytes, running past {where} "
                f"(the file has {reader.size} bytes)",
            )
        offset = tag_end
    return AudioSpan(offset, end, tuple(versions))
