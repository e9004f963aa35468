"""Which sniffed types can be converted, and to what, before any file is opened.

A folder's accepted types (its `types` that the protocol carries) decide the target: images
become JPEG (PNG when they have transparency), video becomes MP4 (H.264/AAC), audio MP3, or
WAV for a lossless source where WAV is accepted. The exact target of one file (transparency,
an audio-only ASF) is the planner's, once the file is looked at (`converter.Converter.plan`).
"""

from __future__ import annotations

from enum import Enum


class Kind(Enum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"


IMAGE_SOURCES = frozenset(
    {
        "image/heic",
        "image/heif",
        "image/heic-sequence",
        "image/heif-sequence",
        "image/avif",
        "image/webp",
        "image/tiff",
        "image/gif",
        "image/bmp",
        "image/x-ms-bmp",
    }
)
VIDEO_SOURCES = frozenset(
    {
        "video/quicktime",
        "video/x-matroska",
        "video/webm",
        "video/3gpp",
        "video/3gpp2",
        "video/mp2t",
        "video/x-msvideo",
        "video/avi",
        "video/x-flv",
        "video/mpeg",
        # Either a video or only sound (WMA): the planner looks at its streams.
        "video/x-ms-asf",
        "video/x-ms-wmv",
    }
)
AUDIO_SOURCES = frozenset(
    {
        "audio/mp4",
        "audio/aac",
        "audio/x-hx-aac-adts",
        "audio/flac",
        "audio/x-flac",
        "audio/ogg",
        "audio/opus",
        "audio/x-aiff",
        "audio/aiff",
        "audio/x-ms-wma",
        "audio/x-wavpack",
    }
)
# Sources whose sound is kept exactly by WAV (where the protocol takes WAV).
LOSSLESS_AUDIO = frozenset({"audio/flac", "audio/x-flac", "audio/x-aiff", "audio/aiff"})
# An MP4 HeyGen may not play: converted when its video stream is not H.264.
MP4 = "video/mp4"

JPEG, PNG, MP3, WAV = "image/jpeg", "image/png", "audio/mpeg", "audio/wav"


def kind_of(source_type: str) -> Kind | None:
    """What a source of this type is converted as; None: not convertible."""
    if source_type in IMAGE_SOURCES:
        return Kind.IMAGE
    if source_type in VIDEO_SOURCES or source_type == MP4:
        return Kind.VIDEO
    if source_type in AUDIO_SOURCES:
        return Kind.AUDIO
    return None


def image_target(accepted: tuple[str, ...], transparent: bool) -> str | None:
    """PNG keeps transparency, JPEG is smaller otherwise; either where only one is taken."""
    preferred = (PNG, JPEG) if transparent else (JPEG, PNG)
    return next((target for target in preferred if target in accepted), None)


def audio_target(accepted: tuple[str, ...], source_type: str) -> str | None:
    preferred = (WAV, MP3) if source_type in LOSSLESS_AUDIO else (MP3, WAV)
    return next((target for target in preferred if target in accepted), None)


def video_target(accepted: tuple[str, ...]) -> str | None:
    return MP4 if MP4 in accepted else None


def nominal_target(source_type: str, accepted: tuple[str, ...]) -> str | None:
    """The usual target for a type, without looking at the file (an opaque image, a video
    with picture): what `check-config` and the tour name."""
    kind = kind_of(source_type)
    if kind is Kind.IMAGE:
        return image_target(accepted, transparent=False)
    if kind is Kind.VIDEO:
        return video_target(accepted)
    if kind is Kind.AUDIO:
        return audio_target(accepted, source_type)
    return None
