"""Outages of any length: the API or its storage not answering holds every upload (never
`failed`), is reported by `status`, `/healthz`, the metrics and the log, and everything waiting
goes up within seconds of the service coming back."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import urllib.request
from pathlib import Path

import media
import pytest
from conftest import wait_for
from daemon_helpers import (
    KEY_ENV,
    cli,
    config_document,
    read_sidecar,
    sidecar_of,
    start_cli,
    stop_cli,
    write_config,
)

from watcher.sandbox import Fault, Sandbox

# The goal: every waiting file uploaded within this long of the API answering again.
RESUME_GOAL_SECONDS = 15.0
# Short settings standing in for the real ones: a file's whole retry schedule (three attempts
# over `retry_window_seconds`) lasts 0.3 s here, so an outage of 3 s is ten of them; an hour's
# window against a ten-hour outage, or a minute's against ten minutes, is the same case.
RETRY_WINDOW = 0.3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def states(tmp_path: Path) -> dict[str, str]:
    database = tmp_path / "state" / "journal.sqlite3"
    if not database.exists():
        return {}
    try:
        with sqlite3.connect(database, timeout=5) as db:
            return dict(db.execute("SELECT path, state FROM files").fetchall())
    except sqlite3.Error:
        return {}


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def outage_config(tmp_path: Path, sandbox: Sandbox, drop: Path, port: int) -> Path:
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(drop), "settle_seconds": 0.1}],
        api={"probe_base_seconds": 0.1, "probe_max_seconds": 0.5, "timeout_seconds": 2},
        retry_window_seconds=RETRY_WINDOW,
        metrics={"listen": f"127.0.0.1:{port}"},
    )
    return write_config(tmp_path / "config.yaml", document)


def ride_out(
    tmp_path: Path,
    sandbox: Sandbox,
    drop: Path,
    *,
    start_outage: object,
    end_outage: object,
    outage_seconds: float,
    files: int = 4,
) -> tuple[float, str, dict[str, object]]:
    """Run the daemon through an outage; returns (seconds from the end of the outage to the
    last sidecar, the daemon's log, `status --json` during the outage)."""
    port = free_port()
    config = outage_config(tmp_path, sandbox, drop, port)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        wait_for(lambda: healthz_or_none(port), timeout=20, what="the metrics server")
        start_outage()  # type: ignore[operator]
        paths = [drop / f"f{n}.png" for n in range(files)]
        for n, path in enumerate(paths):
            path.write_bytes(media.png(seed=400 + n))
        wait_for(
            lambda: sum(1 for s in states(tmp_path).values() if s == "held") == files,
            timeout=30,
            what="every file held",
        )
        began = time.monotonic()
        status = json.loads(cli("status", "-c", str(config), "--json").stdout)
        code, body = healthz(port)
        assert code == 503 and "unreachable" in body, body
        assert metric(port, "heygen_watcher_api_unreachable") == 1
        assert (metric(port, "heygen_watcher_api_unreachable_since_seconds") or 0) > 0
        # Outlast the files' whole retry schedule many times over; no file may fail.
        while time.monotonic() - began < outage_seconds:
            assert "failed" not in states(tmp_path).values()
            time.sleep(0.1)
        assert set(states(tmp_path).values()) == {"held"}
        end_outage()  # type: ignore[operator]
        back = time.monotonic()
        for path in paths:
            wait_for(lambda p=path: sidecar_of(p).exists(), timeout=60, what=f"{path.name}")
        resumed_after = time.monotonic() - back
        assert healthz(port)[0] == 200
        assert metric(port, "heygen_watcher_api_unreachable") == 0
        code, _, log = stop_cli(process)
    finally:
        process.kill()
    assert code == 0, log
    for path in paths:
        assert read_sidecar(path)["status"] == "uploaded"
    assert len(sandbox.assets) == files
    return resumed_after, log, status


def healthz_or_none(port: int) -> bool:
    try:
        healthz(port)
    except OSError:
        return False
    return True


def check_reported(status: dict[str, object], log: str) -> None:
    outage = status["api_unreachable"]
    assert isinstance(outage, dict) and outage["since"] and outage["last_error"]
    assert status["paused"] is True and "unreachable" in str(status["pause_reason"])
    counts = status["counts"]
    assert isinstance(counts, dict) and counts["failed"] == 0
    assert "the API is unreachable" in log and "the API answers again" in log


def test_connections_refused_for_a_while(tmp_path: Path, drop: Path, sandbox: Sandbox):
    resumed_after, log, status = ride_out(
        tmp_path,
        sandbox,
        drop,
        start_outage=sandbox.refuse_connections,
        end_outage=sandbox.accept_connections,
        outage_seconds=1.0,
    )
    check_reported(status, log)
    print(f"connection refused, 1 s: every file uploaded {resumed_after:.2f}s after")
    assert resumed_after < RESUME_GOAL_SECONDS


def test_an_outage_ten_retry_schedules_long(tmp_path: Path, drop: Path, sandbox: Sandbox):
    resumed_after, log, status = ride_out(
        tmp_path,
        sandbox,
        drop,
        start_outage=sandbox.refuse_connections,
        end_outage=sandbox.accept_connections,
        outage_seconds=10 * RETRY_WINDOW + 1.0,
        files=6,
    )
    check_reported(status, log)
    print(f"connection refused, 10 retry windows: every file uploaded {resumed_after:.2f}s after")
    assert resumed_after < RESUME_GOAL_SECONDS


def test_storage_answering_503_for_a_while(tmp_path: Path, drop: Path, sandbox: Sandbox):
    fault = Fault(server="storage", status=503, for_seconds=3600)
    resumed_after, log, status = ride_out(
        tmp_path,
        sandbox,
        drop,
        start_outage=lambda: sandbox.inject(fault),
        end_outage=sandbox.clear_faults,
        outage_seconds=10 * RETRY_WINDOW,
    )
    check_reported(status, log)
    assert "storage" in str(status["api_unreachable"])
    print(f"storage 503: every file uploaded {resumed_after:.2f}s after")
    assert resumed_after < RESUME_GOAL_SECONDS


def test_the_sandbox_refuses_connections_for_a_period(sandbox: Sandbox):
    url = sandbox.api_url
    sandbox.refuse_connections("api", seconds=0.5)
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/v2/videos/x", timeout=5)
    storage = sandbox.storage_url
    with pytest.raises(urllib.error.HTTPError):  # storage still answers (a 404)
        urllib.request.urlopen(storage + "/nothing", timeout=5)

    def answers() -> bool:
        try:
            urllib.request.urlopen(url + "/v2/videos/x", timeout=5)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    wait_for(answers, timeout=10, what="the API listening again")
    assert sandbox.api_url == url


def test_a_fault_for_a_period_applies_to_every_request_until_it_ends(sandbox: Sandbox):
    sandbox.inject(Fault(server="storage", status=503, for_seconds=0.3))
    for _ in range(3):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(sandbox.storage_url + "/nothing", timeout=5)
        assert refused.value.code == 503

    def over() -> bool:
        try:
            urllib.request.urlopen(sandbox.storage_url + "/nothing", timeout=5)
        except urllib.error.HTTPError as error:
            return error.code == 404
        return False

    wait_for(over, timeout=10, what="the fault to end")


# -- `scan` rides out an outage as the daemon does ---------------------------------------------
def scan_config(tmp_path: Path, sandbox: Sandbox, drop: Path) -> Path:
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(drop), "settle_seconds": 0.1}],
        api={"probe_base_seconds": 0.1, "probe_max_seconds": 0.5, "timeout_seconds": 2},
        retry_window_seconds=RETRY_WINDOW,
    )
    return write_config(tmp_path / "config.yaml", document)


def test_a_scan_started_during_an_outage_finishes_when_the_api_is_back(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    config = scan_config(tmp_path, sandbox, drop)
    paths = [drop / f"s{n}.png" for n in range(3)]
    for n, path in enumerate(paths):
        path.write_bytes(media.png(seed=450 + n))
    sandbox.refuse_connections()
    process = start_cli("scan", "-c", str(config), env=KEY_ENV)
    try:
        wait_for(
            lambda: list(states(tmp_path).values()) == ["held"] * len(paths),
            timeout=30,
            what="every file held",
        )
        # Well past every file's retry schedule: still held, not failed, the scan still on.
        time.sleep(RETRY_WINDOW * 5)
        assert process.poll() is None
        assert set(states(tmp_path).values()) == {"held"}
        sandbox.accept_connections()
        _, log = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, log
    assert "the API is unreachable" in log and "the API answers again" in log
    assert "this run: 3 uploaded" in log
    for path in paths:
        assert read_sidecar(path)["status"] == "uploaded"
    assert len(sandbox.assets) == len(paths)


def test_a_scan_gives_up_after_wait_for_api_with_its_files_held(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    config = scan_config(tmp_path, sandbox, drop)
    (drop / "a.png").write_bytes(media.png(seed=460))
    sandbox.refuse_connections()
    result = cli("scan", "-c", str(config), "--wait-for-api", "1", env=KEY_ENV)
    assert result.returncode == 3, result.stderr
    assert "the API is still unreachable after waiting 1s" in result.stderr
    assert set(states(tmp_path).values()) == {"held"}
    assert not sidecar_of(drop / "a.png").exists()
    # The next scan, with the API back, uploads it.
    sandbox.accept_connections()
    assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 0
    assert read_sidecar(drop / "a.png")["status"] == "uploaded"


# -- `retry` run without a daemon rides it out too, for its own files only ----------------------
def held_by_a_scan_during_an_outage(tmp_path: Path, drop: Path, sandbox: Sandbox) -> Path:
    config = scan_config(tmp_path, sandbox, drop)
    for n, name in enumerate(("a.png", "b.png")):
        (drop / name).write_bytes(media.png(seed=470 + n))
    sandbox.refuse_connections()
    assert cli("scan", "-c", str(config), "--wait-for-api", "0", env=KEY_ENV).returncode == 3
    assert set(states(tmp_path).values()) == {"held"}
    return config


def test_a_retry_during_an_outage_waits_for_the_api_and_retries_only_its_paths(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    config = held_by_a_scan_during_an_outage(tmp_path, drop, sandbox)
    process = start_cli("retry", "-c", str(config), str(drop / "a.png"), env=KEY_ENV)
    try:
        # Well past the file's retry schedule: the retry still waits for the API.
        time.sleep(RETRY_WINDOW * 5)
        assert process.poll() is None
        sandbox.accept_connections()
        _, log = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, log
    assert read_sidecar(drop / "a.png")["status"] == "uploaded"
    # b.png was not asked for: it stays held for the next scan or run.
    assert states(tmp_path)[str(drop / "b.png")] == "held"
    assert not sidecar_of(drop / "b.png").exists()
    assert len(sandbox.assets) == 1


def test_a_retry_gives_up_after_wait_for_api_with_its_files_held(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    config = held_by_a_scan_during_an_outage(tmp_path, drop, sandbox)
    result = cli("retry", "-c", str(config), "--wait-for-api", "1", env=KEY_ENV)
    assert result.returncode == 3, result.stderr
    assert "the API is still unreachable after waiting 1s" in result.stderr
    assert set(states(tmp_path).values()) == {"held"}
