"""status before the first run and beside the tour; sidecars kept true from the journal."""

from __future__ import annotations

import json
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
    start_cli,
    stop_cli,
    uploads_of,
    wait_sidecar,
)
from doors_helpers import folder_config

from watcher.sandbox import Fault, Sandbox


# -- status -------------------------------------------------------------------------------------
def test_status_before_the_first_run_creates_nothing_and_has_every_key(
    tmp_path: Path, sandbox: Sandbox
):
    config, drop = folder_config(tmp_path, sandbox)
    before = cli("status", "-c", str(config))
    assert before.returncode == 0, before.stderr
    assert "files: none yet" in before.stdout
    before_json = cli("status", "-c", str(config), "--json")
    assert before_json.returncode == 0, before_json.stderr
    assert not (tmp_path / "state").exists()
    (drop / "a.png").write_bytes(media.png())
    assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 0
    after_json = cli("status", "-c", str(config), "--json")
    assert set(json.loads(before_json.stdout)) == set(json.loads(after_json.stdout))
    assert json.loads(after_json.stdout)["counts"]["uploaded"] == 1


def test_status_shows_paths_relative_to_their_folder(tmp_path: Path, sandbox: Sandbox):
    config, drop = folder_config(tmp_path, sandbox)
    (drop / "sub").mkdir()
    (drop / "sub" / "c.png").write_bytes(media.png())
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=400, count=10))
    assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 1
    result = cli("status", "-c", str(config))
    assert "failed: sub/c.png: " in result.stdout
    (failure,) = json.loads(cli("status", "-c", str(config), "--json").stdout)["recent_failures"]
    assert failure["relative_path"] == "sub/c.png"
    assert failure["folder"] == str(drop)


def test_status_finds_the_tour_without_a_config(tmp_path: Path):
    process = start_cli("run", "--sandbox", cwd=tmp_path)
    try:
        wait_for(lambda: (tmp_path / "drop").is_dir(), timeout=20, what="./drop")
        (tmp_path / "drop" / "hello.png").write_bytes(media.png())
        wait_sidecar(tmp_path / "drop" / "hello.png", timeout=20)
        result = cli("status", cwd=tmp_path, env={"HEYGEN_WATCHER_CONFIG": ""})
        code, _, _ = stop_cli(process)
    finally:
        process.kill()
    assert code == 0
    assert result.returncode == 0, result.stderr
    assert "daemon running" in result.stdout and "1 uploaded" in result.stdout


def test_no_config_anywhere_is_one_clear_line(tmp_path: Path):
    if Path("/etc/heygen-watcher/config.yaml").exists():
        pytest.skip("this machine has a system-wide configuration")
    result = cli("status", cwd=tmp_path, env={"HEYGEN_WATCHER_CONFIG": ""})
    assert result.returncode == 2
    assert result.stderr.startswith("heygen-watcher: no configuration: pass -c FILE")


# -- the sidecar is a view of the journal -------------------------------------------------------
def test_a_running_daemon_writes_a_deleted_or_edited_sidecar_again_without_uploading(
    tmp_path: Path, sandbox: Sandbox
):
    drop = tmp_path / "drop"
    drop.mkdir()
    config = make_config(sandbox, tmp_path, [{"path": str(drop)}], rescan_seconds=0.2)
    data = media.png(seed=41)
    with running(config):
        (drop / "a.png").write_bytes(data)
        first = wait_sidecar(drop / "a.png", status="uploaded")
        sidecar_of(drop / "a.png").unlink()
        again = wait_sidecar(drop / "a.png", status="uploaded")
        assert again["asset_id"] == first["asset_id"]
        sidecar_of(drop / "a.png").write_text("{ not json", encoding="utf-8")
        wait_for(lambda: _asset_id(drop / "a.png") == first["asset_id"], what="damaged repaired")
        edited = {**first, "asset_id": "someone-else", "url": "https://example.invalid/x"}
        sidecar_of(drop / "a.png").write_text(json.dumps(edited), encoding="utf-8")
        wait_for(lambda: _asset_id(drop / "a.png") == first["asset_id"], what="edit replaced")
    assert len(uploads_of(sandbox, data)) == 1
    assert read_sidecar(drop / "a.png")["uploaded_at"] == first["uploaded_at"]


def _asset_id(path: Path) -> str | None:
    try:
        return read_sidecar(path).get("asset_id")
    except (OSError, ValueError):
        return None


def test_scan_writes_a_missing_sidecar_again_and_rebuild_keeps_a_healthy_journal(
    tmp_path: Path, sandbox: Sandbox
):
    config, drop = folder_config(tmp_path, sandbox)
    data = media.png(seed=42)
    (drop / "a.png").write_bytes(data)
    assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 0
    first = read_sidecar(drop / "a.png")
    sidecar_of(drop / "a.png").unlink()
    result = cli("scan", "-c", str(config), env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    assert read_sidecar(drop / "a.png")["asset_id"] == first["asset_id"]
    assert "written again from the journal" in result.stderr
    # --rebuild-journal on a healthy journal: nothing set aside, nothing uploaded again.
    sidecar_of(drop / "a.png").unlink()
    result = cli("scan", "-c", str(config), "--rebuild-journal", env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    assert "is healthy" in result.stderr
    assert not [p for p in (tmp_path / "state").iterdir() if ".broken-" in p.name]
    assert read_sidecar(drop / "a.png")["asset_id"] == first["asset_id"]
    assert len(uploads_of(sandbox, data)) == 1


def test_changed_bytes_are_uploaded_again_with_previous_asset_id(tmp_path: Path, sandbox: Sandbox):
    config, drop = folder_config(tmp_path, sandbox)
    (drop / "a.png").write_bytes(media.png(seed=43))
    assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 0
    first = read_sidecar(drop / "a.png")
    (drop / "a.png").write_bytes(media.png(seed=44))
    assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 0
    second = read_sidecar(drop / "a.png")
    assert second["asset_id"] != first["asset_id"]
    assert second["previous_asset_id"] == first["asset_id"]
