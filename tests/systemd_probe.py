"""What a process sees of its sandbox, for the systemd tests (run by systemd, not by pytest).

The tests start this in a copy of the shipped unit with only ExecStart= changed, and in a bare
control unit, as the same user; each line below is one directive's effect as seen from inside.
It prints one ``PROBE {json}`` line, then tells systemd it is ready and exits.
Argument: a drop folder (one of the drop-in's ReadWritePaths=).
"""

from __future__ import annotations

import ctypes
import errno
import grp
import hashlib
import json
import mmap
import os
import pwd
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

from watcher.intake.sniff import sniff_file
from watcher.service.sdnotify import Notifier

LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER = 0x10000000
PER_LINUX32 = 0x0008


def attempt(action: Callable[[], object]) -> str:
    """ "ok", or the errno's name when the kernel (or the seccomp filter) refused."""
    try:
        action()
    except OSError as error:
        return errno.errorcode.get(error.errno or 0, str(error.errno))
    return "ok"


def libc_call(name: str, *args: int) -> Callable[[], int]:
    def call() -> int:
        result = int(getattr(LIBC, name)(*args))
        if result == -1:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return result

    return call


def write_file(path: str) -> Callable[[], None]:
    def write() -> None:
        Path(path).write_text("probe")
        os.unlink(path)

    return write


def setgid_file(folder: str) -> Callable[[], None]:
    def chmod() -> None:
        path = Path(folder) / "probe-setgid"
        path.write_text("probe")
        try:
            os.chmod(path, 0o2660)
        finally:
            path.unlink()

    return chmod


def personality() -> None:
    previous = libc_call("personality", PER_LINUX32)()
    LIBC.personality(previous)


def callback() -> None:
    compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    assert compare(lambda a, b: 0)(None, None) == 0


def main() -> None:
    drop = sys.argv[1]
    state = os.environ.get("STATE_DIRECTORY", "/var/lib/heygen-watcher")
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    png = Path(state) / "probe.png"
    png.write_bytes(bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(64))
    sniffed = sniff_file(png)
    png.unlink()
    credentials = Path(os.environ.get("CREDENTIALS_DIRECTORY", "/nonexistent"))
    key = credentials / "heygen_api_key"
    seen = {
        "user": pwd.getpwuid(os.getuid()).pw_name,
        "group": grp.getgrgid(os.getgid()).gr_name,
        "umask": oct(os.umask(0o007)),
        "NoNewPrivs": status["NoNewPrivs"].strip(),
        "CapEff": status["CapEff"].strip(),
        "CapBnd": status["CapBnd"].strip(),
        "Seccomp": status["Seccomp"].strip(),
        "uid_map entries": len(Path("/proc/self/uid_map").read_text().splitlines()),
        "write /usr": attempt(write_file("/usr/probe")),
        "write /etc": attempt(write_file("/etc/probe")),
        "write /var/lib": attempt(write_file("/var/lib/probe")),
        "write drop folder": attempt(write_file(f"{drop}/.probe")),
        "write state directory": attempt(write_file(f"{state}/probe")),
        "list /root": attempt(lambda: os.listdir("/root")),
        "list /home": attempt(lambda: os.listdir("/home")),
        "host /tmp marker": os.path.exists("/tmp/heygen-test-marker"),
        "write /tmp": attempt(write_file("/tmp/probe")),
        "mmap write+execute": attempt(lambda: mmap.mmap(-1, 4096, prot=7).close()),
        "socket AF_INET": attempt(lambda: socket.socket(socket.AF_INET).close()),
        "socket AF_INET6": attempt(lambda: socket.socket(socket.AF_INET6).close()),
        "socket AF_UNIX": attempt(lambda: socket.socket(socket.AF_UNIX).close()),
        "socket AF_NETLINK": attempt(
            lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close()
        ),
        "socket AF_PACKET": attempt(
            lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()
        ),
        "setpriority (@resources)": attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, 1)),
        "setuid (@privileged)": attempt(lambda: os.setuid(os.getuid())),
        "unshare a user namespace": attempt(libc_call("unshare", CLONE_NEWUSER)),
        "personality": attempt(personality),
        "setgid bit": attempt(setgid_file(state)),
        "/proc/1": os.path.exists("/proc/1"),
        "/proc/stat": os.path.exists("/proc/stat"),
        "/proc/sys": os.path.exists("/proc/sys"),
        "/dev": sorted(os.listdir("/dev")),
        "/dev/kmsg": os.path.exists("/dev/kmsg"),
        "list /usr/lib/modules": attempt(lambda: os.listdir("/usr/lib/modules")),
        "mkdir /sys/fs/cgroup": attempt(lambda: os.mkdir("/sys/fs/cgroup/probe")),
        "namespaces": {
            name: os.readlink(f"/proc/self/ns/{name}") for name in ("ipc", "uts", "mnt", "user")
        },
        "credential": {
            "mode": oct(key.stat().st_mode & 0o777) if key.exists() else None,
            "sha256": hashlib.sha256(key.read_bytes()).hexdigest() if key.exists() else None,
        },
        "sniff": sniffed,
        "ctypes callback": attempt(callback),
        "tls context": attempt(ssl.create_default_context),
    }
    print("PROBE " + json.dumps(seen), flush=True)
    notifier = Notifier()
    notifier.ready()
    notifier.close()


if __name__ == "__main__":
    main()
