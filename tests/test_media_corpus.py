"""Every file of the corpus of real encoder outputs (tests/media/corpus), and what we decide.

The rows say what a user dropping that file should see: accepted with the type HeyGen is told,
or refused with a reason that names the file's real kind and lists what the folder accepts.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from daemon_helpers import make_config, running, wait_sidecar

from watcher.config import FolderConfig
from watcher.config.mediatypes import DEFAULT_TYPES, PROTOCOL_TYPES, SUPPORTED_TYPES
from watcher.convert.targets import nominal_target
from watcher.intake import admission as gate
from watcher.intake.admission import Outcome
from watcher.intake.boundedread import open_regular
from watcher.intake.id3 import syncsafe
from watcher.intake.sniff import SNIFF_BYTES, sniff_path, sniff_reader
from watcher.sandbox import Sandbox

CORPUS = Path(__file__).parent / "media" / "corpus"
NOT_MEDIA = {"README.md", "make-corpus.sh"}
DEFAULT_ACCEPTED = "accepted here: " + ", ".join(DEFAULT_TYPES)

# file → the accepted type, or the refusal reason up to "; accepted here: ...". For the folder
# defaults and the default upload protocol (v1-presigned).
EXPECTED: dict[str, str] = {
    # ISO base media
    "mp4-isom.mp4": "video/mp4",
    "mp4-mp42.mp4": "video/mp4",
    "mp4-avc1.mp4": "video/mp4",
    "video.m4v": "video/mp4",
    "mp4-xavc.mp4": "video/mp4",
    "mp4-caep.mp4": "video/mp4",
    "mp4-msnv.mp4": "video/mp4",
    "mp4-fragmented.mp4": "video/mp4",
    "mp4-faststart.mp4": "video/mp4",
    "mp4-audio-only.mp4": "unsupported type: audio-only MP4 (audio/mp4)",
    "mp4-audio-fragmented.mp4": "unsupported type: audio-only MP4 (audio/mp4)",
    "audio.m4a": "unsupported type: M4A audio (audio/mp4)",
    "movie.mov": "unsupported type: QuickTime movie (video/quicktime)",
    "phone.3gp": "unsupported type: 3GPP video (video/3gpp)",
    "image.heic": "unsupported type: HEIC image (image/heic)",
    "image.avif": "unsupported type: AVIF image (image/avif)",
    # other containers
    "stream.ts": "unsupported type: MPEG transport stream (video/mp2t)",
    "camera.m2ts": "unsupported type: MPEG transport stream (video/mp2t)",
    "clip.webm": "unsupported type: WebM video (video/webm)",
    "clip.mkv": "unsupported type: Matroska video (video/x-matroska)",
    # MP3
    "mp3-cbr-notag.mp3": "audio/mpeg",
    "mp3-vbr-notag.mp3": "audio/mpeg",
    "mp3-id3v1.mp3": "audio/mpeg",
    "mp3-id3v23.mp3": "audio/mpeg",
    "mp3-id3v24.mp3": "audio/mpeg",
    "mp3-large-cover.mp3": "audio/mpeg",
    "mp3-cut-in-tag.mp3": "damaged: MP3 audio but the tag is corrupt: its ID3v2 tag claims "
    "92213 bytes, running past the end of the file (the file has 40000 bytes)",
    # WAV (RF64 is WAV for files over 4 GiB; libmagic calls it audio/x-wav, and so do we)
    "wav-16bit.wav": "audio/wav",
    "wav-24bit.wav": "audio/wav",
    "wav-24bit-ffmpeg.wav": "audio/wav",
    "wav-float.wav": "audio/wav",
    "wav-extensible.wav": "audio/wav",
    "wav-rf64.wav": "audio/wav",
    # images (an APNG is a valid PNG: viewers that know no animation show its first frame)
    "jpeg-baseline.jpg": "image/jpeg",
    "jpeg-progressive.jpg": "image/jpeg",
    "jpeg-cmyk.jpg": "image/jpeg",
    "jpeg-exif-only.jpg": "image/jpeg",
    "png-8bit.png": "image/png",
    "png-16bit.png": "image/png",
    "png-interlaced.png": "image/png",
    "png-palette.png": "image/png",
    "png-animated.apng": "image/png",
    "image.gif": "unsupported type: GIF image (image/gif)",
    "image.webp": "unsupported type: WebP image (image/webp)",
    "image.tif": "unsupported type: TIFF image (image/tiff)",
}

# (file, protocol) → decision, for a folder that asks for every type any protocol takes.
BY_PROTOCOL: dict[tuple[str, str], str] = {
    ("clip.webm", "v1-presigned"): "unsupported type: WebM video (video/webm) cannot be "
    "uploaded with the v1-presigned protocol",
    ("clip.webm", "v3-direct"): "video/webm",
    ("clip.webm", "v3-multipart"): "video/webm",
    ("clip.webm", "v1-upload"): "video/webm",
    ("wav-16bit.wav", "v1-presigned"): "audio/wav",
    ("wav-16bit.wav", "v3-direct"): "audio/wav",
    ("wav-16bit.wav", "v1-upload"): "unsupported type: WAV audio (audio/wav) cannot be "
    "uploaded with the v1-upload protocol",
    ("mp3-large-cover.mp3", "v1-upload"): "audio/mpeg",
    ("mp4-xavc.mp4", "v1-upload"): "video/mp4",
    ("mp4-audio-only.mp4", "v3-direct"): "unsupported type: audio-only MP4 (audio/mp4)",
    ("clip.mkv", "v3-multipart"): "unsupported type: Matroska video (video/x-matroska)",
    ("image.heic", "v3-direct"): "unsupported type: HEIC image (image/heic)",
}


def corpus_files() -> list[str]:
    return sorted(path.name for path in CORPUS.iterdir() if path.name not in NOT_MEDIA)


def decide(name: str, rules: FolderConfig, protocol: str) -> gate.Decision:
    path = CORPUS / name
    return gate.classify(path, path.lstat(), rules, protocol)


def assert_decision(decision: gate.Decision, expected: str, accepted: str) -> None:
    if "/" in expected and " " not in expected:
        assert decision.outcome is Outcome.ACCEPT, decision.reason
        assert decision.content_type == expected
    else:
        assert decision.outcome is Outcome.REJECT
        assert decision.content_type is None
        if expected.startswith("unsupported type"):
            # A type a converting folder would take says so (`watcher.convert.targets`).
            taken = tuple(accepted.removeprefix("accepted here: ").split(", "))
            target = nominal_target(decision.detected_type or "", taken)
            hint = f"; `convert: true` on the folder would convert it to {target}" if target else ""
            assert decision.reason == f"{expected}; {accepted}{hint}"
        else:
            assert decision.reason == expected


def test_every_corpus_file_has_a_row_and_a_command():
    assert corpus_files() == sorted(EXPECTED)
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    for name in corpus_files():
        assert f"| `{name}` |" in readme, f"{name} has no command in the corpus README"


def test_the_corpus_stays_small():
    sizes = {name: (CORPUS / name).stat().st_size for name in corpus_files()}
    assert sum(sizes.values()) < 1_000_000
    assert [name for name, size in sizes.items() if size > 64 * 1024] == ["mp3-large-cover.mp3"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_decision_with_the_default_types(name: str):
    decision = decide(name, FolderConfig(path=CORPUS), "v1-presigned")
    assert_decision(decision, EXPECTED[name], DEFAULT_ACCEPTED)


@pytest.mark.parametrize(("name", "protocol"), sorted(BY_PROTOCOL))
def test_decision_per_protocol(name: str, protocol: str):
    rules = FolderConfig(path=CORPUS, types=SUPPORTED_TYPES)
    takes = PROTOCOL_TYPES[protocol]
    accepted = "accepted here: " + ", ".join(t for t in SUPPORTED_TYPES if t in takes)
    assert_decision(decide(name, rules, protocol), BY_PROTOCOL[(name, protocol)], accepted)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sniffing_reads_little(name: str):
    """One window for libmagic, plus a few box headers or tag headers: never the whole file."""
    with open_regular(CORPUS / name) as reader:
        sniff_reader(reader)
    assert reader.bytes_read <= 2 * SNIFF_BYTES + 4096
    assert reader.reads <= 40


def test_the_large_cover_is_bigger_than_the_window():
    """The point of that file: libmagic alone cannot see past its tag."""
    data = (CORPUS / "mp3-large-cover.mp3").read_bytes()
    tag_size = syncsafe(data[6:10])
    assert data[:3] == b"ID3" and tag_size is not None and tag_size > SNIFF_BYTES
    assert sniff_path(CORPUS / "mp3-large-cover.mp3").content_type == "audio/mpeg"


# -- through the daemon -------------------------------------------------------------------------
def test_real_files_through_the_daemon(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
):
    """Dropped into a watched folder that also asks for WebM (which v1-presigned cannot take)."""
    drop = tmp_path / "drop"
    drop.mkdir()
    types = [*DEFAULT_TYPES, "video/webm"]
    config = make_config(
        sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.2, "types": types}]
    )
    names = ["mp3-large-cover.mp3", "mp4-xavc.mp4", "mp4-audio-only.mp4", "stream.ts", "clip.webm"]
    with caplog.at_level(logging.WARNING, logger="watcher.service.daemon"), running(config):
        for name in names:
            shutil.copyfile(CORPUS / name, drop / name)
        documents = {name: wait_sidecar(drop / name) for name in names}
    assert documents["mp3-large-cover.mp3"]["content_type"] == "audio/mpeg"
    assert documents["mp4-xavc.mp4"]["content_type"] == "video/mp4"
    assert [documents[name]["status"] for name in names] == ["uploaded"] * 2 + ["rejected"] * 3
    ts = documents["stream.ts"]
    assert ts["detected_type"] == "video/mp2t"
    assert ts["error"].startswith("unsupported type: MPEG transport stream (video/mp2t); ")
    assert ts["allowed_types"] == list(DEFAULT_TYPES)  # the folder's WebM cannot go this way
    assert "audio-only MP4" in documents["mp4-audio-only.mp4"]["error"]
    assert "cannot be uploaded with the v1-presigned protocol" in documents["clip.webm"]["error"]
    assert any("folders[0].types: video/webm" in r.getMessage() for r in caplog.records)
    uploaded = {asset.path.read_bytes() for asset in sandbox.assets.values()}
    assert uploaded == {(CORPUS / name).read_bytes() for name in names[:2]}
