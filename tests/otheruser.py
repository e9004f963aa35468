"""Running heygen-watcher as a real non-root user, as a service user would (the tests run as
root, for whom every folder is writable and every file readable).

The user is `nobody` (present on every Debian/Ubuntu); commands run through `setpriv` with
that user's uid and gid and no supplementary groups. When this interpreter is not reachable by
that user (a pyenv under /root), the system's interpreter of the same version is used with
this environment's packages and this checkout on PYTHONPATH.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from daemon_helpers import env_with

USER = "nobody"
CHECKOUT = Path(__file__).resolve().parent.parent
IMPORTS = "import watcher.service.daemon, magic, yaml, watchdog.observers"


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


def find_other_user() -> tuple[OtherUser | None, str]:
    """The user and interpreter to run as, or None and why not."""
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
    paths = dict.fromkeys(
        [str(CHECKOUT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    )
    fallback = OtherUser(USER, entry.pw_uid, entry.pw_gid, system, os.pathsep.join(paths))
    why_not = _works(fallback)
    if why_not is not None:
        return None, f"{USER} cannot run heygen-watcher with {system}: {why_not}"
    return fallback, ""
