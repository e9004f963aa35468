"""The shipped unit, started and stopped by a real systemd 252 (PID 1 of a throwaway container).

The module boots one container (see `systemd_container`), installs the project in it by running
the shell blocks of `systemd/README.md` themselves, as an administrator would paste them, and
then drives the service with `systemctl` while the project's sandbox on the host's 127.0.0.1
stands in for HeyGen. The README is parsed, not copied: a command that changes there changes
here, and the few lines a script cannot run as written (an editor, a placeholder path) are
replaced through `REPLACED_LINES`, each of which must still be in the README.

Time is compressed by a test-only drop-in (`zz-test-timing.conf`: a 4 s watchdog, 1 s between
restarts) and the test config (a 2 s stall limit, a 2 s shutdown grace); everything else is the
shipped unit as it is.

Installing offline: the virtual environment gets its packages from a wheel folder that is filled
once per dependency set (`pip download` on the host, kept in /var/cache), through
``PIP_NO_INDEX``/``PIP_FIND_LINKS`` in the environment, so the README's `pip install` line runs
word for word, takes seconds and needs no network after the first run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import media
import pytest
from conftest import wait_for
from daemon_helpers import uploads_of
from systemd_container import Container, unavailable_reason
from systemd_wheels import wheel_folder

from watcher.sandbox import Fault, Sandbox

PROJECT = Path(__file__).resolve().parent.parent
SYSTEMD_DIR = PROJECT / "systemd"
README = SYSTEMD_DIR / "README.md"
UNIT_NAME = "heygen-watcher"
CHECKOUT = "/usr/local/src/heygen-watcher"  # where the copy of this checkout lives inside
KEY = "systemd-test-key-8d1e2a7c"
DROP_INS = "/etc/systemd/system/heygen-watcher.service.d"

# Lines of the README's shell blocks that a script cannot run as they stand, and what runs
# instead. Each must be found in its blocks exactly once, so the two cannot drift apart.
INSTALL_REPLACED = {
    # The administrator's own checkout: here, a copy of this one.
    "/opt/heygen-watcher/bin/pip install /path/to/checkout": (
        f"/opt/heygen-watcher/bin/pip install {CHECKOUT}"
    ),
    # An interactive editor: the test writes the key instead.
    "sudoedit /etc/heygen-watcher/api-key            # paste the key; nothing else in the file": (
        f"printf '%s\\n' {KEY} > /etc/heygen-watcher/api-key"
    ),
    # The example drop-in already names the folders the test config uses.
    "editor /etc/systemd/system/heygen-watcher.service.d/drop-folders.conf": ":",
    # Following the journal never returns.
    "journalctl -u heygen-watcher -f": "journalctl -u heygen-watcher --no-pager",
}

NEW_FOLDER = "/srv/heygen/portraits"
NEW_FOLDER_REPLACED = {
    # The test writes the new config itself, before the block runs.
    "editor /etc/heygen-watcher/config.yaml          # add it under folders": ":",
    (
        "editor /etc/systemd/system/heygen-watcher.service.d/drop-folders.conf"
        "    # and to ReadWritePaths="
    ): f"echo ReadWritePaths={NEW_FOLDER} >> {DROP_INS}/drop-folders.conf",
}

TIMING_DROP_IN = """\
# Test only: the same behaviour, on a shorter clock.
[Service]
WatchdogSec=4
RestartSec=1
"""

DROP_FOLDERS = ("/srv/heygen/backgrounds", "/srv/heygen/voiceovers")


# -- the README, as shell scripts ---------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    heading: str
    script: str


def readme_blocks() -> list[Block]:
    """Every ```sh block of systemd/README.md with the heading it stands under."""
    blocks: list[Block] = []
    heading = ""
    lines = README.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.strip() == "```sh":
            indent = line[: len(line) - len(line.lstrip())]
            body = []
            index += 1
            while lines[index].strip() != "```":
                body.append(lines[index].removeprefix(indent))
                index += 1
            blocks.append(Block(heading, "\n".join(body)))
        index += 1
    return blocks


def install_steps() -> list[Block]:
    """The numbered sections' blocks, in order: what an administrator runs to install."""
    return [block for block in readme_blocks() if re.match(r"\d+\. ", block.heading)]


def blocks_under(heading: str) -> list[Block]:
    return [block for block in readme_blocks() if block.heading == heading]


def with_replacements(blocks: list[Block], replaced_lines: dict[str, str]) -> list[Block]:
    text = "\n".join(block.script for block in blocks)
    for original in replaced_lines:
        found = [line for line in text.splitlines() if line.strip() == original]
        assert len(found) == 1, f"systemd/README.md no longer has the line {original!r}"
    replaced = []
    for block in blocks:
        lines = [replaced_lines.get(line.strip(), line) for line in block.script.splitlines()]
        replaced.append(Block(block.heading, "\n".join(lines)))
    return replaced


def test_the_readme_blocks_the_container_tests_run_are_found() -> None:
    # Runs everywhere: the parsing the container tests rely on still sees the README's steps.
    steps = install_steps()
    assert [block.heading.split(".")[0] for block in steps] == ["1", "2", "2", "3", "3", "4", "5"]
    with_replacements(steps, INSTALL_REPLACED)
    assert len(blocks_under("Day to day")) == 1
    with_replacements(blocks_under("Adding a drop folder"), NEW_FOLDER_REPLACED)


# -- the installed service ----------------------------------------------------------------------
@dataclass
class Installed:
    container: Container
    sandbox: Sandbox
    config_text: str
    timings: dict[str, float]
    current_config: str = ""

    def run(self, command: str, **options: object) -> subprocess.CompletedProcess[str]:
        return self.container.run(command, **options)  # type: ignore[arg-type]

    def show(self, *properties: str) -> dict[str, str]:
        names = " ".join(f"-p {name}" for name in properties)
        output = self.run(f"systemctl show {names} {UNIT_NAME}").stdout
        return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    def cursor(self) -> int:
        """Where the unit's journal ends now: `journal(after=...)` shows only what comes later."""
        return len(self.journal().splitlines())

    def journal(self, after: int = 0) -> str:
        output = self.run(f"journalctl -u {UNIT_NAME} --no-pager -o cat").stdout
        return "".join(line + "\n" for line in output.splitlines()[after:])

    def wait_journal(self, text: str, after: int, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            journal = self.journal(after=after)
            if text in journal:
                return journal
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in the journal after {timeout}s:\n{journal[-3000:]}")
            time.sleep(0.05)

    def write_config(self, text: str) -> None:
        # In place: the file keeps the owner, group and mode the README gave it.
        self.container.path("/etc/heygen-watcher/config.yaml").write_text(text)
        self.current_config = text

    def reload(self) -> None:
        cursor = self.cursor()
        self.run(f"systemctl reload {UNIT_NAME}")
        # ExecReload= only sends SIGHUP; the daemon says when it has applied it.
        self.wait_journal("configuration reloaded", after=cursor)

    def drop(self, folder: str, name: str, data: bytes, user: str = "alice") -> None:
        """`user` copies the file in, as one of the people who drop files would."""
        staging = self.container.path(f"/srv/staging/{name}")
        staging.parent.mkdir(exist_ok=True)
        staging.write_bytes(data)
        os.chmod(staging, 0o644)
        self.run(f"runuser -u {user} -- cp /srv/staging/{name} {folder}/{name}")

    def sidecar(self, path: str, timeout: float = 30, status: str | None = None) -> dict:
        host_path = self.container.path(path + ".asset.json")

        def ready() -> dict | None:
            try:
                document = json.loads(host_path.read_text())
            except (OSError, ValueError):
                return None
            return document if status is None or document.get("status") == status else None

        return wait_for(ready, timeout, f"the sidecar of {path}")  # type: ignore[return-value]


def config_for(sandbox: Sandbox, extra_folders: tuple[str, ...] = ()) -> str:
    folders = "".join(f"  - path: {folder}\n" for folder in (*DROP_FOLDERS, *extra_folders))
    return (
        "api:\n"
        f"  base_url: {sandbox.api_url}\n"
        "  timeout_seconds: 10\n"
        "  max_attempts: 3\n"
        "  backoff_base_seconds: 0.05\n"
        "  backoff_max_seconds: 0.2\n"
        "  concurrency: 2\n"
        "stall_seconds: 2\n"
        "shutdown_timeout_seconds: 2\n"
        "defaults:\n"
        "  settle_seconds: 0.2\n"
        "  types: [image/jpeg, image/png, audio/mpeg, audio/wav]\n"
        f"folders:\n{folders}"
    )


_names = itertools.count()


def copy_checkout(target: Path) -> None:
    shutil.copytree(
        PROJECT,
        target,
        ignore=shutil.ignore_patterns(
            ".git", "__pycache__", "*.egg-info", "build", ".*_cache", ".venv*", "bench"
        ),
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true, and a systemd container cannot run here: {reason}")
        pytest.skip(reason)
    wheels = wheel_folder()
    if not (wheels / ".complete").exists():
        # Tests never reach beyond 127.0.0.1: the wheels are fetched by an install step.
        missing = f"no dependency wheels in {wheels}; run `python tests/systemd_wheels.py` once"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true, and {missing}")
        pytest.skip(missing)
    timings: dict[str, float] = {}
    sandbox = Sandbox(api_key=KEY, data_dir=tmp_path_factory.mktemp("sandbox-data"))
    sandbox.start()
    container = Container(
        f"hw-test-{os.getpid()}-{next(_names)}",
        seed={f"{DROP_INS.lstrip('/')}/zz-test-timing.conf": TIMING_DROP_IN},
    )
    copy_checkout(container.base / "seed" / CHECKOUT.lstrip("/"))
    probe_copy = container.base / "seed" / PROBE.lstrip("/")
    probe_copy.parent.mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "systemd_probe.py", probe_copy)
    config_text = config_for(sandbox)
    (container.base / "seed" / CHECKOUT.lstrip("/") / "config.yaml").write_text(config_text)
    try:
        mark = time.monotonic()
        container.boot()
        timings["boot"] = time.monotonic() - mark
        # An ordinary person who drops files (step 2 adds them to heygen-drop).
        container.run("useradd --no-create-home --shell /usr/sbin/nologin alice")
        pip = {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(wheels),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        for block in with_replacements(install_steps(), INSTALL_REPLACED):
            mark = time.monotonic()
            container.run(f"set -e\n{block.script}", cwd=CHECKOUT, env=pip, timeout=300)
            key = f"README: {block.heading}"
            timings[key] = timings.get(key, 0.0) + time.monotonic() - mark
        yield Installed(container, sandbox, config_text, timings, config_text)
    finally:
        mark = time.monotonic()
        leftovers = container.shutdown()
        timings["shutdown"] = time.monotonic() - mark
        sandbox.stop()
        print("\nsystemd container timings (s):", json.dumps(timings, indent=1))
    assert leftovers == [], f"the container left things behind: {leftovers}"


@pytest.fixture
def service(installed: Installed) -> Iterator[Installed]:
    """The service running with the test config, whatever the test before left."""
    installed.sandbox.clear_faults()
    installed.sandbox.api_key = KEY
    changed = installed.current_config != installed.config_text
    installed.write_config(installed.config_text)
    if installed.show("ActiveState")["ActiveState"] != "active":
        installed.run(f"systemctl reset-failed {UNIT_NAME}; systemctl start {UNIT_NAME}")
    elif changed:
        installed.reload()
    yield installed
    installed.sandbox.clear_faults()


# -- the tests ----------------------------------------------------------------------------------
def test_start_returns_after_ready_and_status_shows_the_queue(service: Installed) -> None:
    service.run(f"systemctl stop {UNIT_NAME}")
    service.run(f"systemctl start {UNIT_NAME}")
    # Type=notify: start returns once READY=1 came, so it is running and says so at once.
    shown = service.show("ActiveState", "SubState", "StatusText", "Result", "NRestarts")
    assert shown["ActiveState"] == "active" and shown["SubState"] == "running", shown
    assert re.fullmatch(r"\d+ waiting, \d+ uploaded.*", shown["StatusText"]), shown
    journal = service.journal()
    assert "watching 2 folder(s)" in journal
    # The unit's system call filter lets the daemon keep its threads on one CPU.
    assert "cannot change which CPUs" not in journal
    assert "threads kept on CPU" in journal or len(os.sched_getaffinity(0)) < 2


def test_a_file_dropped_by_a_member_of_heygen_drop_is_uploaded(service: Installed) -> None:
    data = media.png(seed=101)
    service.drop("/srv/heygen/backgrounds", "member.png", data)
    sidecar = service.sidecar("/srv/heygen/backgrounds/member.png", status="uploaded")
    assert sidecar["content_type"] == "image/png"  # libmagic, under MemoryDenyWriteExecute=
    assert len(uploads_of(service.sandbox, data)) == 1
    # Owned by the service user, group heygen-drop, readable by the group and its members.
    owner = service.run("stat -c '%U:%G %A' /srv/heygen/backgrounds/member.png.asset.json")
    assert owner.stdout.split() == ["heygen-watcher:heygen-drop", "-rw-rw----"]
    read = service.run("runuser -u alice -- cat /srv/heygen/backgrounds/member.png.asset.json")
    assert json.loads(read.stdout)["asset_id"] == sidecar["asset_id"]
    # The README's way to look at the queue, as the service user.
    (status,) = blocks_under("Day to day")
    assert re.search(r"\b[1-9]\d* uploaded", service.run(f"set -e\n{status.script}").stdout)
    wait_for(
        lambda: re.match(r"0 waiting, [1-9]\d* uploaded", service.show("StatusText")["StatusText"]),
        timeout=30,
        what="StatusText with the upload counted",
    )


def test_the_key_comes_from_load_credential_and_never_reaches_the_journal(
    service: Installed,
) -> None:
    # systemd's copy of the root-only key file, for the service user alone.
    credential = f"/run/credentials/{UNIT_NAME}.service/heygen_api_key"
    assert service.run(f"stat -c '%U %a' {credential}").stdout.split() == ["heygen-watcher", "400"]
    assert "api_key" not in service.run("cat /etc/heygen-watcher/config.yaml").stdout
    # A refused key makes the daemon talk about the key: where it came from, never what it is.
    cursor = service.cursor()
    service.sandbox.api_key = "rotated-elsewhere"
    service.drop("/srv/heygen/backgrounds", "refused.png", media.png(seed=102))
    service.wait_journal("the API refused the key", cursor)
    # SIGHUP re-reads the key and resumes the paused uploads.
    service.sandbox.api_key = KEY
    service.reload()
    service.sidecar("/srv/heygen/backgrounds/refused.png", status="uploaded")
    everything = service.run("journalctl --no-pager -o verbose").stdout
    assert "heygen-watcher" in everything
    assert KEY not in everything
    assert KEY not in service.journal()


def test_a_folder_missing_from_the_drop_in_is_refused_clearly(service: Installed) -> None:
    service.run("install -d -g heygen-drop -m 2770 /srv/heygen/unlisted")
    data = media.png(seed=103)
    service.drop("/srv/heygen/unlisted", "unlisted.png", data)
    pid = service.show("MainPID")["MainPID"]
    cursor = service.cursor()
    service.write_config(config_for(service.sandbox, ("/srv/heygen/unlisted",)))
    service.reload()
    journal = service.journal(after=cursor)
    refusal = (
        "folder not taken: cannot write to /srv/heygen/unlisted (read-only file system); "
        "under systemd, add it to ReadWritePaths= in the unit's drop-in and restart the service"
    )
    lines = [line for line in journal.splitlines() if "unlisted" in line]
    assert lines == [f"error {refusal} folder=/srv/heygen/unlisted"]
    wait_for(
        lambda: (
            "folder not writable: /srv/heygen/unlisted" in service.show("StatusText")["StatusText"]
        ),
        timeout=30,
        what="StatusText naming the folder",
    )
    # The same process goes on with the other folders; the refused one's file is left alone.
    service.drop("/srv/heygen/backgrounds", "elsewhere.png", media.png(seed=104))
    service.sidecar("/srv/heygen/backgrounds/elsewhere.png", status="uploaded")
    assert uploads_of(service.sandbox, data) == []
    assert not service.container.path("/srv/heygen/unlisted/unlisted.png.asset.json").exists()
    assert service.show("MainPID")["MainPID"] == pid
    # Nothing is lost: once the folder is writable (here without a restart), its file is taken.
    cursor = service.cursor()
    service.run(f"systemctl bind {UNIT_NAME} /srv/heygen/unlisted")
    service.wait_journal("folder is writable now; taking its files", cursor)
    service.sidecar("/srv/heygen/unlisted/unlisted.png", status="uploaded")
    assert len(uploads_of(service.sandbox, data)) == 1


def test_a_folder_added_as_the_readme_says_is_watched_after_a_reload(service: Installed) -> None:
    pid = service.show("MainPID")["MainPID"]
    service.write_config(config_for(service.sandbox, (NEW_FOLDER,)))
    cursor = service.cursor()
    for block in with_replacements(blocks_under("Adding a drop folder"), NEW_FOLDER_REPLACED):
        service.run(f"set -e\n{block.script}")
    service.wait_journal("configuration reloaded", cursor)
    service.drop(NEW_FOLDER, "portrait.png", media.png(seed=106))
    service.sidecar(f"{NEW_FOLDER}/portrait.png", status="uploaded")
    assert service.show("MainPID")["MainPID"] == pid
    assert "folder not taken" not in service.journal(after=cursor)


def test_a_broken_config_on_reload_is_refused_and_the_service_keeps_running(
    service: Installed,
) -> None:
    before = service.show("MainPID", "NRestarts")
    cursor = service.cursor()
    service.write_config("folders: [{path: /nonexistent/folder}]\napi: {colour: red}\n")
    service.run(f"systemctl reload {UNIT_NAME}")
    journal = service.wait_journal("reload refused", cursor)
    assert "api.colour" in journal and "folders[0].path" in journal
    service.drop("/srv/heygen/backgrounds", "after-refusal.png", media.png(seed=107))
    service.sidecar("/srv/heygen/backgrounds/after-refusal.png", status="uploaded")
    assert service.show("MainPID", "NRestarts") == before
    assert service.show("ActiveState")["ActiveState"] == "active"


def hold_the_next_put(service: Installed) -> None:
    # The storage holds the upload's PUT far longer than any test runs: the worker wedges.
    service.sandbox.clear_requests()
    service.sandbox.inject(Fault(method="PUT", server="storage", delay_seconds=600))


def wait_for_the_held_put(service: Installed) -> None:
    wait_for(
        lambda: any(r.method == "PUT" and r.status == 0 for r in service.sandbox.requests),
        timeout=30,
        what="the held PUT",
    )


def test_the_watchdog_restarts_a_wedged_daemon_and_the_file_is_uploaded_once(
    service: Installed,
) -> None:
    before = service.show("MainPID", "NRestarts")
    cursor = service.cursor()
    hold_the_next_put(service)
    data = media.png(seed=108)
    service.drop("/srv/heygen/backgrounds", "wedged.png", data)
    wait_for_the_held_put(service)
    # Pings stop after stall_seconds (2 s); WatchdogSec=4 later systemd aborts the process.
    journal = service.wait_journal("Failed with result 'watchdog'", cursor, timeout=60)
    assert "Watchdog timeout" in journal
    assert "withholding watchdog pings" in journal
    wait_for(
        lambda: int(service.show("NRestarts")["NRestarts"]) > int(before["NRestarts"]),
        timeout=30,
        what="NRestarts to grow",
    )
    sidecar = service.sidecar("/srv/heygen/backgrounds/wedged.png", status="uploaded")
    # The restarted daemon resumes the upload while it starts: the sidecar may come before
    # READY=1, so the unit may still be "activating" when it appears.
    wait_for(
        lambda: service.show("ActiveState")["ActiveState"] == "active",
        timeout=30,
        what="the restarted unit to be active",
    )
    assert service.show("MainPID")["MainPID"] != before["MainPID"]
    stored = uploads_of(service.sandbox, data)
    assert [asset.asset_id for asset in stored] == [sidecar["asset_id"]]
    assert stored[0].put_count == 1


def test_stop_during_an_upload_is_clean_and_the_next_start_finishes_it_once(
    service: Installed,
) -> None:
    hold_the_next_put(service)
    data = media.png(seed=109)
    service.drop("/srv/heygen/voiceovers", "cut.png", data)
    wait_for_the_held_put(service)
    started = time.monotonic()
    service.run(f"systemctl stop {UNIT_NAME}")
    service.timings["stop during an upload"] = time.monotonic() - started
    # A stop that ran past TimeoutStopSec= would end in Result=timeout and SIGKILL.
    shown = service.show("ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert shown == {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainStatus": "0",
        "ExecMainCode": "1",  # CLD_EXITED: it exited on its own
    }
    assert not service.container.path("/srv/heygen/voiceovers/cut.png.asset.json").exists()
    service.run(f"systemctl start {UNIT_NAME}")
    sidecar = service.sidecar("/srv/heygen/voiceovers/cut.png", status="uploaded")
    stored = uploads_of(service.sandbox, data)
    assert [asset.asset_id for asset in stored] == [sidecar["asset_id"]]
    assert stored[0].put_count == 1


def test_a_bad_config_fails_the_start_once_with_one_clear_line(service: Installed) -> None:
    service.run(f"systemctl stop {UNIT_NAME}")
    service.write_config(service.config_text + "  - path: /srv/heygen/not-there\n")
    cursor = service.cursor()
    result = service.run(f"systemctl start {UNIT_NAME}", check=False)
    assert result.returncode != 0
    shown = service.show("ActiveState", "Result", "ExecMainStatus", "ExecMainPID", "NRestarts")
    assert shown["ExecMainStatus"] == "2" and shown["Result"] == "exit-code", shown
    # RestartPreventExitStatus=2: several RestartSec= (1 s here) later, still no new attempt.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        now = service.show("ActiveState", "NRestarts")
        assert now == {"ActiveState": "failed", "NRestarts": shown["NRestarts"]}, now
        time.sleep(0.2)
    own = service.run(
        f"journalctl --no-pager -o cat _PID={shown['ExecMainPID']}"
    ).stdout.splitlines()
    assert len(own) == 1, own
    assert "folders[2].path" in own[0] and "/srv/heygen/not-there" in own[0]
    assert "Traceback" not in service.journal(after=cursor)


PROBE = "/usr/local/lib/heygen-watcher-test/systemd_probe.py"
PROBE_COMMAND = f"/opt/heygen-watcher/bin/python {PROBE} /srv/heygen/backgrounds"
CONTROL_UNIT = f"""\
[Unit]
Description=the probe without any hardening, as the same user
[Service]
Type=notify
User=heygen-watcher
Group=heygen-drop
ExecStart={PROBE_COMMAND}
"""


def probe(service: Installed, unit: str) -> dict:
    cursor = len(service.run(f"journalctl -u {unit} --no-pager -o cat").stdout.splitlines())
    service.run(f"systemctl start {unit}")

    def report() -> dict | None:
        output = service.run(f"journalctl -u {unit} --no-pager -o cat").stdout.splitlines()
        lines = [line for line in output[cursor:] if line.startswith("PROBE ")]
        return json.loads(lines[0].removeprefix("PROBE ")) if lines else None

    return wait_for(report, timeout=30, what=f"the report of {unit}")  # type: ignore[return-value]


def test_every_hardening_directive_is_in_force_and_python_magic_still_works(
    service: Installed,
) -> None:
    # The shipped unit as installed, drop-ins and all, with only ExecStart= changed.
    units = "/etc/systemd/system"
    unit = service.container.path(f"{units}/{UNIT_NAME}.service").read_text()
    unit, count = re.subn(r"^ExecStart=.*$", f"ExecStart={PROBE_COMMAND}", unit, flags=re.M)
    assert count == 1
    service.container.path(f"{units}/heygen-watcher-probe.service").write_text(unit)
    service.container.path(f"{units}/heygen-watcher-control.service").write_text(CONTROL_UNIT)
    service.run(
        f"cp -r {DROP_INS} {units}/heygen-watcher-probe.service.d && systemctl daemon-reload"
        " && touch /tmp/heygen-test-marker"
    )
    hardened = probe(service, "heygen-watcher-probe")
    control = probe(service, "heygen-watcher-control")
    # What the daemon itself needs still works: libmagic through ctypes (MemoryDenyWriteExecute=,
    # SystemCallFilter=), a ctypes callback, TLS, and the credential, for its user alone.
    assert hardened["sniff"] == "image/png"
    assert hardened["ctypes callback"] == hardened["tls context"] == "ok"
    assert hardened["credential"] == {
        "mode": "0o400",
        "sha256": hashlib.sha256(f"{KEY}\n".encode()).hexdigest(),
    }
    assert (hardened["user"], hardened["group"]) == ("heygen-watcher", "heygen-drop")
    for path in ("write drop folder", "write state directory", "write /tmp"):
        assert hardened[path] == "ok", path
    for family in ("AF_INET", "AF_INET6", "AF_UNIX"):
        assert hardened[f"socket {family}"] == "ok", family
    # Each directive's effect, and proof that the check can fail: without the unit's
    # hardening, the same process as the same user sees something else.
    enforced = {
        "UMask=0007": ("umask", "0o7"),
        "NoNewPrivileges=yes": ("NoNewPrivs", "1"),
        "CapabilityBoundingSet=": ("CapBnd", "0000000000000000"),
        "PrivateUsers=yes": ("uid_map entries", 2),
        "ProtectSystem=strict (/usr)": ("write /usr", "EROFS"),
        "ProtectSystem=strict (/etc)": ("write /etc", "EROFS"),
        "ProtectSystem=strict (/var)": ("write /var/lib", "EROFS"),
        "ProtectHome=yes": ("list /home", "EACCES"),
        "PrivateTmp=yes": ("host /tmp marker", False),
        "MemoryDenyWriteExecute=yes": ("mmap write+execute", "EPERM"),
        "RestrictAddressFamilies= (AF_NETLINK)": ("socket AF_NETLINK", "EAFNOSUPPORT"),
        "RestrictAddressFamilies= (AF_PACKET)": ("socket AF_PACKET", "EAFNOSUPPORT"),
        "SystemCallFilter=~@resources": ("setpriority (@resources)", "EPERM"),
        "SystemCallFilter=~@privileged": ("setuid (@privileged)", "EPERM"),
        "RestrictNamespaces=yes": ("unshare a user namespace", "EPERM"),
        "LockPersonality=yes": ("personality", "EPERM"),
        "RestrictSUIDSGID=yes": ("setgid bit", "EPERM"),
        "ProtectProc=invisible": ("/proc/1", False),
        "ProcSubset=pid": ("/proc/stat", False),
        "ProcSubset=pid (/proc/sys)": ("/proc/sys", False),
        "PrivateDevices=yes": ("/dev/net", False),
    }
    for report in (hardened, control):
        report["/dev/net"] = "net" in report["/dev"]
    for directive, (check, expected) in enforced.items():
        assert hardened[check] == expected, f"{directive}: {check} = {hardened[check]!r}"
        assert control[check] != expected, f"{directive}: the control sees {expected!r} too"
    # Namespaces of their own, where the container's PID 1 (and the control) share one.
    for directive, name in [
        ("PrivateIPC=yes", "ipc"),
        ("ProtectHostname=yes", "uts"),
        ("PrivateUsers=yes", "user"),
        ("PrivateMounts=yes", "mnt"),
    ]:
        container = os.readlink(f"/proc/{service.container.pid1}/ns/{name}")
        assert hardened["namespaces"][name] != container, directive
        assert hardened["namespaces"][name] != control["namespaces"][name], directive
    # Not observable from inside this container (nspawn already hides /dev/kmsg, mounts /proc/sys
    # and /sys/fs/cgroup read-only, has no /usr/lib/modules, and an unprivileged process cannot
    # set the clock or a realtime policy anyway): at least systemd has them in force.
    shown = service.run(
        "systemctl show heygen-watcher-probe -p ProtectClock -p ProtectKernelTunables"
        " -p ProtectKernelModules -p ProtectKernelLogs -p ProtectControlGroups"
        " -p RestrictRealtime -p KeyringMode -p RemoveIPC -p DevicePolicy"
        " -p SystemCallArchitectures -p SystemCallErrorNumber"
    ).stdout.split()
    assert sorted(shown) == [
        "DevicePolicy=closed",
        "KeyringMode=private",
        "ProtectClock=yes",
        "ProtectControlGroups=yes",
        "ProtectKernelLogs=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelTunables=yes",
        "RemoveIPC=yes",
        "RestrictRealtime=yes",
        "SystemCallArchitectures=native",
        "SystemCallErrorNumber=1",
    ]
