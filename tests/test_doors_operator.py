"""What an operator sees: start-up lines, timestamps, -v, scan's summary, bar and dry run."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import media
from conftest import SANDBOX_KEY, wait_for
from daemon_helpers import (
    KEY_ENV,
    cli,
    env_with,
    start_cli,
    stop_cli,
    wait_sidecar,
)
from doors_helpers import folder_config

from watcher.sandbox import Sandbox

# -- an operator can see what it does -----------------------------------------------------------
ISO_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (info|warning|debug) ")


def test_scan_summarises_what_this_run_did(tmp_path: Path, sandbox: Sandbox):
    config, drop = folder_config(tmp_path, sandbox)
    (drop / "a.png").write_bytes(media.png(seed=71))
    (drop / "b.png").write_bytes(media.png(seed=72))
    first = cli("scan", "-c", str(config), env=KEY_ENV)
    assert first.returncode == 0, first.stderr
    assert "this run: 2 uploaded, 0 reused, 0 rejected, 0 failed, 0 already done" in first.stderr
    (drop / "copy.png").write_bytes((drop / "a.png").read_bytes())
    (drop / "notes.png").write_bytes(b"just words\n")
    second = cli("scan", "-c", str(config), env=KEY_ENV)
    assert "this run: 0 uploaded, 1 reused, 1 rejected, 0 failed, 2 already done" in second.stderr


def test_scan_dry_run_says_what_and_why_and_touches_nothing(tmp_path: Path, sandbox: Sandbox):
    config, drop = folder_config(tmp_path, sandbox)
    (drop / "a.png").write_bytes(media.png(seed=73))
    (drop / "notes.png").write_bytes(b"just words\n")
    result = cli("scan", "-c", str(config), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert (
        lines[0]
        == f"would refuse: {drop / 'notes.png'}: unsupported type: "
        + lines[0].split("unsupported type: ")[1]
    )
    assert lines[1] == f"would upload: {drop / 'a.png'}: image/png"
    assert "1 would be uploaded, 1 refused, 0 skipped, 0 already done" in result.stderr
    assert sorted(p.name for p in drop.iterdir()) == ["a.png", "notes.png"]
    assert not (tmp_path / "state").exists()
    assert sandbox.requests == []
    # After a real scan, the same files are already done (read from the journal, read-only).
    assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 0  # a rejection is final
    again = cli("scan", "-c", str(config), "--dry-run")
    assert again.stdout == "" and "2 already done" in again.stderr


def test_logs_have_iso_timestamps_except_under_journald(tmp_path: Path, sandbox: Sandbox):
    config, drop = folder_config(tmp_path, sandbox)
    (drop / "notes.png").write_bytes(b"just words\n")
    plain = cli("scan", "-c", str(config), env=KEY_ENV)
    logged = [line for line in plain.stderr.splitlines() if "rejected:" in line]
    assert logged and ISO_STAMP.match(logged[0]), logged
    (drop / "more.png").write_bytes(b"more words\n")
    err_file = tmp_path / "stderr.txt"
    with open(err_file, "w") as err:
        info = os.fstat(err.fileno())
        env = {**KEY_ENV, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        subprocess.run(
            [sys.executable, "-m", "watcher", "scan", "-c", str(config)],
            stderr=err,
            stdout=subprocess.DEVNULL,
            env=env_with(env),
            timeout=60,
        )
    journal_lines = [line for line in err_file.read_text().splitlines() if "rejected:" in line]
    assert journal_lines and journal_lines[0].startswith("info rejected:"), journal_lines


def test_start_up_says_what_it_watches_and_verbose_logs_every_state_change(
    tmp_path: Path, sandbox: Sandbox
):
    config, drop = folder_config(tmp_path, sandbox)
    daemon = start_cli("run", "-c", str(config), "-v", env=KEY_ENV)
    try:
        (drop / "a.png").write_bytes(media.png(seed=74))
        wait_sidecar(drop / "a.png")
        wait_for(lambda: (tmp_path / "state" / "journal.sqlite3").exists())
        code, _, err = stop_cli(daemon)
    finally:
        daemon.kill()
    assert code == 0, err
    (started,) = [line for line in err.splitlines() if "heygen-watcher 0.1.0 started" in line]
    for part in (
        f"api={sandbox.api_url}",
        "protocol=v1-presigned",
        'key_from="environment variable HEYGEN_API_KEY"',
        f"state_dir={tmp_path / 'state'}",
        f"journal={tmp_path / 'state' / 'journal.sqlite3'}",
    ):
        assert part in started, part
    (folder_line,) = [line for line in err.splitlines() if "watching folder" in line]
    for part in (f"folder={drop}", "types=image/jpeg,", "settle_seconds=", "template=-"):
        assert part in folder_line, part
    assert SANDBOX_KEY not in err
    changes = [line.split(" debug ")[1] for line in err.splitlines() if " → " in line]
    assert [change.split(" file=")[0] for change in changes] == [
        "new → queued",
        "queued → uploading",
        "uploading → recording",
        "recording → uploaded",
    ]


def test_scan_draws_a_progress_bar_on_a_terminal(tmp_path: Path, sandbox: Sandbox):
    config, drop = folder_config(tmp_path, sandbox)
    for seed in range(3):
        (drop / f"{seed}.png").write_bytes(media.png(seed=80 + seed))
    (drop / "notes.png").write_bytes(b"words\n")
    main, child = pty.openpty()
    # A terminal 120 columns wide (a fresh pty has no size, so the bar would have no room).
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "watcher", "scan", "-c", str(config)],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env_with(KEY_ENV),
    )
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert process.wait(timeout=60) == 0
    text = output.decode(errors="replace")
    assert "4/4" in text and "file/s" in text
    # The log line sits on a line of its own, not inside the bar.
    (rejected,) = [line for line in text.replace("\r", "\n").splitlines() if "rejected:" in line]
    assert ISO_STAMP.match(rejected.strip()), rejected


def test_shell_completion_for_bash_and_zsh(tmp_path: Path):
    bash = cli("--print-completion", "bash")
    assert bash.returncode == 0 and "check-config" in bash.stdout
    script = tmp_path / "complete.bash"
    script.write_text(bash.stdout)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    zsh = cli("--print-completion", "zsh")
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef heygen-watcher")
