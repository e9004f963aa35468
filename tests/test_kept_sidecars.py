"""The sidecars of refused and failed files are a view of the journal too: a deleted, damaged
or edited one is written again from the journal (rescan, start, `scan`, `retry`), without
sniffing or uploading the file again."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import media
import pytest
from conftest import wait_for
from daemon_helpers import (
    KEY_ENV,
    cli,
    make_config,
    read_sidecar,
    running,
    sidecar_of,
    wait_sidecar,
)
from doors_helpers import folder_config

from watcher.sandbox import Fault, Sandbox

WRITTEN_AGAIN = "written again from the journal"


def _field(path: Path, name: str) -> object:
    try:
        return read_sidecar(path).get(name)
    except (OSError, ValueError):
        return None


def _refused(drop: Path) -> Path:
    path = drop / "notes.png"
    path.write_bytes(media.text("a shopping list, not a picture\n"))
    return path


def test_scan_and_retry_write_a_lost_or_edited_rejection_sidecar_again(
    tmp_path: Path, sandbox: Sandbox
):
    config, drop = folder_config(tmp_path, sandbox)
    path = _refused(drop)
    first = cli("scan", "-c", str(config), env=KEY_ENV)
    assert "rejected:" in first.stderr
    original = read_sidecar(path)
    assert original["status"] == "rejected" and original["detected_type"] == "text/plain"

    sidecar_of(path).unlink()
    again = cli("scan", "-c", str(config), env=KEY_ENV)
    assert again.returncode == 0, again.stderr
    assert WRITTEN_AGAIN in again.stderr
    assert "rejected:" not in again.stderr  # decided from the journal: not sniffed again
    assert read_sidecar(path) == original

    # Someone says it was uploaded: the journal's truth replaces it (`retry`, all files).
    sidecar_of(path).write_text(
        json.dumps({**original, "status": "uploaded", "asset_id": "forged"}), encoding="utf-8"
    )
    result = cli("retry", "-c", str(config), env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    assert read_sidecar(path) == original

    # Damaged, then `retry PATH`: it is not retried (refused), but its sidecar is made true.
    sidecar_of(path).write_text("{ half a sidecar", encoding="utf-8")
    result = cli("retry", "-c", str(config), str(path), env=KEY_ENV)
    assert "not retried" in result.stderr
    assert read_sidecar(path) == original
    assert not sandbox.assets


def test_a_running_daemon_and_a_restart_keep_a_rejection_sidecar_true(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
):
    drop = tmp_path / "drop"
    drop.mkdir()
    config = make_config(sandbox, tmp_path, [{"path": str(drop)}], rescan_seconds=0.2)
    path = _refused(drop)
    with caplog.at_level(logging.INFO), running(config):
        original = wait_sidecar(path, status="rejected")
        sidecar_of(path).unlink()
        wait_for(lambda: sidecar_of(path).exists(), what="deleted rejection sidecar rewritten")
        sidecar_of(path).write_text(json.dumps({**original, "error": "all fine"}), "utf-8")
        wait_for(lambda: _field(path, "error") == original["error"], what="edit replaced")
    sidecar_of(path).unlink()
    with caplog.at_level(logging.INFO), running(config):
        wait_for(lambda: sidecar_of(path).exists(), what="rewritten at start")
    assert read_sidecar(path) == original
    refusals = [r for r in caplog.records if r.getMessage().startswith("rejected:")]
    assert len(refusals) == 1, "the file was sniffed again"
    # Deleted, edited, deleted before a start: written again each time (a rescan that reads
    # an edit half-written may write it once more).
    assert sum(WRITTEN_AGAIN in r.getMessage() for r in caplog.records) >= 3


def test_a_running_daemon_keeps_a_failed_files_sidecar_true(tmp_path: Path, sandbox: Sandbox):
    drop = tmp_path / "drop"
    drop.mkdir()
    config = make_config(sandbox, tmp_path, [{"path": str(drop)}], rescan_seconds=0.2)
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=400, count=1000))
    path = drop / "a.png"
    path.write_bytes(media.png(seed=71))
    with running(config):
        original = wait_sidecar(path, status="failed")
        requests = len(sandbox.requests)
        sidecar_of(path).unlink()
        wait_for(lambda: sidecar_of(path).exists(), what="deleted failure sidecar rewritten")
        sidecar_of(path).write_text(json.dumps({**original, "error": "it worked"}), "utf-8")
        wait_for(lambda: _field(path, "error") == original["error"], what="edit replaced")
        assert len(sandbox.requests) == requests  # nothing sent again
    assert read_sidecar(path) == original
