"""The content types HeyGen accepts, per upload protocol, and libmagic's many names for them."""

from __future__ import annotations

# The seed's five: what its v1 flow accepts and what a folder takes unless configured otherwise.
DEFAULT_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "video/mp4", "audio/mpeg", "audio/wav")
# HeyGen's v3 asset API adds these ("v3 also accepts video/webm, application/pdf, subtitles").
V3_EXTRA_TYPES: tuple[str, ...] = ("video/webm", "application/pdf", "application/x-subrip")
# What HeyGen documents for each upload protocol (the README's "Supported types" names the
# source of each list). The documented one-request upload to upload.heygen.com lists
# video/webm but not audio/wav.
PROTOCOL_TYPES: dict[str, tuple[str, ...]] = {
    "v1-presigned": DEFAULT_TYPES,
    "v3-direct": DEFAULT_TYPES + V3_EXTRA_TYPES,
    "v3-multipart": DEFAULT_TYPES + V3_EXTRA_TYPES,
    "v1-upload": ("image/png", "image/jpeg", "audio/mpeg", "video/mp4", "video/webm"),
}
# Every type some protocol takes: what a folder's `types` may name.
SUPPORTED_TYPES: tuple[str, ...] = tuple(
    dict.fromkeys(content_type for types in PROTOCOL_TYPES.values() for content_type in types)
)
MAJOR_TYPES: tuple[str, ...] = ("image", "video", "audio")
OCTET_STREAM = "application/octet-stream"

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
    "audio/x-m4a": "audio/mp4",
    "audio/webm": "video/webm",
    "text/x-srt": "application/x-subrip",
    "application/x-srt": "application/x-subrip",
}

# What to call a file of each type when saying why it was refused; for types not listed here,
# libmagic's own description names the file.
TYPE_NAMES: dict[str, str] = {
    "image/jpeg": "JPEG image",
    "image/png": "PNG image",
    "video/mp4": "MPEG-4 video",
    "audio/mpeg": "MP3 audio",
    "audio/wav": "WAV audio",
    "video/webm": "WebM video",
    "application/pdf": "PDF document",
    "application/x-subrip": "SubRip subtitles",
    "video/mp2t": "MPEG transport stream",
    "video/quicktime": "QuickTime movie",
    "video/x-matroska": "Matroska video",
    "video/x-msvideo": "AVI video",
    "video/3gpp": "3GPP video",
    "audio/mp4": "MPEG-4 audio",
    "audio/flac": "FLAC audio",
    "audio/ogg": "Ogg audio",
    "audio/x-hx-aac-adts": "AAC audio (ADTS)",
    "image/gif": "GIF image",
    "image/webp": "WebP image",
    "image/tiff": "TIFF image",
    "image/bmp": "BMP image",
    "image/heic": "HEIC image",
    "image/heif": "HEIF image",
    "image/avif": "AVIF image",
}


def canonical_type(mime: str) -> str:
    """The API's name for a MIME type reported by libmagic (parameters dropped)."""
    base = mime.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)
