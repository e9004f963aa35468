"""What every benchmark needs: a sandbox in its own process, a notify socket to know when the
daemon is ready, the kernel's view of a process's memory and CPU time, and the row of a results
table."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

BENCH = Path(__file__).resolve().parent
API_KEY = "bench"
MIB = 1 << 20


@contextmanager
def sandbox_process(data_dir: Path) -> Iterator[tuple[str, str]]:
    """Start the sandbox in a child process (its own interpreter lock); yields its API and
    storage URLs."""
    command = [
        sys.executable,
        "-m",
        "watcher.sandbox",
        "--api-key",
        API_KEY,
        "--data-dir",
        str(data_dir),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        api_url = url_from(process.stdout.readline())
        storage_url = url_from(process.stdout.readline())
        yield api_url, storage_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def url_from(line: str) -> str:
    match = re.search(r"http://\S+", line)
    if match is None:
        raise RuntimeError(f"the sandbox did not print a URL: {line!r}")
    return match.group(0)


def sandbox_settings(api_url: str, **settings: float) -> None:
    requests.post(f"{api_url}/_sandbox/settings", json=settings, timeout=10).raise_for_status()


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, poll: float = 0.002
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


class NotifyListener:
    """A datagram socket posing as systemd's notify socket: tells when the daemon is READY."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path.unlink(missing_ok=True)  # left by an earlier run in the same folder
        self._socket.bind(str(path))
        self._socket.settimeout(0.2)
        self.ready_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if b"READY=1" in data.split(b"\n") and self.ready_at is None:
                self.ready_at = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._socket.close()
        self._thread.join(timeout=2)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process and its waited-for children."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    """One line of a results table: a measure, ours against its baseline where there is one."""

    scenario: str
    measure: str
    ours: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None  # ours against the baseline, as the "must" and "aim" read it
    must: str = ""
    aim: str = ""
    ok: bool | None = None  # the must; None where there is none
