"""The shipped systemd unit: it loads cleanly, stays hardened, and Python works inside it.

`systemd-analyze verify` refuses a unit whose ExecStart= does not exist, and the real one points
at /opt/heygen-watcher, so the unit is checked from a copy in a temp folder whose ExecStart=
names this test's Python interpreter. The example drop-in is checked the same way.

The sandbox itself needs systemd as PID 1 to run, which a test cannot count on. What can be
checked here is the part most likely to break Python: the unit's seccomp filters
(SystemCallFilter= and MemoryDenyWriteExecute=), rebuilt with libseccomp the way systemd builds
them and applied to a child interpreter that then does what the daemon does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD_DIR / "heygen-watcher.service"
DROP_IN_EXAMPLE = SYSTEMD_DIR / "heygen-watcher.service.d" / "drop-folders.conf.example"
SYSUSERS = SYSTEMD_DIR / "heygen-watcher.sysusers.conf"
MAX_EXPOSURE = 1.5

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (not a systemd system)"
)


def settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; systemd allows a key more than once."""
    section = ""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in settings(UNIT.read_text()) if s == section and k == key]


def copy_for_testing(folder: Path, *, with_drop_in: bool) -> Path:
    """The unit with an ExecStart= that exists here, optionally with the example drop-in."""
    text = UNIT.read_text()
    text, count = re.subn(
        r"^ExecStart=/opt/heygen-watcher/bin/heygen-watcher",
        f"ExecStart={sys.executable}",
        text,
        flags=re.MULTILINE,
    )
    assert count == 1, "ExecStart= no longer points at /opt/heygen-watcher/bin/heygen-watcher"
    unit = folder / UNIT.name
    unit.write_text(text)
    if with_drop_in:
        drop_ins = folder / f"{UNIT.name}.d"
        drop_ins.mkdir()
        shutil.copy(DROP_IN_EXAMPLE, drop_ins / "drop-folders.conf")
    return unit


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# -- what the unit says -------------------------------------------------------------------------


def test_the_unit_has_the_settings_the_daemon_relies_on() -> None:
    assert values("Type") == ["notify"]
    assert values("WatchdogSec") == ["30"]
    assert values("Restart") == ["on-failure"]
    assert values("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert values("StateDirectory") == ["heygen-watcher"]
    assert values("LoadCredential") == ["heygen_api_key:/etc/heygen-watcher/api-key"]
    assert values("ExecStart") == [
        "/opt/heygen-watcher/bin/heygen-watcher run -c /etc/heygen-watcher/config.yaml"
    ]
    assert values("RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]
    # Above the daemon's 20 s shutdown timeout plus the 5 s it gives aborted uploads.
    assert 25 < int(values("TimeoutStopSec")[0]) <= 60


def test_drop_folders_live_in_the_drop_in_not_in_the_unit() -> None:
    assert values("ReadWritePaths") == []
    assert values("BindPaths") == []
    example = settings(DROP_IN_EXAMPLE.read_text())
    assert any(key == "ReadWritePaths" for _, key, _ in example)


def test_the_sysusers_entries_match_the_unit(tmp_path: Path) -> None:
    user, group = values("User")[0], values("Group")[0]
    entries = [line.split() for line in SYSUSERS.read_text().splitlines()]
    entries = [entry for entry in entries if entry and not entry[0].startswith("#")]
    assert ["g", group, "-"] in [entry[:3] for entry in entries]
    assert ("u", user) in [tuple(entry[:2]) for entry in entries]
    assert ["m", user, group] in entries
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed")
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        [sysusers, f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    groups = (tmp_path / "etc" / "group").read_text()
    assert re.search(rf"^{group}:x:\d+:{user}$", groups, re.MULTILINE), groups


# -- systemd-analyze ----------------------------------------------------------------------------


@needs_analyze
@pytest.mark.parametrize("with_drop_in", [False, True], ids=["unit", "unit+drop-in"])
def test_systemd_analyze_verify(tmp_path: Path, with_drop_in: bool) -> None:
    unit = copy_for_testing(tmp_path, with_drop_in=with_drop_in)
    result = analyze("verify", unit.name, cwd=tmp_path)
    # verify exits 0 on unknown keys and bad values too; those only show up as messages.
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "heygen-watcher" in line or str(tmp_path) in line
    ]
    assert result.returncode == 0, result.stderr
    assert ours == []


@needs_analyze
@pytest.mark.parametrize("with_drop_in", [False, True], ids=["unit", "unit+drop-in"])
def test_exposure_level(tmp_path: Path, with_drop_in: bool) -> None:
    unit = copy_for_testing(tmp_path, with_drop_in=with_drop_in)
    result = analyze("security", "--offline=yes", "--no-pager", unit.name, cwd=tmp_path)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no exposure level in the output:\n{result.stdout}\n{result.stderr}"
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{result.stdout}"


# -- the unit's seccomp filters, applied to a real interpreter ----------------------------------

LIBSECCOMP = ctypes.util.find_library("seccomp")

# Installs the filters, then execs a fresh interpreter: like systemd, the filters are in place
# from the first instruction of the new program. Arguments: the allowed system calls
# (comma-separated), then the program to exec.
INSTALL_FILTERS = textwrap.dedent(
    """
    import ctypes, os, sys

    lib = ctypes.CDLL(sys.argv[1])
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    ALLOW, EPERM = 0x7FFF0000, 0x00050000 | 1
    MASKED_EQ = 7

    class Cmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                    ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

    def nr(name):
        return lib.seccomp_syscall_resolve_name(name.encode())

    # MemoryDenyWriteExecute=: one filter, with the rules systemd adds.
    PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
    mdwe = lib.seccomp_init(ALLOW)
    for name, mask in [("mmap", PROT_WRITE | PROT_EXEC), ("mprotect", PROT_EXEC),
                       ("pkey_mprotect", PROT_EXEC), ("shmat", SHM_EXEC)]:
        rule = Cmp(2, MASKED_EQ, mask, mask)
        assert lib.seccomp_rule_add_array(mdwe, EPERM, nr(name), 1, ctypes.byref(rule)) == 0
    assert lib.seccomp_load(mdwe) == 0

    # SystemCallFilter=: allow the list, EPERM for the rest (SystemCallErrorNumber=EPERM).
    # Loaded last, as it forbids seccomp() itself. libseccomp's default filter covers the
    # native architecture only, like SystemCallArchitectures=native.
    calls = lib.seccomp_init(EPERM)
    for name in sys.argv[2].split(","):
        if nr(name) >= 0:
            lib.seccomp_rule_add_array(calls, ALLOW, nr(name), 0, None)
    assert lib.seccomp_load(calls) == 0
    os.execv(sys.argv[3], sys.argv[3:])
    """
)

# What the daemon does that touches the kernel in unusual ways: libmagic through ctypes,
# inotify, SQLite in WAL mode, TLS, threads, leases, plus a ctypes callback (libffi closure).
PROBE = textwrap.dedent(
    """
    import ctypes, mmap, os, pathlib, ssl, sys, tempfile, threading

    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        print("w+x mapping allowed")
    except OSError:
        print("w+x mapping refused")
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 1)  # @resources: not allowed
        print("setpriority allowed")
    except OSError:
        print("setpriority refused")

    from watcher.intake.sniff import sniff_file
    from watcher.intake.settle import held_open_for_writing
    from watcher.state.journal_sqlite import SqliteJournal as Journal
    from watchdog.observers.inotify import InotifyObserver
    from watchdog.events import FileSystemEventHandler

    folder = pathlib.Path(tempfile.mkdtemp(dir=sys.argv[1]))
    png = folder / "a.png"
    png.write_bytes(bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(64))
    print("sniffed", sniff_file(png))
    held_open_for_writing(png)

    seen = threading.Event()
    class Handler(FileSystemEventHandler):
        def on_created(self, event):
            seen.set()
    observer = InotifyObserver()
    observer.schedule(Handler(), str(folder))
    observer.start()
    (folder / "b.png").write_bytes(b"x")
    print("inotify", seen.wait(5))
    observer.stop()
    observer.join()

    journal = Journal(folder / "journal.sqlite3")
    journal.close()
    ssl.create_default_context()

    compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    callback = compare(lambda a, b: 0)
    print("callback", callback(None, None) == 0)
    print("done")
    """
)


def allowed_system_calls(unit_filter: list[str]) -> set[str]:
    """Expand the unit's SystemCallFilter= lines with systemd's own group definitions."""
    assert ANALYZE is not None
    listing = subprocess.run(
        [ANALYZE, "syscall-filter", "--no-pager"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith(" ") and current is not None:
            if line.strip() and not line.strip().startswith("#"):
                current.append(line.strip())
        else:
            current = None

    def expand(name: str) -> set[str]:
        if not name.startswith("@"):
            return {name}
        return set().union(*(expand(member) for member in groups[name]))

    allowed: set[str] = set()
    for entry in unit_filter:
        if entry.startswith("~"):
            allowed -= set().union(*(expand(name) for name in entry[1:].split()))
        else:
            allowed |= set().union(*(expand(name) for name in entry.split()))
    return allowed


@needs_analyze
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp is Linux only")
@pytest.mark.skipif(LIBSECCOMP is None, reason="libseccomp is not installed")
def test_python_and_libmagic_work_under_the_units_seccomp_filters(tmp_path: Path) -> None:
    assert values("MemoryDenyWriteExecute") == ["yes"]
    assert values("SystemCallErrorNumber") == ["EPERM"]
    allowed = allowed_system_calls(values("SystemCallFilter"))
    project = str(Path(__file__).resolve().parent.parent)
    environment = {**os.environ, "PYTHONPATH": project, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            INSTALL_FILTERS,
            str(LIBSECCOMP),
            ",".join(sorted(allowed)),
            sys.executable,
            "-c",
            PROBE,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Both filters really are in force, and yet everything the daemon needs works.
    assert lines[:2] == ["w+x mapping refused", "setpriority refused"]
    assert lines[2:] == ["sniffed image/png", "inotify True", "callback True", "done"]


def test_the_examples_share_one_set_of_paths_and_the_drop_in_covers_every_write() -> None:
    example = yaml.safe_load((SYSTEMD_DIR.parent / "config.example.yaml").read_text())
    listed: list[str] = []
    active: list[str] = []
    for line in DROP_IN_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"(#?)ReadWritePaths=(.*)", line.strip())
        if match:
            listed += match.group(2).split()
            active += [] if match.group(1) else match.group(2).split()
    writes = []
    for folder in example["folders"]:
        writes.append(folder.get("sidecar_dir") or folder["path"])
        if isinstance(folder.get("after_upload"), dict):
            writes.append(folder["after_upload"]["move"])
        if folder.get("template"):
            writes.append(example["templates"][folder["template"]]["download_to"])
    for path in writes:
        assert any(path == top or path.startswith(top + "/") for top in listed), path
        # The state directory is the service user's alone (0700): nothing shared goes there.
        assert not path.startswith("/var/lib/heygen-watcher"), path
    assert "state_dir" not in example
    # The folders the README creates are the ones the example drop-in makes writable.
    readme = (SYSTEMD_DIR / "README.md").read_text()
    created = re.search(r"install -d -g heygen-drop -m 2770 (.*)", readme)
    assert created is not None
    assert created.group(1).split() == active
