"""Which configuration file a command reads when ``-c`` is left out.

In order: ``$HEYGEN_WATCHER_CONFIG``; the tour's ``./.heygen-watcher/config.yaml`` (written by
``run --sandbox`` so that ``status``, ``scan`` and ``retry`` work beside it); the system-wide
``/etc/heygen-watcher/config.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_NAME = "HEYGEN_WATCHER_CONFIG"
SYSTEM_CONFIG = Path("/etc/heygen-watcher/config.yaml")
TOUR_DIR = Path(".heygen-watcher")
TOUR_CONFIG = TOUR_DIR / "config.yaml"


class NoConfig(Exception):
    """No ``-c`` and none of the default places holds a configuration."""


def resolve_config_path(given: Path | None) -> Path:
    if given is not None:
        return given
    from_env = os.environ.get(ENV_NAME)
    if from_env:
        return Path(from_env)
    for candidate in (TOUR_CONFIG, SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    raise NoConfig(
        f"no configuration: pass -c FILE, set {ENV_NAME}, or write {SYSTEM_CONFIG} "
        f"(or run `heygen-watcher run --sandbox` here for the tour)"
    )
