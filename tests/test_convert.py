"""Converting what HeyGen refuses: real files made by real encoders, converted by the real
daemon, uploaded to the sandbox, and the uploaded bytes checked with libmagic, ffprobe and
Pillow (type, duration, size), not only the sidecar's word."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import magic
import pytest
from conftest import SANDBOX_KEY
from convert_media import Sample, codecs_of, duration_of, make_all
from daemon_helpers import make_config, read_sidecar, scan_once
from PIL import Image

from watcher.config.mediatypes import canonical_type
from watcher.sandbox import Sandbox

DURATION_SLACK = 0.25


@dataclass
class Converted:
    folder: Path
    state: Path
    samples: list[Sample]
    originals: dict[str, str]  # name → sha256 before the run
    sandbox: Sandbox


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converted]:
    """Every sample (and a second copy of one photo) through one scan of a converting folder."""
    root = tmp_path_factory.mktemp("convert")
    drop = root / "drop"
    drop.mkdir()
    samples = make_all(drop)
    shutil.copyfile(drop / "photo.heic", drop / "photo again.heic")
    originals = {path.name: sha256(path) for path in drop.iterdir()}
    with Sandbox(api_key=SANDBOX_KEY, data_dir=root / "sandbox") as sandbox:
        config = make_config(
            sandbox, root, [{"path": str(drop), "convert": True, "settle_seconds": 0.05}]
        )
        scan_once(config)
        yield Converted(drop, root / "state", samples, originals, sandbox)


def uploaded_bytes(run: Converted, name: str) -> Path:
    document = read_sidecar(run.folder / name)
    return run.sandbox.assets[document["asset_id"]].path


SAMPLE_NAMES = [
    "photo.heic",
    "turned.heic",
    "photo.avif",
    "clear.webp",
    "scan.tif",
    "anim.gif",
    "paint.bmp",
    "iphone.mov",
    "clip.mkv",
    "browser.webm",
    "phone.3gp",
    "camera.ts",
    "old.avi",
    "hevc.mp4",
    "memo.m4a",
    "take.flac",
    "song.ogg",
    "voice.opus",
    "daw.aiff",
    "old.wma",
]


def sample_named(run: Converted, name: str) -> Sample:
    return next(sample for sample in run.samples if sample.name == name)


def test_the_table_covers_every_sample(converted: Converted):
    assert sorted(sample.name for sample in converted.samples) == sorted(SAMPLE_NAMES)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_sidecar_says_what_was_uploaded_and_what_it_came_from(converted: Converted, name: str):
    sample = sample_named(converted, name)
    document = read_sidecar(converted.folder / name)
    assert document["status"] == "uploaded", document
    uploaded = uploaded_bytes(converted, name)
    assert document["content_type"] == sample.target_type
    assert document["size"] == uploaded.stat().st_size
    assert document["sha256"] == sha256(uploaded)
    origin = document["converted_from"]
    assert origin["content_type"] == sample.source_type
    assert origin["sha256"] == converted.originals[name]
    assert origin["size"] == (converted.folder / name).stat().st_size
    assert origin["action"] == sample.action
    assert origin["tool"] == ("Pillow" if sample.action == "image" else "ffmpeg")
    assert origin["tool_version"]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_uploaded_bytes_are_what_the_sidecar_says(converted: Converted, name: str):
    sample = sample_named(converted, name)
    uploaded = uploaded_bytes(converted, name)
    assert canonical_type(magic.from_file(str(uploaded), mime=True)) == sample.target_type
    if sample.duration is not None:
        assert abs(duration_of(uploaded) - sample.duration) <= DURATION_SLACK
    if sample.target_type == "video/mp4":
        codecs = codecs_of(uploaded)
        assert codecs["video"] == "h264"
        assert codecs.get("audio", "aac") == "aac"
    if sample.size is not None and sample.target_type.startswith("image/"):
        with Image.open(uploaded) as picture:
            assert picture.size == sample.size  # upright, and the size kept
    if sample.action == "remux":
        # The picture is carried over, not encoded again: the same H.264 stream.
        assert codecs_of(converted.folder / name)["video"] == "h264"


def test_transparency_is_kept_as_png(converted: Converted):
    with Image.open(uploaded_bytes(converted, "clear.webp")) as picture:
        assert picture.mode in ("RGBA", "LA")
        assert picture.getpixel((0, 0))[-1] == 128


def test_a_gif_gives_its_first_frame(converted: Converted):
    with Image.open(uploaded_bytes(converted, "anim.gif")) as picture:
        red, green, blue = picture.convert("RGB").getpixel((10, 10))
        assert red > 150 and green < 100 and blue < 80


def test_the_originals_are_left_byte_for_byte(converted: Converted):
    for name, digest in converted.originals.items():
        assert sha256(converted.folder / name) == digest, name


def test_identical_bytes_are_converted_and_uploaded_once(converted: Converted):
    first = read_sidecar(converted.folder / "photo.heic")
    again = read_sidecar(converted.folder / "photo again.heic")
    assert again["asset_id"] == first["asset_id"]
    assert again["converted_from"] == first["converted_from"]
    same = [a for a in converted.sandbox.assets.values() if a.sha256 == first["sha256"]]
    assert len(same) == 1
    assert len(converted.sandbox.assets) == len(SAMPLE_NAMES)


def test_no_converted_bytes_are_left_in_the_state_directory(converted: Converted):
    assert list((converted.state / "converting").iterdir()) == []
    assert not [p for p in converted.folder.iterdir() if p.suffix == ".part"]
