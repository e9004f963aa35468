"""Every command a user can run keeps the daemon's promises: status before the first run, the
tour's config found by the other commands, sidecars kept true, one journal per folder."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import media
import pytest
from conftest import SANDBOX_KEY, wait_for
from daemon_helpers import (
    cli,
    config_document,
    env_with,
    make_config,
    read_sidecar,
    running,
    sidecar_of,
    start_cli,
    stop_cli,
    uploads_of,
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


# -- one way in ---------------------------------------------------------------------------------
def api_only(tmp_path: Path, sandbox: Sandbox) -> Path:
    document = config_document(sandbox, tmp_path / "state", [])
    return write_config(tmp_path / "api.yaml", document)


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
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=400, count=1))
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


# -- an operator can see what it does -----------------------------------------------------------
ISO_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (info|warning|debug) ")


def test_scan_summarises_what_this_run_did(tmp_path: Path, sandbox: Sandbox):
    config, drop = folder_config(tmp_path, sandbox)
    (drop / "a.png").write_bytes(media.png(seed=71))
    (drop / "b.png").write_bytes(media.png(seed=72))
    first = cli("scan", "-c", str(config), env=KEY_ENV)
    assert first.returncode == 0, first.stderr
    assert "this run: 2 uploaded, 0 reused, 0 rejected, 0 failed, 0 already done" in first.stderr
    (drop / "copy.png").write_bytes((drop / "a.png").read_bytes())
    (drop / "notes.png").write_bytes(b"just words\n")
    second = cli("scan", "-c", str(config), env=KEY_ENV)
    assert "this run: 0 uploaded, 1 reused, 1 rejected, 0 failed, 2 already done" in second.stderr


def test_scan_dry_run_says_what_and_why_and_touches_nothing(tmp_path: Path, sandbox: Sandbox):
    config, drop = folder_config(tmp_path, sandbox)
    (drop / "a.png").write_bytes(media.png(seed=73))
    (drop / "notes.png").write_bytes(b"just words\n")
    result = cli("scan", "-c", str(config), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert (
        lines[0]
        == f"would refuse: {drop / 'notes.png'}: unsupported type: "
        + lines[0].split("unsupported type: ")[1]
    )
    assert lines[1] == f"would upload: {drop / 'a.png'}: image/png"
    assert "1 would be uploaded, 1 refused, 0 skipped, 0 already done" in result.stderr
    assert sorted(p.name for p in drop.iterdir()) == ["a.png", "notes.png"]
    assert not (tmp_path / "state").exists()
    assert sandbox.requests == []
    # After a real scan, the same files are already done (read from the journal, read-only).
    assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 0  # a rejection is final
    again = cli("scan", "-c", str(config), "--dry-run")
    assert again.stdout == "" and "2 already done" in again.stderr


def test_logs_have_iso_timestamps_except_under_journald(tmp_path: Path, sandbox: Sandbox):
    config, drop = folder_config(tmp_path, sandbox)
    (drop / "notes.png").write_bytes(b"just words\n")
    plain = cli("scan", "-c", str(config), env=KEY_ENV)
    logged = [line for line in plain.stderr.splitlines() if "rejected:" in line]
    assert logged and ISO_STAMP.match(logged[0]), logged
    (drop / "more.png").write_bytes(b"more words\n")
    err_file = tmp_path / "stderr.txt"
    with open(err_file, "w") as err:
        info = os.fstat(err.fileno())
        env = {**KEY_ENV, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        subprocess.run(
            [sys.executable, "-m", "watcher", "scan", "-c", str(config)],
            stderr=err,
            stdout=subprocess.DEVNULL,
            env=env_with(env),
            timeout=60,
        )
    journal_lines = [line for line in err_file.read_text().splitlines() if "rejected:" in line]
    assert journal_lines and journal_lines[0].startswith("info rejected:"), journal_lines


def test_start_up_says_what_it_watches_and_verbose_logs_every_state_change(
    tmp_path: Path, sandbox: Sandbox
):
    config, drop = folder_config(tmp_path, sandbox)
    daemon = start_cli("run", "-c", str(config), "-v", env=KEY_ENV)
    try:
        (drop / "a.png").write_bytes(media.png(seed=74))
        wait_sidecar(drop / "a.png")
        wait_for(lambda: (tmp_path / "state" / "journal.sqlite3").exists())
        code, _, err = stop_cli(daemon)
    finally:
        daemon.kill()
    assert code == 0, err
    (started,) = [line for line in err.splitlines() if "heygen-watcher 0.1.0 started" in line]
    for part in (
        f"api={sandbox.api_url}",
        "protocol=v1-presigned",
        'key_from="environment variable HEYGEN_API_KEY"',
        f"state_dir={tmp_path / 'state'}",
        f"journal={tmp_path / 'state' / 'journal.sqlite3'}",
    ):
        assert part in started, part
    (folder_line,) = [line for line in err.splitlines() if "watching folder" in line]
    for part in (f"folder={drop}", "types=image/jpeg,", "settle_seconds=", "template=-"):
        assert part in folder_line, part
    assert SANDBOX_KEY not in err
    changes = [line.split(" debug ")[1] for line in err.splitlines() if " → " in line]
    assert [change.split(" file=")[0] for change in changes] == [
        "new → queued",
        "queued → uploading",
        "uploading → recording",
        "recording → uploaded",
    ]


def test_scan_draws_a_progress_bar_on_a_terminal(tmp_path: Path, sandbox: Sandbox):
    config, drop = folder_config(tmp_path, sandbox)
    for seed in range(3):
        (drop / f"{seed}.png").write_bytes(media.png(seed=80 + seed))
    (drop / "notes.png").write_bytes(b"words\n")
    main, child = pty.openpty()
    # A terminal 120 columns wide (a fresh pty has no size, so the bar would have no room).
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "watcher", "scan", "-c", str(config)],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env_with(KEY_ENV),
    )
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert process.wait(timeout=60) == 0
    text = output.decode(errors="replace")
    assert "4/4" in text and "file/s" in text
    # The log line sits on a line of its own, not inside the bar.
    (rejected,) = [line for line in text.replace("\r", "\n").splitlines() if "rejected:" in line]
    assert ISO_STAMP.match(rejected.strip()), rejected


def test_shell_completion_for_bash_and_zsh(tmp_path: Path):
    bash = cli("--print-completion", "bash")
    assert bash.returncode == 0 and "check-config" in bash.stdout
    script = tmp_path / "complete.bash"
    script.write_text(bash.stdout)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    zsh = cli("--print-completion", "zsh")
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef heygen-watcher")
