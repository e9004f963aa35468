"""One way in for every command (upload, retry), one journal per folder, check-config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import media
from conftest import SANDBOX_KEY, wait_for
from daemon_helpers import (
    KEY_ENV,
    cli,
    config_document,
    read_sidecar,
    sidecar_of,
    start_cli,
    stop_cli,
    uploads_of,
    wait_sidecar,
    write_config,
)
from doors_helpers import api_only, folder_config

from watcher.sandbox import Fault, Sandbox


# -- one way in ---------------------------------------------------------------------------------
def test_upload_goes_through_the_journal_and_force_keeps_the_previous_asset(
    tmp_path: Path, sandbox: Sandbox
):
    config = api_only(tmp_path, sandbox)
    data = media.png(seed=51)
    (tmp_path / "a.png").write_bytes(data)
    first = cli("upload", "-c", str(config), str(tmp_path / "a.png"), env=KEY_ENV)
    assert first.returncode == 0, first.stderr
    asset = json.loads(first.stdout)["asset_id"]
    again = cli("upload", "-c", str(config), str(tmp_path / "a.png"), env=KEY_ENV)
    assert again.returncode == 0, again.stderr
    line = json.loads(again.stdout)
    assert line["asset_id"] == asset and line["already_uploaded"] is True
    assert "1 already uploaded" in again.stderr
    assert len(uploads_of(sandbox, data)) == 1
    # The same bytes under another name: the asset cache, not a second upload.
    (tmp_path / "copy.png").write_bytes(data)
    copy = cli("upload", "-c", str(config), str(tmp_path / "copy.png"), env=KEY_ENV)
    assert json.loads(copy.stdout)["reused"] is True
    assert len(uploads_of(sandbox, data)) == 1
    forced = cli("upload", "-c", str(config), "--force", str(tmp_path / "a.png"), env=KEY_ENV)
    assert forced.returncode == 0, forced.stderr
    line = json.loads(forced.stdout)
    assert line["asset_id"] != asset and line["previous_asset_id"] == asset
    assert read_sidecar(tmp_path / "a.png")["previous_asset_id"] == asset
    assert len(uploads_of(sandbox, data)) == 2


def test_upload_hands_its_files_to_a_running_daemon(tmp_path: Path, sandbox: Sandbox):
    config, _ = folder_config(tmp_path, sandbox)
    daemon = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        wait_for(lambda: (tmp_path / "state" / "journal.sqlite3").exists(), what="daemon")
        outside = tmp_path / "elsewhere.png"
        outside.write_bytes(media.png(seed=52))
        result = cli("upload", "-c", str(config), str(outside), env=KEY_ENV)
        code, _, err = stop_cli(daemon)
    finally:
        daemon.kill()
    assert code == 0, err
    assert result.returncode == 0, result.stderr
    assert "handed 1 file(s) to the running daemon" in result.stderr
    line = json.loads(result.stdout)
    assert line["status"] == "uploaded"
    assert read_sidecar(outside)["asset_id"] == line["asset_id"]
    assert len(uploads_of(sandbox, outside.read_bytes())) == 1


def test_retry_retries_only_what_failed_and_says_why_not_for_the_rest(
    tmp_path: Path, sandbox: Sandbox
):
    config, drop = folder_config(tmp_path, sandbox)
    (drop / "good.png").write_bytes(media.png(seed=53))
    assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 0
    (drop / "bad.png").write_bytes(media.png(seed=54))
    (drop / "other.png").write_bytes(media.png(seed=56))  # failed too, but not named
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=400, count=2))
    assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 1
    (drop / "new.png").write_bytes(media.png(seed=55))  # not failed: retry leaves it alone
    sidecar_of(drop / "good.png").unlink()
    result = cli(
        "retry",
        "-c",
        str(config),
        str(drop / "bad.png"),
        str(drop / "good.png"),
        str(drop / "new.png"),
        str(drop / "nothing-here.png"),
        env=KEY_ENV,
    )
    assert result.returncode == 0, result.stderr
    assert read_sidecar(drop / "bad.png")["status"] == "uploaded"
    assert f"not retried: {drop / 'good.png'}: already uploaded as" in result.stderr
    assert f"not retried: {drop / 'new.png'}: unknown to the journal" in result.stderr
    assert f"not retried: {drop / 'nothing-here.png'}: unknown to the journal" in result.stderr
    assert "1 file(s) marked for retry" in result.stderr
    assert not sidecar_of(drop / "new.png").exists()
    assert read_sidecar(drop / "good.png")["status"] == "uploaded"  # written again
    assert read_sidecar(drop / "other.png")["status"] == "failed"
    assert len(sandbox.assets) == 2


# -- a folder belongs to one journal ------------------------------------------------------------
def test_a_folder_claimed_by_a_running_daemon_is_refused_to_another_state_dir(
    tmp_path: Path, sandbox: Sandbox
):
    config_a, drop = folder_config(tmp_path, sandbox)
    other = config_document(sandbox, tmp_path / "other-state", [{"path": str(drop)}])
    config_b = write_config(tmp_path / "b.yaml", other)
    daemon = start_cli("run", "-c", str(config_a), env=KEY_ENV)
    try:
        wait_for(lambda: (drop / ".heygen-watcher.lock").exists(), what="the claim")
        (drop / "a.png").write_bytes(media.png(seed=61))
        wait_sidecar(drop / "a.png")
        refusals = [
            cli("scan", "-c", str(config_b), env=KEY_ENV),
            cli("run", "-c", str(config_b), env=KEY_ENV, timeout=30),
            cli("upload", "-c", str(config_b), str(drop / "a.png"), env=KEY_ENV),
        ]
        daemon.kill()  # kill -9: the claim goes with the process
        daemon.wait(timeout=10)
        (drop / "b.png").write_bytes(media.png(seed=62))
        after = cli("scan", "-c", str(config_b), env=KEY_ENV)
    finally:
        daemon.kill()
        daemon.communicate(timeout=10)
    for refused in refusals:
        assert refused.returncode == 2, refused.stderr
        assert "belongs to a running heygen-watcher" in refused.stderr
        assert str(tmp_path / "state") in refused.stderr
        assert "Traceback" not in refused.stderr
    assert after.returncode == 0, after.stderr
    assert "last worked on by pid" in after.stderr and str(tmp_path / "state") in after.stderr
    assert read_sidecar(drop / "b.png")["status"] == "uploaded"
    assert len(uploads_of(sandbox, (drop / "a.png").read_bytes())) == 1


# -- check-config tells the truth ---------------------------------------------------------------
def test_check_config_resolves_the_key_as_run_does(tmp_path: Path, sandbox: Sandbox):
    config, _ = folder_config(tmp_path, sandbox)
    missing = cli("check-config", "-c", str(config))
    assert missing.returncode == 2
    assert "no API key: set the environment variable HEYGEN_API_KEY" in missing.stderr
    key_file = tmp_path / "key"
    key_file.write_text(SANDBOX_KEY)
    key_file.chmod(0o644)
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(tmp_path / "drop")}],
        api={"api_key_file": str(key_file)},
    )
    with_file = write_config(tmp_path / "f.yaml", document)
    too_open = cli("check-config", "-c", str(with_file))
    assert too_open.returncode == 2 and "too open" in too_open.stderr
    key_file.chmod(0o600)
    ok = cli("check-config", "-c", str(with_file), "--online")
    assert ok.returncode == 0, ok.stderr
    assert f"API key from api_key_file {key_file}; the API accepted it" in ok.stdout
    key_file.write_text("wrong-key-77")
    refused = cli("check-config", "-c", str(with_file), "--online")
    assert refused.returncode == 2
    assert "the API refused the key" in refused.stderr and "wrong-key-77" not in refused.stderr
    gone = tmp_path / "gone-key"
    write_config(with_file, {**document, "api": {**document["api"], "api_key_file": str(gone)}})
    assert "file does not exist" in cli("check-config", "-c", str(with_file)).stderr
    for result in (missing, too_open, ok, refused):
        assert SANDBOX_KEY not in result.stdout + result.stderr


def test_check_config_checks_env_placeholders_writable_places_and_prints_rw_paths(
    tmp_path: Path, sandbox: Sandbox
):
    drop, done, videos = tmp_path / "drop", tmp_path / "done", tmp_path / "ro" / "videos"
    drop.mkdir()
    (tmp_path / "ro").mkdir()
    template = {
        "body": {"voice": "${env.HEYGEN_VOICE_FOR_TEST}", "bad": "${nope}"},
        "download_to": str(videos),
    }
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(drop), "after_upload": {"move": str(done)}, "template": "t"}],
        templates={"t": template},
    )
    config = write_config(tmp_path / "c.yaml", document)
    unknown = cli("check-config", "-c", str(config), env=KEY_ENV)
    assert unknown.returncode == 2
    assert unknown.stderr.count("unknown placeholder ${nope}") == 1
    template["body"] = {"voice": "${env.HEYGEN_VOICE_FOR_TEST}"}
    write_config(config, document)
    (tmp_path / "ro").chmod(0o555)
    try:
        result = cli("check-config", "-c", str(config), "--for-service", env=KEY_ENV)
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert result.returncode == 2
    assert "environment variable HEYGEN_VOICE_FOR_TEST is not set" in result.stderr
    if os.geteuid() != 0:  # root may write anywhere
        assert f"templates.t.download_to: {videos}" in result.stderr
    assert result.stdout.strip() == f"ReadWritePaths={drop} {done} {videos}"
    fine = cli("check-config", "-c", str(config), env={**KEY_ENV, "HEYGEN_VOICE_FOR_TEST": "v1"})
    assert fine.returncode == 0, fine.stderr
