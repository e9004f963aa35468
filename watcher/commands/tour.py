"""``heygen-watcher run --sandbox``: the one-minute tour, no key and no config needed."""

from __future__ import annotations

from pathlib import Path

from watcher.config import ApiConfig, Config, FolderConfig
from watcher.config.apikey import ApiKey
from watcher.sandbox import Sandbox

SANDBOX_KEY = "sandbox"


def tour_config(sandbox: Sandbox, workdir: Path) -> tuple[Config, ApiKey]:
    drop = workdir / "drop"
    drop.mkdir(parents=True, exist_ok=True)
    config = Config(
        source="(built-in sandbox tour)",
        api=ApiConfig(
            base_url=sandbox.api_url,
            upload_base_url=sandbox.upload_url,
            backoff_base_seconds=0.2,
        ),
        state_dir=workdir / ".heygen-watcher",
        folders=(FolderConfig(path=drop.resolve(), settle_seconds=1.0),),
    )
    return config, ApiKey(SANDBOX_KEY, "the embedded sandbox")
