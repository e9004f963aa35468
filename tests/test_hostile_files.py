"""What anyone allowed to drop files can plant: FIFOs, devices and huge files under the names
the daemon reads (sidecars, payloads, companion scripts). Nothing blocks or stops a thread;
each is skipped or refused with a log line, and every other file goes through."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import media
import pytest
from conftest import wait_for
from daemon_helpers import (
    KEY_ENV,
    config_document,
    make_config,
    read_sidecar,
    running,
    sidecar_of,
    start_cli,
    stop_cli,
    wait_sidecar,
    write_config,
)

from watcher.config.regularfile import NotRegularFile, ReadLimitExceeded, read_regular
from watcher.sandbox import Sandbox


def is_ours(path: Path) -> bool:
    """A regular file of a sidecar's size (not the planted FIFO, device or 2 MiB file)."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size < 1 << 20


def zero_device(path: Path) -> None:
    """A character device that reads zeroes without end (as /dev/zero); needs root."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("making a device node needs root")


def test_start_up_scan_with_fifos_devices_and_huge_sidecars(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    # Planted before the daemon starts: the start-up scan reads sidecars of existing files.
    (drop / "fifo.png").write_bytes(media.png(seed=800))
    os.mkfifo(sidecar_of(drop / "fifo.png"))
    (drop / "device.png").write_bytes(media.png(seed=801))
    zero_device(sidecar_of(drop / "device.png"))
    (drop / "huge.png").write_bytes(media.png(seed=802))
    padded = {"schema": "heygen-watcher/asset/v1", "status": "uploaded", "pad": "x" * (2 << 20)}
    sidecar_of(drop / "huge.png").write_text(json.dumps(padded), encoding="utf-8")
    os.mkfifo(drop / "pipe.png")  # a FIFO under a payload's name
    (drop / "plain.png").write_bytes(media.png(seed=803))
    document = config_document(
        sandbox, tmp_path / "state", [{"path": str(drop), "settle_seconds": 0.1}]
    )
    config = write_config(tmp_path / "config.yaml", document)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        for name in ("plain.png", "fifo.png", "device.png", "huge.png"):
            # Until the daemon replaces it, the "sidecar" is a FIFO or an endless device:
            # this test must not read it either.
            wait_for(lambda n=name: is_ours(sidecar_of(drop / n)), timeout=30, what=name)
            assert wait_sidecar(drop / name, timeout=30)["status"] == "uploaded", name
        (drop / "later.png").write_bytes(media.png(seed=804))  # and the watch goes on
        wait_sidecar(drop / "later.png", timeout=30)
        code, _, log = stop_cli(process)
    finally:
        process.kill()
    assert code == 0, log
    assert "FIFO (not a regular file)" in log and "device (not a regular file)" in log
    assert "larger than 1048576 bytes" in log
    assert len(sandbox.assets) == 5


def test_a_script_that_is_a_fifo_or_too_big_is_refused_with_a_reason(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    body = {
        "video_inputs": [
            {
                "character": {"type": "avatar", "avatar_id": "a-1", "avatar_style": "normal"},
                "voice": {"type": "text", "input_text": "${script}", "voice_id": "v-1"},
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
            "main": {"initial_delay_seconds": 0.05, "poll_interval_seconds": 0.05, "body": body}
        },
    )
    os.mkfifo(drop / "piped.txt")
    (drop / "long.txt").write_text("word " * 20_000, encoding="utf-8")  # 100 KB
    (drop / "fine.txt").write_text("Hello there", encoding="utf-8")
    with running(config):
        for number, stem in enumerate(("piped", "long", "fine")):
            (drop / f"{stem}.png").write_bytes(media.png(seed=810 + number))

        def video(stem: str) -> dict | None:
            try:
                found = read_sidecar(drop / f"{stem}.png").get("video")
            except (OSError, ValueError):
                return None
            return found if found and found["status"] in ("failed", "completed") else None

        piped = wait_for(lambda: video("piped"), timeout=20, what="the FIFO script refused")
        long = wait_for(lambda: video("long"), timeout=20, what="the long script refused")
        fine = wait_for(lambda: video("fine"), timeout=20, what="the good script's video")
    assert piped["status"] == "failed" and "FIFO" in piped["error"]  # type: ignore[index]
    assert long["status"] == "failed" and "larger than 65536" in long["error"]  # type: ignore[index]
    assert fine["status"] == "completed"  # type: ignore[index]


def test_read_regular_never_opens_what_it_must_not(tmp_path: Path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegularFile, match="FIFO"):
        read_regular(tmp_path / "fifo", 10)
    (tmp_path / "target").write_text("secret")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(NotRegularFile, match="symbolic link"):
        read_regular(tmp_path / "link", 10)
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(ReadLimitExceeded):
        read_regular(tmp_path / "big", 10)
    assert read_regular(tmp_path / "target", 10) == b"secret"
