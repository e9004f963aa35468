"""Running heygen-watcher as a real non-root user, as a service user would (the tests run as
root, for whom every folder is writable and every file readable).

The user is `nobody` (present on every Debian/Ubuntu); commands run through `setpriv` with
that user's uid and gid and no supplementary groups. When this interpreter is not reachable by
that user (a pyenv under /root), the system's interpreter of the same version is used with a
copy of this checkout's package and its installed dependencies in a folder that user can read.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from daemon_helpers import env_with
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

USER = "nobody"
CHECKOUT = Path(__file__).resolve().parent.parent
PROJECT = "heygen-watcher"
IMPORTS = "import watcher.service.daemon, magic, yaml, watchdog.observers"
# Compiled caches stay behind: the copy is compiled again as it is imported.
_CACHES = shutil.ignore_patterns("__pycache__")


@dataclass(frozen=True)
class OtherUser:
    name: str
    uid: int
    gid: int
    python: str
    pythonpath: str | None

    def command(self, *args: str) -> list[str]:
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--",
            self.python,
            *args,
        ]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = env_with(extra)
        env.update(HOME="/nonexistent", USER=self.name, LOGNAME=self.name)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if self.pythonpath is not None:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command("-m", "watcher", *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(env),
            cwd="/",
        )

    def start_cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command("-m", "watcher", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(env),
            cwd="/",
        )

    def own(self, *paths: Path) -> None:
        for path in paths:
            os.chown(path, self.uid, self.gid)


def _works(user: OtherUser) -> str | None:
    try:
        result = subprocess.run(
            user.command("-c", IMPORTS), capture_output=True, text=True, env=user.env(), timeout=60
        )
    except OSError as error:
        return str(error)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["?"])[-1]


def find_other_user(shared: Path) -> tuple[OtherUser | None, str]:
    """The user and interpreter to run as, or None and why not.

    ``shared`` is an empty folder every user can read, filled only when this interpreter's
    packages are out of that user's reach.
    """
    if os.geteuid() != 0:
        return None, "only root can run commands as another user"
    if shutil.which("setpriv") is None:
        return None, "setpriv (util-linux) is not installed"
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        return None, f"there is no {USER!r} user"
    direct = OtherUser(USER, entry.pw_uid, entry.pw_gid, sys.executable, None)
    why = _works(direct)
    if why is None:
        return direct, ""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(f"python{version}", path="/usr/local/bin:/usr/bin:/bin")
    if system is None:
        return (
            None,
            f"{sys.executable} is not usable by {USER} ({why}) and no system python{version}",
        )
    _copy_installed(shared)
    fallback = OtherUser(USER, entry.pw_uid, entry.pw_gid, system, str(shared))
    why_not = _works(fallback)
    if why_not is not None:
        return None, f"{USER} cannot run heygen-watcher with {system}: {why_not}"
    return fallback, ""


def _copy_installed(shared: Path) -> None:
    """Copies this checkout's package and every installed distribution it needs into ``shared``.

    The same files, not a fresh install: nothing is fetched, and the versions are the ones the
    rest of the suite runs with (compiled modules share the ABI of the same Python version).
    """
    shutil.copytree(CHECKOUT / "watcher", shared / "watcher", ignore=_CACHES)
    for dist in _runtime_closure():
        for file in dist.files or ():
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # console scripts live outside site-packages; caches are rebuilt
            target = shared / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(str(dist.locate_file(file))), target)
    for path in [shared, *shared.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _runtime_closure() -> list[metadata.Distribution]:
    """The project's runtime dependencies, and theirs, as installed here."""
    seen: dict[str, metadata.Distribution] = {}
    pending = _requirement_names(metadata.distribution(PROJECT))
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        pending.extend(_requirement_names(dist))
    return list(seen.values())


def _requirement_names(dist: metadata.Distribution) -> list[str]:
    names = []
    for line in dist.requires or ():
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.append(canonicalize_name(requirement.name))
    return names
