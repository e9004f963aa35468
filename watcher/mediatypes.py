"""The content types HeyGen accepts, and libmagic's many names for them."""

from __future__ import annotations

# The seed's five: what v1 accepts and what a folder takes unless configured otherwise.
DEFAULT_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "video/mp4", "audio/mpeg", "audio/wav")
# v3 also accepts these.
V3_EXTRA_TYPES: tuple[str, ...] = ("video/webm", "application/pdf", "application/x-subrip")
SUPPORTED_TYPES: tuple[str, ...] = DEFAULT_TYPES + V3_EXTRA_TYPES
MAJOR_TYPES: tuple[str, ...] = ("image", "video", "audio")
# What each upload protocol accepts. HeyGen's reference lists five types for the one-request
# upload (upload.heygen.com): no audio/wav there, but video/webm.
PROTOCOL_TYPES: dict[str, tuple[str, ...]] = {
    "v1-presigned": DEFAULT_TYPES,
    "v1-upload": ("image/png", "image/jpeg", "audio/mpeg", "video/mp4", "video/webm"),
    "v3-direct": SUPPORTED_TYPES,
    "v3-multipart": SUPPORTED_TYPES,
}

# libmagic (and other tools) spell several of these differently; the API knows one name each.
_ALIASES: dict[str, str] = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-pn-wav": "audio/wav",
    "audio/mp3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mpeg-3": "audio/mpeg",
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "video/x-m4v": "video/mp4",
    "application/mp4": "video/mp4",
    "audio/webm": "video/webm",
    "text/x-srt": "application/x-subrip",
    "application/x-srt": "application/x-subrip",
}


def canonical_type(mime: str) -> str:
    """The API's name for a MIME type reported by libmagic (parameters dropped)."""
    base = mime.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)
