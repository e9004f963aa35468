"""What only a non-root user meets, met for real: commands and the daemon run as `nobody`.

- check-config names a folder that user cannot write;
- a sidecar write refused with EACCES is a local write failure: kept with why (`status`),
  retried within seconds, written once permission is back, nothing forgotten;
- a command run by another user than the one who last worked on a folder warns before it acts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import media
import pytest
from conftest import wait_for
from daemon_helpers import KEY_ENV, cli, config_document, read_sidecar, sidecar_of, write_config
from otheruser import OtherUser, find_other_user

from watcher.sandbox import Sandbox

# Far longer than any test waits: a write retried on the upload schedule would not make it.
UPLOAD_RETRY_WINDOW = 3600


@pytest.fixture(scope="session")
def other_user() -> Iterator[OtherUser]:
    packages = Path(tempfile.mkdtemp(prefix="heygen-watcher-packages-", dir="/tmp"))
    packages.chmod(0o755)
    try:
        user, why = find_other_user(packages)
        if user is None:
            if os.geteuid() == 0 or os.environ.get("CI") == "true":
                pytest.fail(f"cannot run commands as a non-root user: {why}")
            pytest.skip(f"non-root tests need root to switch users: {why}")
        yield user
    finally:
        shutil.rmtree(packages, ignore_errors=True)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder every user can reach (pytest's own tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="heygen-watcher-users-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def layout(root: Path, sandbox: Sandbox, user: OtherUser, **top: object) -> tuple[Path, Path]:
    """A drop folder and a state directory owned by ``user``; the config readable by all."""
    drop, state = root / "drop", root / "state"
    drop.mkdir()
    state.mkdir()
    user.own(drop, state)
    folder = {"path": str(drop), "settle_seconds": 0.1}
    document = config_document(sandbox, state, [folder], **top)
    config = write_config(root / "config.yaml", document)
    config.chmod(0o644)
    return config, drop


def test_check_config_names_a_folder_the_user_cannot_write(
    shared_tmp: Path, sandbox: Sandbox, other_user: OtherUser
):
    config, drop = layout(shared_tmp, sandbox, other_user)
    done = shared_tmp / "done"
    done.mkdir()  # root's, 0755: not writable by the service user
    document = config_document(
        sandbox,
        shared_tmp / "state",
        [{"path": str(drop), "after_upload": {"move": str(done)}}],
    )
    write_config(config, document)
    result = other_user.cli("check-config", "-c", str(config), env=KEY_ENV)
    assert result.returncode == 2, result.stderr
    expected = f"folders[0].after_upload.move: {done} is not writable by user {other_user.name}"
    assert expected in result.stderr
    assert result.stderr.count("is not writable") == 1
    # Root, for whom everything is writable, says OK: the check is made as the user who runs it.
    assert cli("check-config", "-c", str(config), env=KEY_ENV).returncode == 0
    other_user.own(done)
    fixed = other_user.cli("check-config", "-c", str(config), env=KEY_ENV)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.startswith("OK: ")


class Lines:
    """A process's stderr, read as it comes (the daemon's log)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self._lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self._lines))

    def text(self) -> str:
        self._reader.join(timeout=30)
        return "".join(self._lines)


def states(state_dir: Path) -> dict[str, tuple[str, str | None]]:
    database = state_dir / "journal.sqlite3"
    try:
        # Read-only: root must not leave files the service user cannot write in its state dir.
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute("SELECT path, state, last_error FROM files").fetchall()
    except sqlite3.Error:
        return {}
    return {path: (state, error) for path, state, error in rows}


def test_a_sidecar_refused_with_eacces_is_kept_retried_and_written_once_permitted(
    shared_tmp: Path, sandbox: Sandbox, other_user: OtherUser
):
    config, drop = layout(shared_tmp, sandbox, other_user, retry_window_seconds=UPLOAD_RETRY_WINDOW)
    process = other_user.start_cli("run", "-c", str(config), env=KEY_ENV)
    log = Lines(process)
    try:
        wait_for(lambda: log.has("watching 1 folder(s)"), timeout=30, what="the daemon to start")
        # Taken away once the daemon runs (at start, such a folder is not taken at all).
        drop.chmod(0o555)
        (drop / "a.png").write_bytes(media.png(seed=601))
        (drop / "notes.png").write_bytes(media.text("not a picture\n"))  # refused
        key = str(drop / "a.png")
        wait_for(
            lambda: states(shared_tmp / "state").get(key, ("", None))[1],
            timeout=30,
            what="the sidecar write to fail",
        )
        state, error = states(shared_tmp / "state")[key]
        assert state == "recording"
        assert "Permission denied (EACCES)" in (error or "")
        wait_for(
            lambda: json.loads(other_user.cli("status", "-c", str(config), "--json").stdout)[
                "unwritten_sidecars"
            ],
            timeout=30,
            what="the refusal's sidecar kept for later",
        )
        status = json.loads(other_user.cli("status", "-c", str(config), "--json").stdout)
        (failure,) = [f for f in status["recent_failures"] if f["path"] == key]
        assert "EACCES" in failure["error"] and failure["state"] == "recording"
        (pending,) = status["unwritten_sidecars"]
        assert "notes.png" in pending["sidecar"] and "EACCES" in pending["error"]
        drop.chmod(0o755)
        wait_for(sidecar_of(drop / "a.png").exists, timeout=20, what="the sidecar, permitted")
        wait_for(sidecar_of(drop / "notes.png").exists, timeout=20, what="the refusal's sidecar")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        drop.chmod(0o755)
        process.kill()
    output = log.text()
    assert process.returncode == 0, output
    assert read_sidecar(drop / "a.png")["status"] == "uploaded"
    assert read_sidecar(drop / "notes.png")["status"] == "rejected"
    assert sidecar_of(drop / "a.png").stat().st_uid == other_user.uid
    assert len(sandbox.assets) == 1
    assert "cannot write sidecar" in output and "Permission denied (EACCES)" in output


def test_a_command_run_by_another_user_warns_before_it_acts(
    shared_tmp: Path, sandbox: Sandbox, other_user: OtherUser
):
    config, drop = layout(shared_tmp, sandbox, other_user)
    (drop / "a.png").write_bytes(media.png(seed=611))
    first = other_user.cli("scan", "-c", str(config), env=KEY_ENV)
    assert first.returncode == 0, first.stderr
    assert "last worked on" not in first.stderr
    # Root, on the service user's folder: warned, before any file is looked at.
    (drop / "b.png").write_bytes(media.png(seed=612))
    second = cli("scan", "-c", str(config), env=KEY_ENV)
    assert second.returncode == 0, second.stderr
    warning = "this folder was last worked on by pid "
    assert warning in second.stderr and f"user {other_user.name}," in second.stderr
    assert second.stderr.index(warning) < second.stderr.index("uploaded as")
    # And the other way round: the service user after root (root left files in its state dir).
    (drop / "c.png").write_bytes(media.png(seed=613))
    for leftover in (shared_tmp / "state").iterdir():
        other_user.own(leftover)
    third = other_user.cli("scan", "-c", str(config), env=KEY_ENV)
    assert third.returncode == 0, third.stderr
    assert warning in third.stderr and "user root," in third.stderr
    assert third.stderr.index(warning) < third.stderr.index("uploaded as")


def test_a_folder_root_worked_on_warns_the_service_user_through_a_claim_it_cannot_write(
    shared_tmp: Path, sandbox: Sandbox, other_user: OtherUser
):
    service_config, drop = layout(shared_tmp, sandbox, other_user)
    root_state = shared_tmp / "root-state"
    document = config_document(sandbox, root_state, [{"path": str(drop), "settle_seconds": 0.1}])
    root_config = write_config(shared_tmp / "root.yaml", document)
    (drop / "a.png").write_bytes(media.png(seed=621))
    assert cli("scan", "-c", str(root_config), env=KEY_ENV).returncode == 0
    claim = drop / ".heygen-watcher.lock"
    assert claim.stat().st_uid == 0  # root's: the service user may read it, not write it
    (drop / "b.png").write_bytes(media.png(seed=622))
    result = other_user.cli("scan", "-c", str(service_config), env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    warning = "this folder was last worked on by pid "
    assert warning in result.stderr
    assert f"user root, state directory {root_state}" in result.stderr
    assert result.stderr.index(warning) < result.stderr.index("uploaded as")
    assert read_sidecar(drop / "b.png")["status"] == "uploaded"
    assert sidecar_of(drop / "b.png").stat().st_uid == other_user.uid
