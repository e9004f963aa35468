"""One file's conversion: planned from what the file holds, then done by the right tool.

`Converter.plan` looks at the file (an image's transparency, a video's streams and codecs)
and says what it becomes, or None for an MP4 that is fine as it is; a file that no tool can
read is refused here, before anything is sent. `Converter.convert` writes the result to a
path the caller chose, one conversion at a time by default (`convert_concurrency`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from watcher.convert import images
from watcher.convert.ffmpeg import (
    ConversionFailed,
    ConverterMissing,
    Jobs,
    MediaInfo,
    Tool,
    find_tool,
    probe,
)
from watcher.convert.targets import (
    MP3,
    MP4,
    WAV,
    Kind,
    audio_target,
    image_target,
    kind_of,
    video_target,
)

# Codecs an MP4 carries as they are (remuxed, not re-encoded).
_H264 = {"h264"}
_AAC = {"aac"}
_PICTURES = {"mjpeg", "png", "bmp", "gif"}
REMUX, TRANSCODE, IMAGE = "remux", "transcode", "image"


@dataclass(frozen=True)
class Plan:
    source_type: str
    target_type: str
    action: str  # remux, transcode, image
    # Audio to WAV from a source deeper than 16 bits: kept at 24.
    deep_audio: bool = False
    copy_audio: bool = False


@dataclass(frozen=True)
class Done:
    action: str
    tool: str
    tool_version: str


class Converter:
    def __init__(
        self, ffmpeg: str | None = None, timeout_seconds: float = 600.0, concurrency: int = 1
    ) -> None:
        self._configured = ffmpeg
        self.timeout_seconds = timeout_seconds
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._jobs = Jobs()
        self._tool: Tool | None = None
        self._tool_lock = threading.Lock()
        self._in_progress = 0
        self._count_lock = threading.Lock()

    # -- the tools ---------------------------------------------------------------------------
    def tool(self) -> Tool:
        """The ffmpeg in use, found once (`ConverterMissing` without one)."""
        with self._tool_lock:
            if self._tool is None:
                self._tool = find_tool(self._configured)
            return self._tool

    def stop(self) -> None:
        """Kill every running tool; nothing new starts (the daemon is stopping)."""
        self._jobs.stop()

    @property
    def in_progress(self) -> int:
        with self._count_lock:
            return self._in_progress

    # -- planning ----------------------------------------------------------------------------
    def plan(self, path: Path, source_type: str, accepted: tuple[str, ...]) -> Plan | None:
        """What ``path`` (sniffed as ``source_type``) becomes for a folder taking
        ``accepted``; None when it is fine as it is. `ConversionFailed` when no target is
        accepted or the file cannot be read; `ConverterMissing` without the tool."""
        kind = kind_of(source_type)
        if kind is Kind.IMAGE:
            transparent = images.is_transparent(path, source_type)
            target = image_target(accepted, transparent)
            if target is None:
                raise ConversionFailed("no image type is accepted here")
            return Plan(source_type, target, IMAGE)
        if kind is None:
            raise ConversionFailed(f"{source_type} is not a type that can be converted")
        info = probe(self.tool(), self._jobs, path)
        return self._media_plan(source_type, info, accepted)

    def _media_plan(
        self, source_type: str, info: MediaInfo, accepted: tuple[str, ...]
    ) -> Plan | None:
        # Cover art in a sound file shows as a one-picture "video" stream: not a video.
        video = [stream for stream in info.of("video") if stream.codec not in _PICTURES]
        audio = info.of("audio")
        if source_type == MP4 and all(stream.codec in _H264 for stream in video):
            return None  # H.264 already (or sound only): uploaded as it is
        if video:
            target = video_target(accepted)
            if target is None:
                raise ConversionFailed("video/mp4 is not accepted here")
            copy_audio = all(stream.codec in _AAC for stream in audio)
            action = REMUX if video[0].codec in _H264 and copy_audio else TRANSCODE
            return Plan(source_type, target, action, copy_audio=copy_audio)
        if audio:
            target = audio_target(accepted, source_type)
            if target is None:
                raise ConversionFailed("no audio type is accepted here")
            return Plan(source_type, target, TRANSCODE, deep_audio=audio[0].deep)
        raise ConversionFailed("the file has no audio or video stream")

    # -- converting --------------------------------------------------------------------------
    def convert(self, source: Path, plan: Plan, target: Path) -> Done:
        """Write ``source`` converted by ``plan`` to ``target`` (bounded concurrency)."""
        with self._slots:
            with self._count_lock:
                self._in_progress += 1
            try:
                if plan.action == IMAGE:
                    images.convert_image(source, plan.source_type, target, plan.target_type)
                    return Done(IMAGE, "Pillow", images.tool_version())
                tool = self.tool()
                self._jobs.run(
                    [tool.ffmpeg, *_ffmpeg_arguments(source, plan, target)],
                    self.timeout_seconds,
                )
                if not target.exists() or target.stat().st_size == 0:
                    raise ConversionFailed("ffmpeg wrote nothing")
                return Done(plan.action, "ffmpeg", tool.version)
            finally:
                with self._count_lock:
                    self._in_progress -= 1


def _ffmpeg_arguments(source: Path, plan: Plan, target: Path) -> list[str]:
    head = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source)]
    if plan.target_type == MP4:
        if plan.action == REMUX:
            codecs = ["-c", "copy"]
        else:
            # H.264 needs even dimensions in 4:2:0; an odd edge loses one pixel row.
            codecs = [
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "20",
                "-pix_fmt",
                "yuv420p",
                "-vf",
                "scale=trunc(iw/2)*2:trunc(ih/2)*2",
            ]
            codecs += ["-c:a", "copy"] if plan.copy_audio else ["-c:a", "aac", "-b:a", "192k"]
        maps = ["-map", "0:v:0", "-map", "0:a:0?", "-dn", "-sn"]
        return [*head, *maps, *codecs, "-movflags", "+faststart", "-f", "mp4", str(target)]
    if plan.target_type == MP3:
        codecs = ["-c:a", "libmp3lame", "-q:a", "2", "-f", "mp3"]
    elif plan.target_type == WAV:
        codecs = ["-c:a", "pcm_s24le" if plan.deep_audio else "pcm_s16le", "-f", "wav"]
    else:
        raise ConversionFailed(f"no way to make {plan.target_type}")
    return [*head, "-map", "0:a:0", "-vn", "-sn", "-dn", *codecs, str(target)]


__all__ = [
    "REMUX",
    "TRANSCODE",
    "ConversionFailed",
    "Converter",
    "ConverterMissing",
    "Done",
    "Plan",
]


@dataclass(frozen=True)
class Tools:
    """What this machine converts with, or why it cannot (for `check-config`)."""

    images: str | None  # "Pillow 11.0.0, pillow-heif 0.20.0"
    images_missing: str | None
    ffmpeg: Tool | None
    ffmpeg_missing: str | None


def available_tools(configured_ffmpeg: str | None) -> Tools:
    try:
        images.pillow_module()
        image_tools: str | None = images.tool_version()
        images_missing = None
    except ConverterMissing as error:
        image_tools, images_missing = None, str(error)
    try:
        tool: Tool | None = find_tool(configured_ffmpeg)
        ffmpeg_missing = None
    except ConverterMissing as error:
        tool, ffmpeg_missing = None, str(error)
    return Tools(image_tools, images_missing, tool, ffmpeg_missing)
