"""Real files of the kinds people have (phone photos and videos, voice memos, browser and
scanner images), made by the real encoders: FFmpeg for audio and video, Pillow and
pillow-heif for images. Small, so that making them all takes a second or two."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"
SECONDS = 1.0
# EXIF orientation 6: the camera was turned; the picture is shown turned a quarter.
TURNED = 6


@dataclass(frozen=True)
class Sample:
    """A file to drop, what it is, and what it must become."""

    name: str
    source_type: str
    target_type: str
    action: str  # "remux", "transcode" or "image"
    size: tuple[int, int] | None = None  # the picture's (width, height) once converted
    duration: float | None = None  # the sound's or the video's seconds


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=120,
    )


def tone(seconds: float = SECONDS) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=44100"]


def picture(seconds: float = SECONDS, size: str = "64x48", rate: int = 10) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}"]


def video(path: Path, codecs: list[str], *, sound: bool = True) -> None:
    ffmpeg(*picture(), *(tone() if sound else []), *codecs, "-shortest", str(path))


def audio(path: Path, codecs: list[str]) -> None:
    ffmpeg(*tone(), *codecs, str(path))


def image(path: Path, mode: str = "RGB", turned: bool = False, **save: object) -> None:
    # Red, a shade of its own per file: no two samples convert to the same bytes.
    shade = sum(path.name.encode()) % 60
    colour: object = (200, 30 + shade, 30, 128) if mode == "RGBA" else (200, 30 + shade, 30)
    picture_ = Image.new(mode, (64, 48), colour)  # type: ignore[arg-type]
    if turned:
        exif = Image.Exif()
        exif[0x0112] = TURNED
        save["exif"] = exif.tobytes()
    picture_.save(path, **save)  # type: ignore[arg-type]


def heic(path: Path, turned: bool = False) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    image(path, turned=turned, format="HEIF")


def gif(path: Path) -> None:
    first = Image.new("P", (64, 48), 1)
    first.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    second = Image.new("P", (64, 48), 0)
    second.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    first.save(path, format="GIF", save_all=True, append_images=[second], duration=100, loop=0)


H264_AAC = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]


def make_all(folder: Path) -> list[Sample]:
    """Every kind of file the conversion table names, written into ``folder``."""
    made: list[Sample] = []

    def add(sample: Sample, make: object) -> None:
        make(folder / sample.name)  # type: ignore[operator]
        made.append(sample)

    pic, turned = (64, 48), (48, 64)
    add(Sample("photo.heic", "image/heic", "image/jpeg", "image", pic), heic)
    add(
        Sample("turned.heic", "image/heic", "image/jpeg", "image", turned),
        lambda p: heic(p, turned=True),
    )
    add(
        Sample("photo.avif", "image/avif", "image/jpeg", "image", pic),
        lambda p: image(p, format="AVIF"),
    )
    add(
        Sample("clear.webp", "image/webp", "image/png", "image", pic),
        lambda p: image(p, "RGBA", format="WEBP", lossless=True),
    )
    add(
        Sample("scan.tif", "image/tiff", "image/jpeg", "image", turned),
        lambda p: image(p, turned=True, format="TIFF"),
    )
    add(Sample("anim.gif", "image/gif", "image/jpeg", "image", pic), gif)
    add(
        Sample("paint.bmp", "image/bmp", "image/jpeg", "image", pic),
        lambda p: image(p, format="BMP"),
    )
    add(
        Sample("iphone.mov", "video/quicktime", "video/mp4", "remux", pic, SECONDS),
        lambda p: video(p, H264_AAC),
    )
    add(
        Sample("clip.mkv", "video/x-matroska", "video/mp4", "remux", pic, SECONDS),
        lambda p: video(p, H264_AAC),
    )
    add(
        Sample("browser.webm", "video/webm", "video/mp4", "transcode", pic, SECONDS),
        lambda p: video(p, ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus"]),
    )
    add(
        Sample("phone.3gp", "video/3gpp", "video/mp4", "remux", pic, SECONDS),
        lambda p: video(p, H264_AAC),
    )
    add(
        Sample("camera.ts", "video/mp2t", "video/mp4", "remux", pic, SECONDS),
        lambda p: video(p, H264_AAC),
    )
    add(
        Sample("old.avi", "video/x-msvideo", "video/mp4", "transcode", pic, SECONDS),
        lambda p: video(p, ["-c:v", "mpeg4", "-c:a", "libmp3lame"]),
    )
    add(
        Sample("hevc.mp4", "video/mp4", "video/mp4", "transcode", pic, SECONDS),
        lambda p: video(
            p,
            ["-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", "log-level=error", "-c:a", "aac"],
        ),
    )
    add(
        Sample("memo.m4a", "audio/mp4", "audio/mpeg", "transcode", None, SECONDS),
        lambda p: audio(p, ["-c:a", "aac"]),
    )
    add(
        Sample("take.flac", "audio/flac", "audio/wav", "transcode", None, SECONDS),
        lambda p: audio(p, ["-c:a", "flac"]),
    )
    add(
        Sample("song.ogg", "audio/ogg", "audio/mpeg", "transcode", None, SECONDS),
        lambda p: audio(p, ["-c:a", "libvorbis"]),
    )
    add(
        Sample("voice.opus", "audio/ogg", "audio/mpeg", "transcode", None, SECONDS),
        lambda p: audio(p, ["-c:a", "libopus"]),
    )
    add(
        Sample("daw.aiff", "audio/x-aiff", "audio/wav", "transcode", None, SECONDS),
        lambda p: audio(p, ["-c:a", "pcm_s16be"]),
    )
    add(
        Sample("old.wma", "video/x-ms-asf", "audio/mpeg", "transcode", None, SECONDS),
        lambda p: audio(p, ["-c:a", "wmav2"]),
    )
    return made


def probe(path: Path) -> dict[str, object]:
    """ffprobe's description of a file: its format and streams."""
    done = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def duration_of(path: Path) -> float:
    return float(probe(path)["format"]["duration"])  # type: ignore[index]


def codecs_of(path: Path) -> dict[str, str]:
    """codec type → codec name of the first stream of each type."""
    found: dict[str, str] = {}
    for stream in probe(path)["streams"]:  # type: ignore[union-attr]
        found.setdefault(stream["codec_type"], stream["codec_name"])  # type: ignore[index]
    return found
