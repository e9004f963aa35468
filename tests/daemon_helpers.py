"""Running a real daemon (in-process, or as a subprocess) against a real sandbox and folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from conftest import SANDBOX_KEY, wait_for

from watcher.config import Config, parse_config
from watcher.config.apikey import ApiKey
from watcher.sandbox import Sandbox
from watcher.service.daemon import Daemon

# The environment a daemon subprocess needs to reach the sandbox.
KEY_ENV = {"HEYGEN_API_KEY": SANDBOX_KEY}

FAST_API = {
    "timeout_seconds": 5,
    "max_attempts": 3,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.05,
    "concurrency": 2,
}


def config_document(
    sandbox: Sandbox, state_dir: Path, folders: list[dict[str, Any]], **top: Any
) -> dict[str, Any]:
    api = {
        "base_url": sandbox.api_url,
        "upload_base_url": sandbox.upload_url,
        **FAST_API,
        **top.pop("api", {}),
    }
    document: dict[str, Any] = {"api": api, "state_dir": str(state_dir), "folders": folders}
    document.update(top)
    return document


def make_config(
    sandbox: Sandbox, tmp_path: Path, folders: list[dict[str, Any]], **top: Any
) -> Config:
    document = config_document(sandbox, tmp_path / "state", folders, **top)
    return parse_config(document, "test-config.yaml", tmp_path)


def write_config(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@contextmanager
def running(config: Config, **daemon_options: Any) -> Iterator[Daemon]:
    daemon = Daemon(config, key=ApiKey(SANDBOX_KEY, "test"), **daemon_options)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def scan_once(config: Config) -> None:
    """One full pass over every folder, waited for: afterwards every file there has been
    looked at, so a negative check ("not uploaded") cannot pass merely by being early."""
    daemon = Daemon(config, key=ApiKey(SANDBOX_KEY, "test"))
    daemon.start(watch=False)
    try:
        daemon.wait_until_idle()
    finally:
        daemon.stop()


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + ".asset.json")


def read_sidecar(path: Path) -> dict[str, Any]:
    return json.loads(sidecar_of(path).read_text(encoding="utf-8"))


def wait_sidecar(path: Path, timeout: float = 10.0, status: str | None = None) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        try:
            document = read_sidecar(path)
        except (OSError, ValueError):
            return None
        return document if status is None or document["status"] == status else None

    return wait_for(ready, timeout, f"sidecar of {path.name}")  # type: ignore[return-value]


def uploads_of(sandbox: Sandbox, data: bytes) -> list:
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    return [asset for asset in sandbox.assets.values() if asset.sha256 == digest]


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env_with(env),
        cwd=cwd,
    )


def env_with(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HEYGEN_API_KEY", "NOTIFY_SOCKET")}
    env.update(extra or {})
    return env


def start_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "watcher", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_with(env),
        cwd=cwd,
    )


def stop_cli(
    process: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 15
) -> tuple[int, str, str]:
    process.send_signal(sig)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err
