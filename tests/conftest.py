"""Shared fixtures: a real sandbox on 127.0.0.1 per test, clients and configs pointing at it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from watcher.config import ApiConfig
from watcher.config.apikey import ApiKey
from watcher.heygen.client import HeyGenClient
from watcher.sandbox import Sandbox

SANDBOX_KEY = "sandbox-test-key-5f3c"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(
        api_key=SANDBOX_KEY,
        data_dir=tmp_path / "sandbox-data",
        video_pending_seconds=0.05,
        video_processing_seconds=0.1,
    ) as server:
        yield server


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    """An empty drop folder."""
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


@pytest.fixture
def api_config(sandbox: Sandbox) -> ApiConfig:
    return fast_api(sandbox)


def fast_api(sandbox: Sandbox, **overrides: object) -> ApiConfig:
    """An API section with quick retries so failure tests take milliseconds, not minutes."""
    settings: dict[str, object] = {
        "base_url": sandbox.api_url,
        "upload_base_url": sandbox.upload_url,
        "timeout_seconds": 5.0,
        "max_attempts": 4,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "concurrency": 2,
    }
    settings.update(overrides)
    return ApiConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def client(api_config: ApiConfig) -> Iterator[HeyGenClient]:
    api_client = HeyGenClient(api_config, ApiKey(SANDBOX_KEY, "test"))
    yield api_client
    api_client.close()


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll until ``condition()`` is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _no_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real key in the environment must never be used by the tests.
    monkeypatch.delenv("HEYGEN_API_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    os.environ.pop("NOTIFY_SOCKET", None)
