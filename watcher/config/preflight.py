"""What `check-config` checks beyond the file itself: will `run` really work with it, here?

The key is resolved exactly as `run` resolves it (never printed: only where it came from);
every ``${env.NAME}`` a template uses must be set; every place the daemon writes must be
writable by the user running this. Each problem once.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from watcher.config.apikey import ApiKey, ApiKeyError, load_api_key
from watcher.config.model import Config
from watcher.config.templates import placeholders_in

ENV_PREFIX = "env."


@dataclass
class Preflight:
    problems: list[str] = field(default_factory=list)
    key: ApiKey | None = None  # as `run` would find it; never printed
    # Every place the daemon writes, for the service's ReadWritePaths=.
    written: list[Path] = field(default_factory=list)

    @property
    def key_origin(self) -> str | None:
        return self.key.origin if self.key is not None else None


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _writable(path: Path) -> tuple[bool, Path]:
    """Whether the daemon could write at ``path`` (or create it): the nearest existing folder
    must be writable and searchable by this user."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return os.access(probe, os.W_OK | os.X_OK), probe


def written_places(config: Config) -> list[tuple[str, Path]]:
    """(key path, folder) of every place the daemon writes, in config order, each once."""
    places: list[tuple[str, Path]] = []
    for index, folder in enumerate(config.folders):
        key = f"folders[{index}]"
        places.append((f"{key}.path", folder.path))
        if folder.move_to is not None:
            places.append((f"{key}.after_upload.move", folder.move_to))
        if folder.sidecar_dir is not None:
            places.append((f"{key}.sidecar_dir", folder.sidecar_dir))
    for name, template in config.templates.items():
        if template.download_to is not None:
            places.append((f"templates.{name}.download_to", template.download_to))
    seen: set[Path] = set()
    unique = []
    for key, path in places:
        if path not in seen:
            seen.add(path)
            unique.append((key, path))
    return unique


def preflight(config: Config) -> Preflight:
    result = Preflight()
    where = config.source
    try:
        result.key = load_api_key(config.api)
    except ApiKeyError as error:
        result.problems.append(f"{where}: api: {error}")
    for name, template in config.templates.items():
        for placeholder in sorted(placeholders_in(template.body)):
            if placeholder.startswith(ENV_PREFIX):
                variable = placeholder[len(ENV_PREFIX) :]
                if variable not in os.environ:
                    result.problems.append(
                        f"{where}: templates.{name}.body: ${{{placeholder}}}: environment "
                        f"variable {variable} is not set here (set it where the daemon runs)"
                    )
    user = _user()
    for key, path in written_places(config):
        result.written.append(path)
        ok, probe = _writable(path)
        if not ok:
            shown = path if probe == path else f"{path} (nearest existing: {probe})"
            result.problems.append(f"{where}: {key}: {shown} is not writable by user {user}")
    ok, probe = _writable(config.state_dir)
    if not ok:
        result.problems.append(
            f"{where}: state_dir: {config.state_dir} is not writable by user {user}"
        )
    return result


def read_write_paths_line(places: list[Path]) -> str:
    """The drop-in line that lets the hardened unit write where the daemon needs to."""
    return "ReadWritePaths=" + " ".join(str(path) for path in places)
