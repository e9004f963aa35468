"""Tiny but well-formed media files served for generated videos and their thumbnails."""

from __future__ import annotations

import struct
import zlib


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _tiny_mp4() -> bytes:
    # An ISO base media file: libmagic reports video/mp4 for an `ftyp` box with brand `isom`.
    brands = b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41"
    return _box(b"ftyp", brands) + _box(b"free", b"") + _box(b"mdat", bytes(range(256)) * 8)


def _tiny_png() -> bytes:
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x20\x60\xc0")
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


VIDEO_MP4 = _tiny_mp4()
THUMBNAIL_PNG = _tiny_png()
VIDEO_DURATION_SECONDS = 12.5
