"""The daemon as a systemd service: sd_notify, watchdog, reload, metrics, health, exit codes."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import media
import pytest
import requests
from conftest import wait_for
from daemon_helpers import KEY_ENV, config_document, start_cli, stop_cli, wait_sidecar, write_config

from watcher.sandbox import Fault, Sandbox


class NotifyListener:
    """A real AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self.socket.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def having(self, name: str, value: str | None = None) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return [
                (at, fields)
                for at, fields in self.messages
                if name in fields and (value is None or fields[name] == value)
            ]

    def close(self) -> None:
        self._stop.set()
        self.socket.close()
        self._thread.join(timeout=2)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    notify = NotifyListener(str(tmp_path / "notify.sock"))
    yield notify
    notify.close()


def service_config(tmp_path: Path, sandbox: Sandbox, folders: list[Path], **top: object) -> Path:
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(folder), "settle_seconds": 0.1} for folder in folders],
        **top,
    )
    return write_config(tmp_path / "config.yaml", document)


def run_service(config: Path, notify_socket: str, **env: str):
    return start_cli(
        "run",
        "-c",
        str(config),
        "--log-format",
        "json",
        env={**KEY_ENV, "NOTIFY_SOCKET": notify_socket, **env},
    )


# -- sd_notify ----------------------------------------------------------------------------------
def test_ready_status_and_stopping(
    tmp_path: Path, drop: Path, sandbox: Sandbox, listener: NotifyListener
):
    (drop / "waiting.png").write_bytes(media.png(seed=1))
    process = run_service(service_config(tmp_path, sandbox, [drop]), listener.address)
    try:
        wait_for(lambda: listener.having("READY", "1"), timeout=20, what="READY=1")
        # Ready means watched: a file dropped now is seen.
        (drop / "after.png").write_bytes(media.png(seed=2))
        wait_sidecar(drop / "after.png", timeout=20)
        wait_for(
            lambda: any("2 uploaded" in f["STATUS"] for _, f in listener.having("STATUS")),
            timeout=20,
            what="a STATUS with the counts",
        )
        code, _, err = stop_cli(process)
    finally:
        process.kill()
    assert code == 0, err
    assert listener.having("STOPPING", "1")
    assert not listener.having("WATCHDOG")  # no WATCHDOG_USEC: no pings


def test_abstract_notify_socket(tmp_path: Path, drop: Path, sandbox: Sandbox):
    listener = NotifyListener(f"@heygen-watcher-test-{time.monotonic_ns()}")
    try:
        process = run_service(service_config(tmp_path, sandbox, [drop]), listener.address)
        try:
            wait_for(lambda: listener.having("READY", "1"), timeout=20, what="READY=1")
            stop_cli(process)
        finally:
            process.kill()
    finally:
        listener.close()


def test_watchdog_pings_at_half_the_interval(
    tmp_path: Path, drop: Path, sandbox: Sandbox, listener: NotifyListener
):
    process = run_service(
        service_config(tmp_path, sandbox, [drop]), listener.address, WATCHDOG_USEC="200000"
    )
    try:
        wait_for(lambda: listener.having("READY", "1"), timeout=20)
        first = len(listener.having("WATCHDOG"))
        wait_for(
            lambda: len(listener.having("WATCHDOG")) >= first + 10, timeout=30, what="ten pings"
        )
        stop_cli(process)
    finally:
        process.kill()
    # Pings come at half of WATCHDOG_USEC (0.1 s). The median gap is robust to the odd late
    # ping on a loaded machine, and tells 0.1 s from the whole interval (0.2 s).
    times = [at for at, _ in listener.having("WATCHDOG")]
    gaps = sorted(later - earlier for earlier, later in itertools.pairwise(times))
    assert 0.07 < gaps[len(gaps) // 2] < 0.15


def test_watchdog_pings_stop_while_the_pipeline_is_stuck(
    tmp_path: Path, drop: Path, sandbox: Sandbox, listener: NotifyListener
):
    sandbox.inject(Fault(method="PUT", server="storage", delay_seconds=60))
    config = service_config(
        tmp_path,
        sandbox,
        [drop],
        stall_seconds=0.5,
        shutdown_timeout_seconds=0.2,
        metrics={"listen": "127.0.0.1:0"},
    )
    process = run_service(config, listener.address, WATCHDOG_USEC="200000")
    try:
        wait_for(lambda: listener.having("READY", "1"), timeout=20)
        (drop / "a.png").write_bytes(media.png(seed=3))
        wait_for(lambda: any(r.method == "PUT" for r in sandbox.requests), timeout=20)
        # Once the held PUT has gone half a second without a sign of life, pings stop.
        time_stuck = time.monotonic() + 0.7
        wait_for(lambda: time.monotonic() > time_stuck, timeout=5)
        count = len(listener.having("WATCHDOG"))
        quiet_until = time.monotonic() + 1.0
        while time.monotonic() < quiet_until:
            assert len(listener.having("WATCHDOG")) == count, "pinged while stuck"
            time.sleep(0.05)
        wait_for(
            lambda: any("stuck" in f["STATUS"] for _, f in listener.having("STATUS")),
            timeout=10,
            what="a STATUS saying stuck",
        )
        code, _, _ = stop_cli(process)
    finally:
        process.kill()
    assert code == 0


# -- reload -------------------------------------------------------------------------------------
def test_sighup_adds_a_folder(
    tmp_path: Path, drop: Path, sandbox: Sandbox, listener: NotifyListener
):
    second = tmp_path / "second"
    second.mkdir()
    config = service_config(tmp_path, sandbox, [drop])
    process = run_service(config, listener.address)
    try:
        wait_for(lambda: listener.having("READY", "1"), timeout=20)
        (second / "early.png").write_bytes(media.png(seed=4))
        service_config(tmp_path, sandbox, [drop, second])
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: listener.having("RELOADING", "1"), timeout=20, what="RELOADING=1")
        wait_for(lambda: len(listener.having("READY", "1")) >= 2, timeout=20, what="READY again")
        reloading_at = listener.having("RELOADING", "1")[0][0]
        assert listener.having("RELOADING", "1")[0][1].get("MONOTONIC_USEC")
        assert listener.having("READY", "1")[-1][0] >= reloading_at
        wait_sidecar(second / "early.png", timeout=20)  # what was already there is scanned
        (second / "late.png").write_bytes(media.png(seed=5))
        wait_sidecar(second / "late.png", timeout=20)
        stop_cli(process)
    finally:
        process.kill()


def test_a_bad_config_on_reload_keeps_the_old_one(
    tmp_path: Path, drop: Path, sandbox: Sandbox, listener: NotifyListener
):
    config = service_config(tmp_path, sandbox, [drop])
    process = run_service(config, listener.address)
    try:
        wait_for(lambda: listener.having("READY", "1"), timeout=20)
        config.write_text("folders: [{path: /nonexistent/folder}]\napi: {colour: red}\n")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: len(listener.having("READY", "1")) >= 2, timeout=20)
        (drop / "still.png").write_bytes(media.png(seed=6))
        wait_sidecar(drop / "still.png", timeout=20)
        code, _, err = stop_cli(process)
    finally:
        process.kill()
    assert code == 0
    refusals = [json.loads(line) for line in err.splitlines() if "reload refused" in line]
    assert any("folders[0].path" in r["message"] for r in refusals)
    assert any("api.colour" in r["message"] for r in refusals)


# -- which CPUs ---------------------------------------------------------------------------------
def cpus_of_threads(pid: int) -> set[str]:
    """Each thread's allowed CPUs, as the kernel lists them (``0-1``, ``1``)."""
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{task}/status").read_text()
        except FileNotFoundError:
            continue  # a thread that ended
        found.add(re.search(r"^Cpus_allowed_list:\s*(\S+)$", status, re.M).group(1))  # type: ignore[union-attr]
    return found


def test_the_threads_stay_on_one_cpu_until_a_reload_spreads_them(
    tmp_path: Path, drop: Path, sandbox: Sandbox, listener: NotifyListener
):
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("one CPU here: there is nothing to keep the threads on")
    everywhere = Path("/proc/self/status").read_text().split("Cpus_allowed_list:")[1].split()[0]
    config = service_config(tmp_path, sandbox, [drop])
    process = run_service(config, listener.address)
    try:
        wait_for(lambda: listener.having("READY", "1"), timeout=20)
        (drop / "a.png").write_bytes(media.png(seed=21))
        wait_sidecar(drop / "a.png", timeout=20)  # the workers it started are placed too
        placed = cpus_of_threads(process.pid)
        assert len(placed) == 1 and int(placed.pop()) in allowed
        service_config(tmp_path, sandbox, [drop], single_cpu=False)
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: cpus_of_threads(process.pid) == {everywhere}, 20, "threads on every CPU")
        code, _, err = stop_cli(process)
    finally:
        process.kill()
    assert code == 0
    messages = [json.loads(line)["message"] for line in err.splitlines()]
    assert any(m.startswith("threads kept on CPU") for m in messages)
    assert f"threads spread over CPUs {everywhere}" in messages


# -- metrics and health -------------------------------------------------------------------------
def metrics_address(process, seen: list[str]) -> str:
    assert process.stderr is not None

    def find() -> str | None:
        line = process.stderr.readline()
        seen.append(line)
        match = re.search(r"http://(127\.0\.0\.1:\d+)/metrics", line)
        return match.group(1) if match else None

    return wait_for(find, timeout=20, what="the metrics address")  # type: ignore[return-value]


def test_metrics_and_health(tmp_path: Path, drop: Path, sandbox: Sandbox, listener: NotifyListener):
    config = service_config(tmp_path, sandbox, [drop], metrics={"listen": "127.0.0.1:0"})
    process = run_service(config, listener.address)
    seen: list[str] = []
    try:
        address = metrics_address(process, seen)
        wait_for(lambda: listener.having("READY", "1"), timeout=20)
        health = requests.get(f"http://{address}/healthz", timeout=5)
        assert health.status_code == 200
        (drop / "a.png").write_bytes(media.png(seed=7))
        (drop / "b.txt").write_bytes(b"not media\n")
        wait_sidecar(drop / "a.png", timeout=20)
        wait_sidecar(drop / "b.txt", timeout=20)

        def scraped() -> str | None:
            text = requests.get(f"http://{address}/metrics", timeout=5).text
            return text if 'heygen_watcher_queue_depth{state="uploaded"} 1.0' in text else None

        text = wait_for(scraped, timeout=20, what="queue depth in the scrape")
        assert 'heygen_watcher_uploads_total{content_type="image/png"} 1.0' in text
        assert "heygen_watcher_upload_bytes_total" in text
        assert 'heygen_watcher_rejected_total{reason="unsupported type"} 1.0' in text
        assert "heygen_watcher_upload_seconds_count 1.0" in text
        # A wrong key pauses uploads: /healthz says so with a 503.
        sandbox.api_key = "rotated-elsewhere"
        (drop / "c.png").write_bytes(media.png(seed=8))

        def unhealthy() -> str | None:
            answer = requests.get(f"http://{address}/healthz", timeout=5)
            return answer.text if answer.status_code == 503 else None

        reason = wait_for(unhealthy, timeout=20, what="a 503 from /healthz")
        assert "uploads paused" in reason
        code, _, _ = stop_cli(process)
    finally:
        process.kill()
    assert code == 0


# -- exit codes ---------------------------------------------------------------------------------
def test_a_fatal_start_error_is_one_line_and_non_zero(tmp_path: Path, drop: Path, sandbox: Sandbox):
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")
    document = config_document(sandbox, blocker, [{"path": str(drop)}])
    process = start_cli("run", "-c", str(write_config(tmp_path / "c.yaml", document)), env=KEY_ENV)
    _, err = process.communicate(timeout=30)
    assert process.returncode != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert str(blocker) in lines[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
            + "".join(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 10))
            + "folders: *a9\n",
            "more than 100000 values once aliases are expanded",
        ),
        ("folders: " + "[" * 10_000 + "]" * 10_000 + "\n", "nested more than 64 levels deep"),
    ],
    ids=["billion-laughs", "deep-nesting"],
)
def test_a_hostile_config_on_reload_keeps_the_old_one(
    tmp_path: Path,
    drop: Path,
    sandbox: Sandbox,
    listener: NotifyListener,
    text: str,
    reason: str,
):
    config = service_config(tmp_path, sandbox, [drop])
    process = run_service(config, listener.address)
    try:
        wait_for(lambda: listener.having("READY", "1"), timeout=20)
        config.write_text(text, encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: len(listener.having("READY", "1")) >= 2, timeout=20)
        (drop / "still.png").write_bytes(media.png(seed=7))
        wait_sidecar(drop / "still.png", timeout=20)
        code, _, err = stop_cli(process)
    finally:
        process.kill()
    assert code == 0
    refusals = [json.loads(line) for line in err.splitlines() if "reload refused" in line]
    assert len(refusals) == 1 and reason in refusals[0]["message"], err
