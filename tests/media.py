"""Real file bytes of each type, as libmagic sees them (no fixtures on disk to go stale)."""

from __future__ import annotations

import io
import struct
import wave
import zlib
from pathlib import Path


def png(width: int = 4, height: int = 4, seed: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(
        b"\x00" + bytes((seed + x + y) % 256 for x in range(width * 3)) for y in range(height)
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg(extra: bytes = b"") -> bytes:
    # SOI, a JFIF APP0 segment, a comment carrying `extra` (to vary the bytes), EOI.
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    comment = b"heygen-watcher test image " + extra
    return (
        b"\xff\xd8\xff\xe0"
        + struct.pack(">H", len(app0) + 2)
        + app0
        + b"\xff\xfe"
        + struct.pack(">H", len(comment) + 2)
        + comment
        + b"\xff\xd9"
    )


def wav(frames: int = 800, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes((seed + i) % 256 for i in range(frames * 2)))
    return buffer.getvalue()


def mp3(frames: int = 4, seed: int = 0) -> bytes:
    # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz: 417-byte frames behind an ID3v2 tag.
    frame = b"\xff\xfb\x90\x64" + bytes((seed + i) % 256 for i in range(413))
    return b"ID3\x03\x00\x00\x00\x00\x00\x00" + frame * frames


def mp4(payload: int = 256, seed: int = 0) -> bytes:
    ftyp = b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2avc1mp41"
    mdat = bytes((seed + i) % 256 for i in range(payload))
    return (
        struct.pack(">I", len(ftyp) + 4) + ftyp + struct.pack(">I", len(mdat) + 8) + b"mdat" + mdat
    )


def text(content: str = "just some words\n") -> bytes:
    return content.encode()


def sized_mp4(path: Path, size: int) -> Path:
    """An MP4 of exactly ``size`` bytes, written in blocks (for big-file tests)."""
    head = mp4(payload=16)
    block = bytes(range(256)) * 4096
    with open(path, "wb") as out:
        out.write(head)
        left = size - len(head)
        while left > 0:
            piece = block[: min(left, len(block))]
            out.write(piece)
            left -= len(piece)
    return path


BY_TYPE = {
    "image/png": png,
    "image/jpeg": jpeg,
    "audio/wav": wav,
    "audio/mpeg": mp3,
    "video/mp4": mp4,
}
