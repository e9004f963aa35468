"""Local write failures on real filesystems: a full disk (a small tmpfs filled to the brim) and
a read-only one (the same tmpfs remounted read-only). What cannot be written is kept in the
journal with why, shown by `status` and `/healthz`, and written within seconds of the cause
clearing, never on the upload retry window, and never forgotten (rejections included)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import media
import pytest
from conftest import wait_for
from daemon_helpers import (
    cli,
    config_document,
    make_config,
    read_sidecar,
    running,
    write_config,
)
from smalldisk import SmallDisk, small_tmpfs
from test_videos import BACKGROUND_BODY

from watcher.config import load_config
from watcher.intake.sniff import sniff_file
from watcher.sandbox import Sandbox

# Far longer than any test waits: a write retried on the upload schedule would not make it.
UPLOAD_RETRY_WINDOW = 3600


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    with small_tmpfs(mountpoint):
        yield SmallDisk(mountpoint)


def status_of(tmp_path: Path, sandbox: Sandbox, drop: Path, sidecars: Path) -> dict:
    document = config_document(
        sandbox, tmp_path / "state", [{"path": str(drop), "sidecar_dir": str(sidecars)}]
    )
    config = write_config(tmp_path / "status.yaml", document)
    return json.loads(cli("status", "-c", str(config), "--json").stdout)


def test_a_full_disk_holds_the_sidecar_until_space_is_freed(
    tmp_path: Path, drop: Path, sandbox: Sandbox, small_disk: SmallDisk
):
    folder = {"path": str(drop), "settle_seconds": 0.1, "sidecar_dir": str(small_disk.path)}
    config = make_config(sandbox, tmp_path, [folder], retry_window_seconds=UPLOAD_RETRY_WINDOW)
    small_disk.fill()
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=500))
        (drop / "notes.txt").write_bytes(b"not a picture\n")  # refused: its sidecar too
        key = str(drop / "a.png")
        wait_for(
            lambda: (r := daemon.journal.get(key)) and r.state == "recording" and r.last_error,
            what="the upload waiting for its sidecar",
        )
        wait_for(lambda: daemon.journal.pending_sidecars(), what="the rejection kept for later")
        row = daemon.journal.get(key)
        assert row is not None and "No space left on device (ENOSPC)" in (row.last_error or "")
        ok, reason = daemon.health.check()
        assert not ok and "ENOSPC" in reason
        status = status_of(tmp_path, sandbox, drop, small_disk.path)
        shown = [f for f in status["recent_failures"] if f["path"] == key]
        assert shown and "ENOSPC" in shown[0]["error"]
        assert "ENOSPC" in status["unwritten_sidecars"][0]["error"]
        assert "notes.txt" in status["unwritten_sidecars"][0]["sidecar"]
        small_disk.free()
        uploaded = small_disk.path / "a.png.asset.json"
        rejected = small_disk.path / "notes.txt.asset.json"
        wait_for(uploaded.exists, timeout=15, what="the sidecar, once there is room")
        wait_for(rejected.exists, timeout=15, what="the rejection's sidecar, once there is room")
        wait_for(lambda: daemon.health.check()[0], what="healthy again")
    assert json.loads(uploaded.read_text())["status"] == "uploaded"
    assert json.loads(rejected.read_text())["status"] == "rejected"
    assert len(sandbox.assets) == 1


def test_a_read_only_move_target_is_retried_until_writable(
    tmp_path: Path, drop: Path, sandbox: Sandbox, small_disk: SmallDisk
):
    done = small_disk.path / "done"
    done.mkdir()
    folder = {"path": str(drop), "settle_seconds": 0.1, "after_upload": {"move": str(done)}}
    config = make_config(sandbox, tmp_path, [folder], retry_window_seconds=UPLOAD_RETRY_WINDOW)
    with running(config) as daemon:
        # Read-only once the daemon runs (at start, such a folder is not taken at all).
        small_disk.remount("ro")
        (drop / "a.png").write_bytes(media.png(seed=501))
        key = str(drop / "a.png")
        wait_for(
            lambda: (row := daemon.journal.get(key)) and row.last_error,
            what="the move failing",
        )
        row = daemon.journal.get(key)
        assert row is not None and row.state == "recording"
        assert "Read-only file system (EROFS)" in (row.last_error or "")
        small_disk.remount("rw")
        wait_for((done / "a.png.asset.json").exists, timeout=15, what="the moved file's sidecar")
    assert (done / "a.png").exists() and not (drop / "a.png").exists()
    assert os.path.getsize(done / "a.png") > 0
    assert len(sandbox.assets) == 1


def test_a_full_disk_during_a_video_download_saves_the_video_once_space_is_freed(
    tmp_path: Path, drop: Path, sandbox: Sandbox, small_disk: SmallDisk
):
    out = small_disk.path / "videos"
    out.mkdir()
    template = {
        "body": BACKGROUND_BODY,
        "initial_delay_seconds": 0.05,
        "poll_interval_seconds": 0.05,
        "download_to": str(out),
    }
    folder = {"path": str(drop), "settle_seconds": 0.1, "template": "main"}
    document = config_document(
        sandbox,
        tmp_path / "state",
        [folder],
        templates={"main": template},
        retry_window_seconds=UPLOAD_RETRY_WINDOW,
    )
    config_path = write_config(tmp_path / "videos.yaml", document)
    (drop / "a.txt").write_text("Hello\n", encoding="utf-8")
    with running(load_config(config_path)) as daemon:
        # Full once the daemon runs (at start, a download_to without room is not taken).
        small_disk.fill()
        (drop / "a.png").write_bytes(media.png(seed=502))
        key = str(drop / "a.png")
        wait_for(
            lambda: (v := daemon.journal.video(key)) and v.state == "downloading" and v.error,
            timeout=20,
            what="the paid-for video failing to save",
        )
        video = daemon.journal.video(key)
        assert video is not None and "No space left on device (ENOSPC)" in (video.error or "")
        ok, reason = daemon.health.check()
        assert not ok and "ENOSPC" in reason
        status = cli("status", "-c", str(config_path), "--json")
        (unsaved,) = json.loads(status.stdout)["unsaved_videos"]
        assert unsaved["path"] == key and "ENOSPC" in unsaved["error"]
        assert "video not saved yet" in cli("status", "-c", str(config_path)).stdout
        assert not list(out.iterdir())  # no half video, no temp file left behind
        small_disk.free()
        wait_for(
            lambda: read_sidecar(drop / "a.png")["video"]["downloaded_to"],
            timeout=30,
            what="the video saved once there is room",
        )
        wait_for(lambda: daemon.health.check()[0], what="healthy again")
    (saved,) = out.iterdir()
    assert read_sidecar(drop / "a.png")["video"]["downloaded_to"] == str(saved)
    assert sniff_file(saved) == "video/mp4"
    assert len(sandbox.videos) == 1  # generated (and paid for) once
