"""``heygen-watcher run --sandbox``: the one-minute tour, no key and no config needed.

The tour writes its configuration (and the sandbox's key, readable by its owner only) into
``./.heygen-watcher/``, where the other commands look when ``-c`` is left out: ``status``,
``scan`` or ``upload`` run beside the tour see the same journal and the same sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from watcher.commands.configpath import TOUR_DIR
from watcher.config import Config, load_config
from watcher.config.apikey import ApiKey
from watcher.sandbox import Sandbox

SANDBOX_KEY = "sandbox"
TOUR_SETTLE_SECONDS = 1.0


def tour_config(sandbox: Sandbox, workdir: Path) -> tuple[Config, ApiKey, Path]:
    """The tour's configuration, written to ``<workdir>/.heygen-watcher/config.yaml``."""
    drop = workdir / "drop"
    drop.mkdir(parents=True, exist_ok=True)
    state_dir = workdir / TOUR_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    key_file = state_dir / "sandbox-key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(SANDBOX_KEY + "\n")
    os.chmod(key_file, 0o600)
    document = {
        "api": {
            "base_url": sandbox.api_url,
            "upload_base_url": sandbox.upload_url,
            "api_key_file": key_file.name,
            "backoff_base_seconds": 0.2,
        },
        "state_dir": str(state_dir.resolve()),
        # Phone photos and videos, voice memos: converted into what HeyGen takes.
        "folders": [
            {"path": str(drop.resolve()), "settle_seconds": TOUR_SETTLE_SECONDS, "convert": True}
        ],
    }
    path = state_dir / "config.yaml"
    path.write_text(
        "# Written by `heygen-watcher run --sandbox` for the tour; rewritten at each start.\n"
        + yaml.safe_dump(document, sort_keys=False),
        encoding="utf-8",
    )
    config = load_config(path)
    return config, ApiKey(SANDBOX_KEY, "the embedded sandbox"), path
