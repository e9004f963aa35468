"""heygen-watcher as a user runs it, under a benchmark: the daemon in its own process on a
config written for it, the settings a row names, and the burst of small files dropped at it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import yaml
from common import API_KEY, NotifyListener, wait_until

from watcher.config import ApiConfig


# -- files --------------------------------------------------------------------------------------
def png_bytes(seed: int) -> bytes:
    """A small, unique PNG (unique: the asset cache must not turn uploads into reuses)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\0" + bytes((seed * 7 + x + y) % 256 for x in range(48)) for y in range(16))
    header = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    extra = chunk(b"tEXt", b"seed\0" + str(seed).encode())
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def sidecars_in(folder: Path) -> int:
    return sum(1 for entry in os.scandir(folder) if entry.name.endswith(".asset.json"))


# -- the daemon as a user runs it ---------------------------------------------------------------
class Daemon:
    """`heygen-watcher run` in its own process, on a config written for it."""

    # --profile: py-spy samples of each daemon run go here (set once, by bench/run.py).
    profile_dir: ClassVar[Path | None] = None

    def __init__(
        self, work: Path, api_url: str, folders: list[dict[str, Any]], **settings: Any
    ) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        api = {"base_url": api_url, **settings.pop("api", {})}
        config = {"api": api, "state_dir": str(work / "state"), "folders": folders, **settings}
        self.config_path = work / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.listener = NotifyListener(work / "notify.sock")
        self.log = open(work / "daemon.log", "w")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.profiler: subprocess.Popen[bytes] | None = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "watcher", "run", "-c", str(self.config_path)],
            stderr=self.log,
            env={**os.environ, "HEYGEN_API_KEY": API_KEY, "NOTIFY_SOCKET": str(self.listener.path)},
        )

    def wait_ready(self, timeout: float = 120) -> float:
        """Seconds from start to READY=1."""
        wait_until(
            lambda: self.listener.ready_at is not None or self.process.poll() is not None,
            timeout,
            "the daemon to be ready",
            poll=0.01,
        )
        if self.listener.ready_at is None:
            raise RuntimeError(f"the daemon exited: see {self.work / 'daemon.log'}")
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            output = self.profile_dir / f"{self.work.name}.txt"
            self.profiler = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(self.process.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--threads",
                    # Only threads holding the interpreter lock: where the daemon spends CPU
                    # in Python (threads blocked on a socket or a lock are left out).
                    "--gil",
                    "-o",
                    str(output),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return self.listener.ready_at - self.started

    def stop(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)
            self.profiler.wait(timeout=60)
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.listener.close()
        self.log.close()


def fast_api(concurrency: int, protocol: str = "v1-presigned") -> dict[str, Any]:
    return {"upload_protocol": protocol, "concurrency": concurrency, "timeout_seconds": 120}


# -- the burst ----------------------------------------------------------------------------------
def drop_burst(folder: Path, count: int, seed: int) -> float:
    """Write ``count`` files at once; returns when the writing started."""
    payloads = [png_bytes(seed + i) for i in range(count)]
    started = time.monotonic()
    for index, data in enumerate(payloads):
        with open(folder / f"burst-{seed + index:06}.png", "wb") as out:
            out.write(data)
    return started


def settings_text(api: dict[str, Any], trust_close_write: bool, single_cpu: bool = True) -> str:
    """The row's settings, as a user would write them (unset ones are the defaults)."""
    defaults = ApiConfig()
    concurrency = api.get("concurrency", defaults.concurrency)
    adaptive = getattr(defaults, "adaptive_concurrency", False) and api.get(
        "adaptive_concurrency", True
    )
    limit = f"concurrency ≤ {concurrency} adaptive" if adaptive else f"concurrency {concurrency}"
    protocol = api.get("upload_protocol", defaults.upload_protocol)
    trust = "trust_close_write" if trust_close_write else "trust_close_write off"
    cpus = "single_cpu" if single_cpu else "single_cpu off"
    origin = "tuned" if "concurrency" in api else "defaults"
    return f"{origin}: {protocol}, {limit}, {trust}, {cpus}"
