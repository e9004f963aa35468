"""Never lose a file, never upload one twice: crashes, retries, back-pressure, the asset cache."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import media
import pytest
from conftest import SANDBOX_KEY, wait_for
from daemon_helpers import (
    KEY_ENV,
    cli,
    config_document,
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
from watcher.state.journal_sqlite import SqliteJournal as Journal


def journal_state(tmp_path: Path, path: Path) -> str | None:
    """Read the journal from outside the daemon, as `status` does (WAL allows it)."""
    database = tmp_path / "state" / "journal.sqlite3"
    if not database.exists():
        return None
    try:
        with sqlite3.connect(database, timeout=5) as db:
            row = db.execute("SELECT state FROM files WHERE path = ?", (str(path),)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def in_flight(sandbox: Sandbox, method: str, prefix: str) -> bool:
    return any(
        r.method == method and r.path.startswith(prefix) and r.status == 0 for r in sandbox.requests
    )


def config_file(
    tmp_path: Path, sandbox: Sandbox, drop: Path, protocol: str = "v1-presigned", **top: object
) -> Path:
    api = {"upload_protocol": protocol, **top.pop("api", {})}  # type: ignore[dict-item]
    document = config_document(
        sandbox, tmp_path / "state", [{"path": str(drop), "settle_seconds": 0.1}], api=api, **top
    )
    return write_config(tmp_path / "config.yaml", document)


def run_to_completion(config: Path, *files: Path) -> None:
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        for path in files:
            wait_sidecar(path, timeout=30)
        code, _, err = stop_cli(process)
    finally:
        process.kill()
    assert code == 0, err


# -- kill -9 at each state boundary -------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["v1-presigned", "v3-direct"])
def test_kill_9_while_the_slot_request_is_in_flight(
    tmp_path: Path, drop: Path, sandbox: Sandbox, protocol: str
):
    config = config_file(tmp_path, sandbox, drop, protocol)
    create = "/v1/asset" if protocol == "v1-presigned" else "/v3/assets/direct-uploads"
    sandbox.inject(Fault(method="POST", path_prefix=create, delay_seconds=30))
    data = media.png(seed=1)
    (drop / "a.png").write_bytes(data)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    wait_for(lambda: in_flight(sandbox, "POST", create), timeout=20, what="the held request")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    sandbox.clear_faults()
    run_to_completion(config, drop / "a.png")
    assert len(uploads_of(sandbox, data)) == 1
    assert len(sandbox.assets) == 1


@pytest.mark.parametrize("protocol", ["v1-presigned", "v3-direct"])
def test_kill_9_during_the_put_reuses_the_recorded_slot(
    tmp_path: Path, drop: Path, sandbox: Sandbox, protocol: str
):
    config = config_file(tmp_path, sandbox, drop, protocol)
    sandbox.inject(Fault(method="PUT", server="storage", delay_seconds=30))
    data = media.png(seed=2)
    (drop / "a.png").write_bytes(data)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    wait_for(lambda: in_flight(sandbox, "PUT", "/"), timeout=20, what="the held PUT")
    assert journal_state(tmp_path, drop / "a.png") == "uploading"
    slot_path = next(r.path for r in sandbox.requests if r.method == "PUT")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    sandbox.clear_faults()
    run_to_completion(config, drop / "a.png")
    puts = [r for r in sandbox.requests if r.method == "PUT" and r.status == 200]
    assert [r.path for r in puts] == [slot_path]  # the same slot, PUT again
    (asset,) = sandbox.assets.values()
    assert read_sidecar(drop / "a.png")["asset_id"] == asset.asset_id
    assert asset.sha256 == uploads_of(sandbox, data)[0].sha256


def test_kill_9_after_storage_finished_the_put_v1(tmp_path: Path, drop: Path, sandbox: Sandbox):
    # The storage stores the bytes but the answer is lost; the daemon dies before retrying.
    config = config_file(
        tmp_path, sandbox, drop, api={"backoff_base_seconds": 60, "backoff_max_seconds": 60}
    )
    sandbox.inject(Fault(method="PUT", server="storage", drop_response=True))
    data = media.png(seed=3)
    (drop / "a.png").write_bytes(data)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    wait_for(lambda: sandbox.assets, timeout=20, what="the bytes to be stored")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    first = next(iter(sandbox.assets))
    run_to_completion(config, drop / "a.png")
    assert list(sandbox.assets) == [first]  # PUT again to the same slot: still one asset
    assert sandbox.assets[first].put_count == 2
    assert read_sidecar(drop / "a.png")["asset_id"] == first


def test_kill_9_while_v3_complete_is_in_flight(tmp_path: Path, drop: Path, sandbox: Sandbox):
    config = config_file(tmp_path, sandbox, drop, "v3-direct")
    # Faults apply in order: the create takes the harmless first one, the complete the second.
    sandbox.inject(
        Fault(method="POST", path_prefix="/v3/assets/direct-uploads", delay_seconds=0.01)
    )
    sandbox.inject(Fault(method="POST", path_prefix="/v3/assets/", delay_seconds=30))
    (drop / "a.png").write_bytes(media.png(seed=4))
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    wait_for(
        lambda: in_flight(sandbox, "POST", "/v3/assets/") and sandbox.assets,
        timeout=20,
        what="the complete call, after the PUT",
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    sandbox.clear_faults()
    sandbox.clear_requests()
    run_to_completion(config, drop / "a.png")
    assert len(sandbox.assets) == 1
    assert not [r for r in sandbox.requests if r.method == "PUT"]  # completed, not re-sent


def read_sidecar_or_none(path: Path) -> dict | None:
    try:
        return read_sidecar(path)
    except (OSError, ValueError):
        return None


def test_sigterm_aborts_a_long_upload_which_resumes_at_the_next_start(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    config = config_file(tmp_path, sandbox, drop, shutdown_timeout_seconds=0.3)
    sandbox.inject(Fault(method="PUT", server="storage", delay_seconds=30))
    (drop / "a.png").write_bytes(media.png(seed=5))
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    wait_for(lambda: in_flight(sandbox, "PUT", "/"), timeout=20, what="the held PUT")
    started = time.monotonic()
    code, _, err = stop_cli(process)
    assert code == 0, err
    assert time.monotonic() - started < 25  # cut after 0.3 s, not after the PUT's 30 s
    assert not sidecar_of(drop / "a.png").exists()
    sandbox.clear_faults()
    run_to_completion(config, drop / "a.png")
    assert len(sandbox.assets) == 1


# -- backlog and restarts -----------------------------------------------------------------------
def test_backlog_at_start_then_a_restart_uploads_nothing_new(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    files = {drop / f"b{i:02}.wav": media.wav(seed=i) for i in range(25)}
    for path, data in files.items():
        path.write_bytes(data)
    config = make_config(sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}])
    with running(config):
        for path in files:
            wait_sidecar(path)
    assert len(sandbox.assets) == 25
    sandbox.clear_requests()
    with running(config) as daemon:
        daemon.wait_until_idle()
    assert sandbox.requests == []


# -- retries and back-pressure ------------------------------------------------------------------
def test_a_429_storm_pauses_every_worker_together(tmp_path: Path, drop: Path, sandbox: Sandbox):
    # More refusals than workers, and files arriving one by one during the storm: a worker that
    # did not share the pause would send its slot request while another waits out Retry-After.
    storm = 10
    sandbox.inject(
        Fault(method="POST", path_prefix="/v1/asset", status=429, retry_after="1", count=storm)
    )
    config = make_config(
        sandbox,
        tmp_path,
        [{"path": str(drop), "settle_seconds": 0.1}],
        api={"concurrency": 4, "max_attempts": 8},
        retry_window_seconds=2,
    )
    files = [drop / f"s{i}.png" for i in range(8)]
    with running(config):
        for seed, path in enumerate(files):
            path.write_bytes(media.png(seed=100 + seed))
            time.sleep(0.1)  # pacing the writer, not waiting for the daemon
        for path in files:
            wait_sidecar(path, timeout=60, status="uploaded")
    creates = [r for r in sandbox.requests if r.path == "/v1/asset"]
    refused = sorted(r.at for r in creates if r.status == 429)
    assert len(refused) == storm
    # After any 429, nobody sends a slot request until its Retry-After (1 s) has passed. (The
    # first 0.2 s leave room for requests that were already on their way.)
    for at in refused:
        during = [r for r in creates if at + 0.2 < r.at < at + 0.9]
        assert during == [], f"{len(during)} request(s) sent during the pause after {at}"
    assert len(sandbox.assets) == 8


def test_transient_failures_retry_then_fail_with_a_reason_then_retry_on_demand(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    sandbox.inject(Fault(method="PUT", server="storage", status=503, count=1000))
    config = make_config(
        sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}], retry_window_seconds=0.6
    )
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=6))
        document = wait_sidecar(drop / "a.png", status="failed")
        row = daemon.journal.get(str(drop / "a.png"))
        assert row is not None and row.state == "failed" and row.attempts == 3
    assert "503" in document["error"]
    assert "heygen-watcher retry" in document["retry"]
    assert sandbox.assets == {}
    puts = [r for r in sandbox.requests if r.method == "PUT"]
    assert len(puts) == 3 * 3  # three file attempts of three quick tries each
    sandbox.clear_faults()
    config_path = write_config(
        tmp_path / "c.yaml",
        config_document(sandbox, tmp_path / "state", [{"path": str(drop), "settle_seconds": 0.1}]),
    )
    result = cli("retry", "-c", str(config_path), str(drop / "a.png"), env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    assert read_sidecar(drop / "a.png")["status"] == "uploaded"
    assert len(sandbox.assets) == 1


def test_a_file_retrying_recovers_once_the_fault_clears(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=500, count=3))
    config = make_config(
        sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}], retry_window_seconds=0.5
    )
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=7))
        wait_for(
            lambda: (row := daemon.journal.get(str(drop / "a.png"))) and row.state == "retrying",
            what="a scheduled retry",
        )
        document = wait_sidecar(drop / "a.png")
    assert document["status"] == "uploaded"


def test_connection_resets_do_not_lose_the_file(tmp_path: Path, drop: Path, sandbox: Sandbox):
    sandbox.inject(Fault(method="PUT", server="storage", reset=True, count=2))
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", reset=True))
    config = make_config(sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}])
    with running(config):
        (drop / "a.png").write_bytes(media.png(seed=8))
        assert wait_sidecar(drop / "a.png")["status"] == "uploaded"
    assert len(sandbox.assets) == 1


def test_401_pauses_uploads_until_the_key_file_changes(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    key_file = tmp_path / "key"
    key_file.write_text("old-key")
    os.chmod(key_file, 0o600)
    config = config_file(tmp_path, sandbox, drop, api={"api_key_file": str(key_file)})
    process = start_cli("run", "-c", str(config))
    try:
        (drop / "a.png").write_bytes(media.png(seed=9))
        (drop / "b.png").write_bytes(media.png(seed=10))
        wait_for(
            lambda: (
                journal_state(tmp_path, drop / "a.png") == "held"
                and journal_state(tmp_path, drop / "b.png") == "held"
            ),
            timeout=20,
        )
        status = json.loads(cli("status", "-c", str(config), "--json").stdout)
        assert status["paused"] is True and "401" in status["pause_reason"]
        assert status["counts"]["held"] == 2 and status["counts"]["failed"] == 0
        assert not sidecar_of(drop / "a.png").exists()
        key_file.write_text(SANDBOX_KEY)
        os.utime(key_file, (time.time() + 5, time.time() + 5))  # a new mtime, whatever the clock
        wait_sidecar(drop / "a.png", timeout=20)
        wait_sidecar(drop / "b.png", timeout=20)
        code, _, err = stop_cli(process)
    finally:
        process.kill()
    assert code == 0
    assert "old-key" not in err and SANDBOX_KEY not in err
    assert "refused the key" in err
    assert len(sandbox.assets) == 2


def test_a_403_fails_that_file_and_pauses_nothing(tmp_path: Path, drop: Path, sandbox: Sandbox):
    # 403: the key is valid but this request is not permitted; re-authenticating will not help.
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=403))
    config = make_config(sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}])
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=31))
        failed = wait_sidecar(drop / "a.png", status="failed")
        (drop / "b.png").write_bytes(media.png(seed=32))
        assert wait_sidecar(drop / "b.png")["status"] == "uploaded"
        assert not daemon.pipeline.auth_pause.active
    assert "403" in failed["error"]
    assert len(sandbox.assets) == 1


def test_sighup_rereads_the_key(tmp_path: Path, drop: Path, sandbox: Sandbox):
    key_file = tmp_path / "key"
    key_file.write_text("old-key")
    os.chmod(key_file, 0o600)
    config = config_file(tmp_path, sandbox, drop, api={"api_key_file": str(key_file)})
    process = start_cli("run", "-c", str(config))
    try:
        (drop / "a.png").write_bytes(media.png(seed=11))
        wait_for(lambda: journal_state(tmp_path, drop / "a.png") == "held", timeout=20)
        sandbox.api_key = "old-key"  # the account's key was fixed on the server side
        process.send_signal(signal.SIGHUP)
        wait_sidecar(drop / "a.png", timeout=20)
        code, _, _ = stop_cli(process)
    finally:
        process.kill()
    assert code == 0


def test_same_bytes_under_two_names_reuse_the_asset(tmp_path: Path, drop: Path, sandbox: Sandbox):
    data = media.mp3(seed=12)
    config = make_config(sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}])
    with running(config):
        (drop / "one.mp3").write_bytes(data)
        first = wait_sidecar(drop / "one.mp3")
        (drop / "two.mp3").write_bytes(data)
        second = wait_sidecar(drop / "two.mp3")
    assert second["asset_id"] == first["asset_id"]
    assert second["reused"] is True and "reused" not in first
    assert len(sandbox.assets) == 1


def test_the_asset_cache_expires(tmp_path: Path, drop: Path, sandbox: Sandbox):
    data = media.mp3(seed=13)
    config = make_config(
        sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}], asset_cache_days=0.000001
    )
    with running(config):
        (drop / "one.mp3").write_bytes(data)
        first = wait_sidecar(drop / "one.mp3")
        time.sleep(0.2)  # the cache lifetime above is 0.09 s: let it pass
        (drop / "two.mp3").write_bytes(data)
        second = wait_sidecar(drop / "two.mp3")
    assert second["asset_id"] != first["asset_id"]
    assert len(sandbox.assets) == 2


def test_an_unwritable_sidecar_is_retried_without_losing_the_upload(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    blocker = sidecar_of(drop / "a.png")
    blocker.mkdir()  # a directory where the sidecar should go: every write fails
    config = make_config(
        sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}], retry_window_seconds=0.5
    )
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=14))
        wait_for(
            lambda: (
                (row := daemon.journal.get(str(drop / "a.png")))
                and row.asset_id
                and row.state == "recording"
            ),
            what="upload kept in the journal",
        )
        blocker.rmdir()
        document = wait_sidecar(drop / "a.png")
    assert document["status"] == "uploaded"
    assert len(sandbox.assets) == 1


def test_a_file_deleted_before_upload_leaves_the_queue(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", delay_seconds=0.5))
    config = make_config(sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}])
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=15))
        wait_for(lambda: in_flight(sandbox, "POST", "/v1/asset"), what="the slot request")
        (drop / "a.png").unlink()
        wait_for(lambda: daemon.journal.get(str(drop / "a.png")) is None, what="row dropped")
        daemon.wait_until_idle()
    assert sandbox.assets == {}


def test_a_file_changed_during_its_upload_is_uploaded_again(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", delay_seconds=0.5))
    config = make_config(sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}])
    first, second = media.png(seed=16), media.png(seed=17)
    with running(config):
        (drop / "a.png").write_bytes(first)
        wait_for(lambda: in_flight(sandbox, "POST", "/v1/asset"), what="the slot request")
        (drop / "a.png").write_bytes(second)
        new_sha256 = hashlib.sha256(second).hexdigest()
        wait_for(
            lambda: (read_sidecar_or_none(drop / "a.png") or {}).get("sha256") == new_sha256,
            what="a sidecar for the new bytes",
        )
    document = read_sidecar(drop / "a.png")
    assert document["status"] == "uploaded"
    (asset,) = uploads_of(sandbox, second)
    assert document["asset_id"] == asset.asset_id


# -- the journal --------------------------------------------------------------------------------
def test_a_corrupt_journal_is_a_clear_error_and_can_be_rebuilt(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    config = config_file(tmp_path, sandbox, drop)
    (drop / "a.png").write_bytes(media.png(seed=18))
    (drop / "b.txt").write_bytes(b"words\n")
    run_to_completion(config, drop / "a.png", drop / "b.txt")
    database = tmp_path / "state" / "journal.sqlite3"
    database.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    result = cli("run", "-c", str(config), env=KEY_ENV)
    assert result.returncode == 2
    assert "journal" in result.stderr and "--rebuild-journal" in result.stderr
    assert "Traceback" not in result.stderr
    sandbox.clear_requests()
    result = cli("scan", "-c", str(config), "--rebuild-journal", env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    assert sandbox.requests == []
    kept = [p.name for p in database.parent.iterdir() if ".broken-" in p.name]
    assert kept and kept[0].startswith("journal.sqlite3.broken-")
    journal = Journal(database)
    try:
        assert journal.counts() == {"uploaded": 1, "rejected": 1}
    finally:
        journal.close()
    # The asset cache came back too: the same bytes under another name are not uploaded again.
    (drop / "copy.png").write_bytes((drop / "a.png").read_bytes())
    result = cli("scan", "-c", str(config), env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    assert read_sidecar(drop / "copy.png")["reused"] is True
    assert len(sandbox.assets) == 1


def test_two_daemons_cannot_share_a_state_directory(tmp_path: Path, drop: Path, sandbox: Sandbox):
    config = config_file(tmp_path, sandbox, drop)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        wait_for(lambda: (tmp_path / "state" / "lock").exists(), timeout=20)
        wait_for(lambda: (tmp_path / "state" / "lock").read_text().strip(), timeout=20)
        result = cli("run", "-c", str(config), env=KEY_ENV)
        # A scan does not race the daemon: it asks the daemon to look through the folders.
        handed = cli("scan", "-c", str(config), env=KEY_ENV)
        stop_cli(process)
    finally:
        process.kill()
    assert result.returncode == 2
    assert "another heygen-watcher" in result.stderr
    assert handed.returncode == 0, handed.stderr
    assert "the running daemon" in handed.stdout


def test_status_json_while_running(tmp_path: Path, drop: Path, sandbox: Sandbox):
    config = config_file(tmp_path, sandbox, drop)
    (drop / "a.png").write_bytes(media.png(seed=19))
    (drop / "b.txt").write_bytes(b"words\n")
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        wait_sidecar(drop / "a.png", timeout=20)
        wait_sidecar(drop / "b.txt", timeout=20)
        result = cli("status", "-c", str(config), "--json")
        human = cli("status", "-c", str(config))
        stop_cli(process)
    finally:
        process.kill()
    report = json.loads(result.stdout)
    assert report["running"] is True
    assert report["counts"]["uploaded"] == 1 and report["counts"]["rejected"] == 1
    assert report["counts"]["failed"] == 0 and report["paused"] is False
    assert "1 uploaded" in human.stdout and "daemon running" in human.stdout
