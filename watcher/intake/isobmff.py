"""What an ISO base media file (MP4, MOV, 3GP, M4A, HEIC, AVIF) is, from its boxes.

libmagic maps only some `ftyp` brands to a MIME type: Sony's XAVC S and Canon's CAEP come back as
``application/octet-stream`` and Sony's MSNV as ``audio/mp4``, although all three are ordinary
MPEG-4 video. And no brand says whether an MP4 holds a picture at all: ffmpeg writes audio-only
files as ``isom`` MP4s. So: read the `ftyp` box (major and compatible brands); for the MPEG-4
family, walk ``moov/trak/mdia/hdlr`` and look at the track handlers (``vide``, ``soun``).

Reading is bounded: box headers are 8 or 16 bytes read where the previous box says the next one
starts (the payload of `mdat` is never read), at most `MAX_BOXES` headers in all, and only the
first few levels of `moov` are entered.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from watcher.intake.boundedread import BoundedReader

MAX_BOXES = 256
MAX_COMPATIBLE_BRANDS = 64

# Brands of plain MPEG-4 files: the ISO family, Apple's M4V, DASH/CMAF, and cameras' own.
MP4_BRANDS = frozenset(
    {
        "isom", "iso2", "iso3", "iso4", "iso5", "iso6", "iso7", "iso8", "iso9",
        "mp41", "mp42", "mp71", "avc1", "avc2", "hvc1", "hev1", "av01",
        "dash", "msdh", "msix", "cmfc", "cmf2", "M4V ", "M4VH", "M4VP", "f4v ", "mmp4",
    }
)  # fmt: skip
# Camera makers' major brands for what are ordinary MPEG-4 video files: Sony XAVC S and the
# PSP-era MSNV, Canon, Nikon, Panasonic, Fujifilm, GoPro-style writers.
CAMERA_BRANDS = frozenset({"XAVC", "MSNV", "CAEP", "NIKO", "PANA", "FUJI", "MPPI", "ROSS"})
AUDIO_BRANDS = frozenset({"M4A ", "M4B ", "M4P ", "F4A ", "F4B "})
HEIC_BRANDS = frozenset({"heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs"})
AVIF_BRANDS = frozenset({"avif", "avis"})
HEIF_BRANDS = frozenset({"mif1", "msf1", "mif2"})


@dataclass(frozen=True)
class Box:
    kind: str
    start: int
    header: int
    end: int

    @property
    def payload(self) -> int:
        return self.start + self.header


@dataclass(frozen=True)
class Identified:
    """The API's type name for the file and what to call it in words."""

    content_type: str
    name: str


@dataclass
class _Budget:
    left: int = MAX_BOXES

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


def boxes(reader: BoundedReader, start: int, end: int, budget: _Budget) -> Iterator[Box]:
    """The boxes between ``start`` and ``end``, read header by header. Stops (without error) at a
    truncated header, an impossible size, a box running past its parent, or the budget."""
    offset = start
    while offset + 8 <= end and budget.take():
        raw = reader.read_at(offset, 16)
        if len(raw) < 8:
            return
        size = int.from_bytes(raw[:4], "big")
        kind = raw[4:8].decode("latin-1")
        header = 8
        if size == 1:
            if len(raw) < 16:
                return
            size = int.from_bytes(raw[8:16], "big")
            header = 16
        elif size == 0:
            size = end - offset  # "extends to the end of the file" (or of the parent)
        if size < header or offset + size > end:
            return
        yield Box(kind, offset, header, offset + size)
        offset += size


def _child(reader: BoundedReader, parent: Box, kind: str, budget: _Budget) -> Box | None:
    children = boxes(reader, parent.payload, parent.end, budget)
    return next((box for box in children if box.kind == kind), None)


def brands(reader: BoundedReader) -> tuple[str, list[str]] | None:
    """(major, compatible) from a leading `ftyp` box, or None if the file has none."""
    head = reader.read_at(0, 8)
    if len(head) < 8 or head[4:8] != b"ftyp":
        return None
    size = int.from_bytes(head[:4], "big")
    if size < 16:
        return None
    count = min((size - 16) // 4, MAX_COMPATIBLE_BRANDS)
    payload = reader.read_at(8, 8 + 4 * count)
    if len(payload) < 8:
        return None
    major = payload[:4].decode("latin-1")
    compatible = [payload[i : i + 4].decode("latin-1") for i in range(8, len(payload) - 3, 4)]
    return major, compatible


def track_handlers(reader: BoundedReader) -> list[str] | None:
    """The handler of every track (``vide``, ``soun``, ``text``, ...), or None when the file
    has no readable `moov` box (cut short, or a bare fragment)."""
    budget = _Budget()
    moov = next((b for b in boxes(reader, 0, reader.size, budget) if b.kind == "moov"), None)
    if moov is None:
        return None
    handlers = []
    for trak in boxes(reader, moov.payload, moov.end, budget):
        if trak.kind != "trak":
            continue
        mdia = _child(reader, trak, "mdia", budget)
        hdlr = _child(reader, mdia, "hdlr", budget) if mdia is not None else None
        if hdlr is None:
            continue
        # FullBox: version and flags (4), pre_defined (4), then the handler type.
        handler = reader.read_at(hdlr.payload + 8, 4)
        if len(handler) == 4 and hdlr.payload + 12 <= hdlr.end:
            handlers.append(handler.decode("latin-1"))
    return handlers


def _mp4_by_tracks(reader: BoundedReader, family: str) -> Identified:
    handlers = track_handlers(reader)
    if handlers is None or "vide" in handlers:
        # Without a readable moov only the brand speaks, and it says video (as libmagic would).
        return Identified(f"video/{family}", "MPEG-4 video" if family == "mp4" else "3GPP video")
    if "soun" in handlers:
        name = "audio-only MP4" if family == "mp4" else "3GPP audio"
        return Identified(f"audio/{family}", name)
    return Identified("application/mp4", "MP4 with neither a video nor an audio track")


def identify(reader: BoundedReader) -> Identified | None:
    """The verdict for a file that starts with an `ftyp` box; None for a brand we do not know
    (libmagic then judges) or a file that is not ISO-BMFF at all."""
    found = brands(reader)
    if found is None:
        return None
    major, compatible = found
    every = {major, *compatible}
    if major == "qt  ":
        return Identified("video/quicktime", "QuickTime movie")
    if major in AVIF_BRANDS or (major in HEIF_BRANDS and every & AVIF_BRANDS):
        return Identified("image/avif", "AVIF image")
    if major in HEIC_BRANDS or (major in HEIF_BRANDS and every & HEIC_BRANDS):
        return Identified("image/heic", "HEIC image")
    if major in HEIF_BRANDS:
        return Identified("image/heif", "HEIF image")
    if major in AUDIO_BRANDS:
        return Identified("audio/mp4", "M4A audio")
    if major.startswith(("3gp", "3ge", "3gg", "3gs", "3gr")):
        return _mp4_by_tracks(reader, "3gpp")
    if major.startswith("3g2"):
        return Identified("video/3gpp2", "3GPP2 video")
    if major in MP4_BRANDS or major in CAMERA_BRANDS or every & MP4_BRANDS:
        return _mp4_by_tracks(reader, "mp4")
    return None
