"""The configuration in force, shared by every stage of a running daemon.

A reload swaps it whole (one reference assignment), so a reader sees the old configuration or
the new one, never a mix. Readers take `current` once per piece of work and use that.
"""

from __future__ import annotations

from watcher.config.model import Config


class LiveConfig:
    def __init__(self, config: Config) -> None:
        self._config = config

    @property
    def current(self) -> Config:
        return self._config

    def swap(self, config: Config) -> None:
        self._config = config
