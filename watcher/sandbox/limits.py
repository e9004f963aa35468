"""Which media types each API generation accepts, and how big they may be."""

from __future__ import annotations

MIB = 1 << 20
GIB = 1 << 30
V1_TYPES = ("image/jpeg", "image/png", "video/mp4", "audio/mpeg", "audio/wav")
V3_TYPES = (*V1_TYPES, "video/webm", "application/pdf", "application/x-subrip")
# The one-request upload's reference lists these five: video/webm but no audio/wav.
UPLOAD_HOST_TYPES = ("image/png", "image/jpeg", "audio/mpeg", "video/mp4", "video/webm")
MULTIPART_MAX_BYTES = 32 * MIB
MAX_BATCH_FILES = 100

_MAX_BY_FAMILY = {"image": 50 * MIB, "audio": 500 * MIB, "video": 5 * GIB}
_MAX_OTHER = 50 * MIB  # pdf and subtitles


def max_bytes(content_type: str) -> int:
    return _MAX_BY_FAMILY.get(content_type.split("/")[0], _MAX_OTHER)
