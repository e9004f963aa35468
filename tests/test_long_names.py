"""File names of any legal length: their sidecars (and their videos) are always written, under
the documented shortened name when ``<name>.asset.json`` itself would be too long."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import media
from conftest import wait_for
from daemon_helpers import (
    cli,
    config_document,
    make_config,
    read_sidecar,
    running,
    write_config,
)

from watcher.sandbox import Sandbox
from watcher.state import names, sidecar

NAME_MAX = 255


def name_of_bytes(length: int, extension: str = ".png", char: str = "n") -> str:
    """A name of exactly ``length`` bytes (in UTF-8) ending in ``extension``."""
    room = length - len(extension.encode())
    unit = len(char.encode())
    stem = char * (room // unit) + "x" * (room % unit)
    name = stem + extension
    assert len(name.encode()) == length
    return name


def shortened(name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"~{digest}.asset.json"


def test_sidecars_of_names_up_to_the_limit(tmp_path: Path, drop: Path, sandbox: Sandbox):
    # 231–244 bytes failed through the temp name; 245–255 had no sidecar at all.
    lengths = (231, 244, 245, 250, NAME_MAX)
    files = [drop / name_of_bytes(length, char="é" if length == 250 else "n") for length in lengths]
    config = make_config(sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}])
    with running(config):
        for seed, path in enumerate(files):
            path.write_bytes(media.png(seed=600 + seed))
        for path in files:
            location = sidecar.sidecar_path(path)
            wait_for(location.exists, timeout=15, what=f"the sidecar of a {len(path.name)}")
    for path in files:
        location = sidecar.sidecar_path(path)
        document = json.loads(location.read_text(encoding="utf-8"))
        assert document["status"] == "uploaded" and document["file"] == path.name
        encoded = len(os.fsencode(location.name))
        assert encoded <= NAME_MAX
        if len(os.fsencode(path.name + ".asset.json")) <= NAME_MAX:
            assert location.name == path.name + ".asset.json"
        else:
            # The documented form: the name's first bytes, "~", 16 hex of its SHA-256.
            assert location.name.endswith(shortened(path.name)), location.name
            assert path.name.startswith(location.name[: -len(shortened(path.name))])
            assert encoded == NAME_MAX or path.name[0] == "é"
    assert not [p for p in drop.iterdir() if p.name.endswith(".tmp")]  # no temp file left
    # `status` says where the shortened ones are.
    config_path = write_config(
        tmp_path / "status.yaml",
        config_document(sandbox, tmp_path / "state", [{"path": str(drop)}]),
    )
    report = json.loads(cli("status", "-c", str(config_path), "--json").stdout)
    listed = {entry["path"]: entry["sidecar"] for entry in report["shortened_sidecars"]}
    too_long = [p for p in files if len(os.fsencode(p.name + ".asset.json")) > NAME_MAX]
    assert too_long and all(listed[str(p)] == str(sidecar.sidecar_path(p)) for p in too_long)
    assert len(sandbox.assets) == len(files)


def test_fitted_cuts_at_a_character_boundary():
    name = "é" * 200 + ".png"
    fitted = names.fitted(name, ".asset.json", NAME_MAX)
    assert len(fitted.encode()) <= NAME_MAX
    assert fitted.encode().decode("utf-8") == fitted
    assert names.fitted(name, ".asset.json", NAME_MAX) == fitted  # deterministic
    assert names.fitted("short.png", ".asset.json") == "short.png.asset.json"


def test_a_long_stem_still_saves_its_paid_for_video(tmp_path: Path, drop: Path, sandbox: Sandbox):
    out = tmp_path / "videos"
    body = {
        "video_inputs": [
            {
                "character": {"type": "avatar", "avatar_id": "a-1", "avatar_style": "normal"},
                "voice": {"type": "text", "input_text": "Hello", "voice_id": "v-1"},
                "background": {"type": "image", "url": "${asset_url}"},
            }
        ],
        "dimension": {"width": 1280, "height": 720},
    }
    config = make_config(
        sandbox,
        tmp_path,
        [{"path": str(drop), "settle_seconds": 0.1, "template": "main"}],
        templates={
            "main": {
                "initial_delay_seconds": 0.05,
                "poll_interval_seconds": 0.05,
                "body": body,
                "download_to": str(out),
            }
        },
    )
    path = drop / name_of_bytes(240)
    with running(config):
        path.write_bytes(media.png(seed=610))

        def saved_to() -> str | None:
            try:
                return read_sidecar(path).get("video", {}).get("downloaded_to")
            except (OSError, ValueError):
                return None

        wait_for(saved_to, timeout=20, what="the video saved")
    video = read_sidecar(path)["video"]
    saved = Path(video["downloaded_to"])
    assert video["status"] == "completed" and saved.parent == out and saved.stat().st_size > 0
    assert len(os.fsencode(saved.name)) <= NAME_MAX
    assert saved.name.endswith(f".{video['video_id']}.mp4") and "~" in saved.name
