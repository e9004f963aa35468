"""Every command a user can run keeps the daemon's promises: status before the first run, the
tour's config found by the other commands, sidecars kept true, one journal per folder."""

from __future__ import annotations

import json
from pathlib import Path

import media
import pytest
from conftest import SANDBOX_KEY, wait_for
from daemon_helpers import (
    cli,
    config_document,
    start_cli,
    stop_cli,
    wait_sidecar,
    write_config,
)

from watcher.sandbox import Fault, Sandbox

KEY_ENV = {"HEYGEN_API_KEY": SANDBOX_KEY}


def folder_config(tmp_path: Path, sandbox: Sandbox, **folder: object) -> tuple[Path, Path]:
    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)
    document = config_document(sandbox, tmp_path / "state", [{"path": str(drop), **folder}])
    return write_config(tmp_path / "c.yaml", document), drop


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
