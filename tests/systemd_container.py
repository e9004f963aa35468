"""A real systemd as PID 1 of a throwaway container, for the tests that run the shipped unit.

PID 1 of a test machine is rarely systemd, but a real systemd boots in well under a second as
PID 1 of a ``systemd-nspawn`` container whose root is an overlay of the host's own ``/``: the
container already has the system's Python, libmagic and everything else the host has, and every
write lands in a tmpfs that disappears with the container. How:

1. The container gets cgroups of its own (nspawn puts ``payload/`` and ``supervisor/`` below its
   caller's cgroup), removed afterwards.
2. In a private mount namespace (``unshare -m``): a tmpfs, an overlay with ``lowerdir=/`` and its
   upper and work directories on that tmpfs, and the files from ``seed/`` copied into it.
3. ``systemd-nspawn -b systemd.unit=heygen-test.target``: a target that asks for basic.target
   only, so the host's enabled services (a database, timers) do not start inside.
4. The container shares the host's network, so a sandbox on the host's 127.0.0.1 is reachable
   from the service. Commands run inside with ``nsenter`` into every namespace of the
   container's PID 1: neither D-Bus nor machined is needed.
5. ``systemctl poweroff``, then the cgroups are removed and the test checks that no process,
   mount or cgroup is left.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The container's commands get this environment and nothing of the test's own.
CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}

BOOT_TARGET = """\
[Unit]
Description=heygen-watcher test boot: basic.target and nothing the host enables
Requires=basic.target
After=basic.target
AllowIsolate=yes
"""

# Runs as the container's caller: joins the container's own cgroups, then a private mount
# namespace for the overlay.
ENTER = """\
set -e
for cgroup in $CGROUPS; do echo $$ > "$cgroup/cgroup.procs"; done
exec unshare -m --propagation private sh "$BASE/boot.sh" "$@"
"""

# Runs inside the private mount namespace; what it mounts goes away with the container.
BOOT = """\
set -e
mount -t tmpfs -o mode=755 "$NAME" "$BASE/ovl"
mkdir "$BASE/ovl/upper" "$BASE/ovl/work" "$BASE/ovl/root"
mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$BASE/ovl/upper,workdir=$BASE/ovl/work" "$BASE/ovl/root"
cp -a "$BASE/seed/." "$BASE/ovl/root/"
exec systemd-nspawn -D "$BASE/ovl/root" --register=no --keep-unit -M "$NAME" "$@" \
    -b systemd.unit=heygen-test.target
"""


def cgroup_hierarchies() -> list[Path]:
    """Where this machine's cgroup trees are mounted (cgroup v2 alone, or the hybrid layout)."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return [root]
    return [
        root / name for name in ("systemd", "unified") if (root / name / "cgroup.procs").exists()
    ]


def unavailable_reason() -> str | None:
    """Why a container cannot be booted here, or None if it can."""
    if not sys.platform.startswith("linux"):
        return "systemd containers need Linux"
    if os.geteuid() != 0:
        return "booting a systemd container needs root (mounts, cgroups, namespaces)"
    for tool in ("systemd-nspawn", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            package = "systemd-container" if tool == "systemd-nspawn" else "util-linux"
            return f"{tool} is not installed (apt-get install {package})"
    if not Path("/lib/systemd/systemd").exists():
        return "systemd is not installed"
    if not cgroup_hierarchies():
        return "no cgroup hierarchy is mounted under /sys/fs/cgroup"
    return None


class CommandFailed(AssertionError):
    pass


class Container:
    """One booted container: ``run`` a command inside, ``path`` to reach its files."""

    def __init__(self, name: str, seed: dict[str, bytes | str] | None = None) -> None:
        self.name = name
        self.base = Path(tempfile.mkdtemp(prefix=f"{name}.", dir="/var/tmp"))
        self.cgroups = [hierarchy / name for hierarchy in cgroup_hierarchies()]
        self.console = self.base / "console.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        (self.base / "ovl").mkdir()
        (self.base / "enter.sh").write_text(ENTER)
        (self.base / "boot.sh").write_text(BOOT)
        files = {"etc/systemd/system/heygen-test.target": BOOT_TARGET, **(seed or {})}
        for relative, content in files.items():
            target = self.base / "seed" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                target.write_text(content)
            else:
                target.write_bytes(content)

    # -- life ------------------------------------------------------------------------------------
    def boot(self, timeout: float = 60) -> None:
        for cgroup in self.cgroups:
            cgroup.mkdir()
        environment = {
            **CONTAINER_ENV,
            "BASE": str(self.base),
            "NAME": self.name,
            "CGROUPS": " ".join(str(cgroup) for cgroup in self.cgroups),
        }
        with self.console.open("wb") as console:
            self.process = subprocess.Popen(
                ["sh", str(self.base / "enter.sh")],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.pid1:
            self._check_alive(deadline, "the container's PID 1")
            self.pid1 = self._find_pid1()
            time.sleep(0.02)
        while True:
            self._check_alive(deadline, "the container to finish booting")
            state = self.run("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.05)

    def _check_alive(self, deadline: float, what: str) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the container exited while waiting for {what}:\n{self.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}:\n{self.log()}")

    def _find_pid1(self) -> int:
        # nspawn's child is the container's PID 1 once it has exec'd systemd.
        assert self.process is not None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and comm == "systemd":
                return int(entry.name)
        return 0

    def log(self) -> str:
        try:
            return self.console.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def shutdown(self, timeout: float = 60) -> list[str]:
        """Power off and clean up; returns what was left behind (empty when all is gone)."""
        if self.process is not None:
            if self.process.poll() is None and self.pid1:
                # A poweroff that hangs is dealt with below: the whole group is killed.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.run("systemctl poweroff", check=False, timeout=30)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        leftovers = self.leftovers()
        for cgroup in self.cgroups:
            folders = [cgroup, *(path for path in cgroup.rglob("*") if path.is_dir())]
            for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):
                try:
                    folder.rmdir()
                except OSError as error:  # still busy: reported by leftovers()
                    leftovers.append(f"cannot remove {folder}: {error.strerror}")
        for runtime in (Path("/run/systemd/nspawn/propagate") / self.name,):
            if runtime.exists():
                shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
        return leftovers

    def leftovers(self) -> list[str]:
        found = []
        for cgroup in self.cgroups:
            for procs in cgroup.rglob("cgroup.procs") if cgroup.exists() else []:
                pids = procs.read_text().split()
                if pids:
                    found.append(f"processes {pids} in {procs.parent}")
        mounts = Path("/proc/self/mountinfo").read_text()
        found += [f"mount {line}" for line in mounts.splitlines() if str(self.base) in line]
        if self.pid1 and Path(f"/proc/{self.pid1}").exists():
            found.append(f"the container's PID 1 ({self.pid1}) is still running")
        return found

    # -- inside ----------------------------------------------------------------------------------
    def run(
        self,
        command: str,
        *,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        cwd: str = "/",
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside the container, as root, in a clean environment."""
        settings = [f"{key}={value}" for key, value in {**CONTAINER_ENV, **(env or {})}.items()]
        script = f"cd {shlex.quote(cwd)} && {command}"
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", *settings, "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandFailed(
                f"in the container: {command}\nexit status {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def path(self, inside: str) -> Path:
        """A path inside the container, as the host reaches it (through PID 1's root)."""
        return Path(f"/proc/{self.pid1}/root") / inside.lstrip("/")
