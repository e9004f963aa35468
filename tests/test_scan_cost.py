"""What a scan costs over a large finished tree, and what it must still find.

A periodic pass stats each directory and lists only those whose stamp moved; events lost to
an inotify queue overflow make a full pass at once; files the daemon already holds are not
looked at again. Real daemon, real folders, real sandbox.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import media
from conftest import SANDBOX_KEY, wait_for
from daemon_helpers import make_config, read_sidecar, running, wait_sidecar

from watcher.config.apikey import ApiKey
from watcher.sandbox import Sandbox
from watcher.service.daemon import Daemon

SETTLE = 0.3


def done_tree(root: Path, dirs: int, per_dir: int) -> list[Path]:
    """Files already uploaded by an earlier run: each with its sidecar, as the daemon wrote it."""
    made = []
    for number in range(dirs * per_dir):
        sub = root / f"batch-{number // per_dir}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"old-{number:04}.png"
        path.write_bytes(media.png(seed=number))
        info = path.stat()
        document = {
            "schema": "heygen-watcher/asset/v1",
            "status": "uploaded",
            "file": path.name,
            "size": info.st_size,
            "sha256": f"{number:064x}",
            "content_type": "image/png",
            "asset_id": f"asset{number}",
            "url": f"https://files.heygen.ai/asset/asset{number}",
            "protocol": "v1-presigned",
            "uploaded_at": "2026-11-01T00:00:00Z",
            "mtime_ns": info.st_mtime_ns,
        }
        (sub / (path.name + ".asset.json")).write_text(json.dumps(document))
        made.append(path)
    return made


def unwatched_daemon(sandbox: Sandbox, tmp_path: Path, drop: Path, **options: object) -> Daemon:
    """A daemon that scanned at start but watches nothing: whatever happens in the folder
    afterwards happens behind inotify's back, and only a scan can find it."""
    folder = {"path": str(drop), "settle_seconds": SETTLE, "recursive": True, **options}
    config = make_config(sandbox, tmp_path, [folder], rescan_seconds=3600)
    daemon = Daemon(config, key=ApiKey(SANDBOX_KEY, "test"))
    daemon.start(watch=False)
    daemon.wait_until_idle()
    return daemon


def settled_pass(daemon: Daemon) -> None:
    """Periodic passes until one lists no directory: directories changed in the last 2 s are
    listed again (the file system's clock may not have ticked since), older ones are trusted.
    Not "until one stats no file": the folder's root holds no file to stat, yet the daemon's
    claim file moved its mtime at start, so it may still be listed after its subfolders."""
    wait_for(
        lambda: daemon.scanner.scan_all() == 0 and daemon.scanner.stamps.listed == 0,
        20,
        "a periodic pass that lists no directory",
    )
    assert daemon.scanner.scanned == 0


def rewrite_in_place(target: Path, seed: int) -> None:
    """New bytes in the same inode and directory entry: the directory's stamp does not move."""
    with open(target, "r+b") as out:
        out.truncate(0)
        out.write(media.png(width=8, seed=seed))


def wait_for_resent(target: Path) -> None:
    """Until the sidecar describes the file's new bytes."""
    wait_for(
        lambda: read_sidecar(target)["size"] == target.stat().st_size,
        10,
        "the rewritten file's sidecar",
    )


def test_a_periodic_pass_stats_no_file_of_unchanged_directories_yet_finds_a_new_one(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    done_tree(drop, dirs=3, per_dir=20)
    daemon = unwatched_daemon(sandbox, tmp_path, drop)
    try:
        assert daemon.journal.counts() == {"uploaded": 60}
        settled_pass(daemon)
        assert (daemon.scanner.stamps.skipped, daemon.scanner.stamps.listed) == (
            4,
            0,
        )  # the root and 3 below
        late = drop / "batch-1" / "late.png"
        late.write_bytes(media.png(seed=999))
        assert daemon.scanner.scan_all() == 1
        # Only the directory whose entries changed was listed, and only its files stat'ed.
        assert daemon.scanner.scanned == 21
        assert daemon.scanner.stamps.listed == 1
        assert wait_sidecar(late)["status"] == "uploaded"
    finally:
        daemon.stop()


def test_a_file_deleted_and_made_again_behind_the_daemons_back_is_found(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    files = done_tree(drop, dirs=2, per_dir=5)
    daemon = unwatched_daemon(sandbox, tmp_path, drop)
    try:
        settled_pass(daemon)
        target = files[7]
        target.unlink()
        target.write_bytes(media.png(seed=777))  # a new inode and new bytes, same name
        assert daemon.scanner.scan_all() == 1
        document = wait_for(
            lambda: (d := read_sidecar(target))["sha256"] != f"{7:064x}" and d,
            10,
            "the new version's sidecar",
        )
        assert document["size"] == target.stat().st_size
    finally:
        daemon.stop()


def test_a_full_pass_finds_a_file_rewritten_in_place(tmp_path: Path, drop: Path, sandbox: Sandbox):
    """The documented trade-off: an in-place rewrite moves no directory's mtime, so a periodic
    pass does not see it (inotify reports it); a full pass (at start, after lost events) does."""
    files = done_tree(drop, dirs=1, per_dir=5)
    daemon = unwatched_daemon(sandbox, tmp_path, drop)
    try:
        settled_pass(daemon)
        target = files[2]
        folder_stamp = target.parent.stat().st_mtime_ns
        rewrite_in_place(target, seed=555)
        assert target.parent.stat().st_mtime_ns == folder_stamp
        assert daemon.scanner.scan_all() == 0
        assert daemon.scanner.scan_all(full=True) == 1
        wait_for_resent(target)
    finally:
        daemon.stop()


def test_a_rescan_leaves_files_waiting_to_settle_alone(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    folder = {"path": str(drop), "settle_seconds": 120, "trust_close_write": False}
    config = make_config(sandbox, tmp_path, [folder], rescan_seconds=3600)
    with running(config) as daemon:
        (drop / "slow.png").write_bytes(media.png(seed=3))
        wait_for(lambda: daemon.settler.pending_count() == 1, 10, "the file to wait")
        assert daemon.scanner.scan_all() == 0
        assert daemon.scanner.scanned == 0


def test_watchdogs_overflow_warning_makes_a_full_scan_at_once(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    """The warning as watchdog logs it on IN_Q_OVERFLOW (its inotify_c module)."""
    done_tree(drop, dirs=2, per_dir=5)
    folder = {"path": str(drop), "settle_seconds": SETTLE}
    config = make_config(sandbox, tmp_path, [folder], rescan_seconds=3600)
    with running(config) as daemon:
        assert daemon.scanner.full_scans == 0
        # watchdog's own logger (its inotify_c module), as watchdog 7.1 names it.
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        wait_for(lambda: daemon.scanner.full_scans == 1, 10, "a full scan")
        wait_for(lambda: daemon.scanner.scanned == 10, 10, "the full scan to stat every file")


def test_a_real_inotify_overflow_makes_a_full_scan(tmp_path: Path, drop: Path, sandbox: Sandbox):
    """Another process floods the folder with attribute changes (two files in turn, so the
    kernel cannot merge them) faster than watchdog reads them, until the kernel's queue
    (fs.inotify.max_queued_events) overflows and the daemon hears of it."""
    config = make_config(
        sandbox, tmp_path, [{"path": str(drop), "settle_seconds": SETTLE}], rescan_seconds=3600
    )
    stop_flag = tmp_path / "stop-flood"
    with running(config) as daemon:
        flood = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os, sys\n"
                "a, b, stop = sys.argv[1:]\n"
                "open(a, 'w').close(); open(b, 'w').close()\n"
                "n = 0\n"
                "while n % 20000 or not os.path.exists(stop):\n"
                "    os.utime(a); os.utime(b); n += 1\n",
                str(drop / ".flood-a"),
                str(drop / ".flood-b"),
                str(stop_flag),
            ]
        )
        try:
            wait_for(lambda: daemon.scanner.full_scans >= 1, 60, "the overflow to be heard")
        finally:
            stop_flag.touch()
            flood.wait(timeout=30)
        late = drop / "after.png"
        late.write_bytes(media.png(seed=11))
        assert wait_sidecar(late)["status"] == "uploaded"
    assert os.path.exists(drop / ".flood-a")


def test_a_polled_folder_is_polled_by_directory_and_still_finds_every_change(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    """`polling: true` (a network share: no inotify): each poll stats the directories and
    lists those whose stamp moved; a file rewritten in place is found by the rescan, which
    walks a polled folder in full."""
    files = done_tree(drop, dirs=3, per_dir=10)
    folder = {"path": str(drop), "settle_seconds": SETTLE, "polling": True}
    config = make_config(sandbox, tmp_path, [folder], rescan_seconds=3600)
    with running(config) as daemon:
        assert not [t for t in threading.enumerate() if t.name.startswith("watch")]
        wait_for(
            lambda: (
                daemon.scanner.poll_stamps.skipped == 4 and daemon.scanner.poll_stamps.listed == 0
            ),
            20,
            "a poll that lists no directory",
        )
        late = drop / "batch-2" / "late.png"
        late.write_bytes(media.png(seed=1234))
        assert wait_sidecar(late)["status"] == "uploaded"
        target = files[4]
        rewrite_in_place(target, seed=4321)
        assert daemon.scanner.scan_all() == 1
        wait_for_resent(target)


def test_a_restart_lists_only_directories_changed_while_stopped_then_walks_the_rest(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    """After a clean stop the start-up scan stats only the files of directories that changed
    meanwhile; a file rewritten in place while stopped is found by the full walk that follows
    in the background."""
    files = done_tree(drop, dirs=3, per_dir=10)
    folder = {"path": str(drop), "settle_seconds": SETTLE}
    config = make_config(sandbox, tmp_path, [folder], rescan_seconds=3600)
    with running(config) as daemon:
        assert daemon.scanner.start_scanned == 30
        settled_pass(daemon)
    late = drop / "batch-1" / "late.png"
    late.write_bytes(media.png(seed=2024))
    target = files[3]
    rewrite_in_place(target, seed=2025)  # batch-0: its directory's stamp does not move
    with running(config) as daemon:
        assert daemon.scanner.start_scanned == 11  # batch-1 only: its 10 files and the new one
        assert wait_sidecar(late)["status"] == "uploaded"
        wait_for(lambda: daemon.scanner.full_scans == 1, 20, "the walk after the start")
        wait_for_resent(target)


def test_stamps_left_for_another_journal_are_not_trusted(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    done_tree(drop, dirs=2, per_dir=5)
    folder = {"path": str(drop), "settle_seconds": SETTLE}
    config = make_config(sandbox, tmp_path, [folder], rescan_seconds=3600)
    with running(config) as daemon:
        settled_pass(daemon)
    assert (tmp_path / "state" / "dirstamps.json").exists()
    for name in os.listdir(tmp_path / "state"):
        if name.startswith("journal.sqlite3"):
            os.unlink(tmp_path / "state" / name)
    with running(config) as daemon:
        assert daemon.scanner.start_scanned == 10
        assert daemon.journal.counts() == {"uploaded": 10}


def test_a_directory_with_a_file_still_waiting_is_not_trusted_across_a_restart(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    """A file waiting to settle when the daemon stops has no journal row: its directory must
    be listed again at the next start, however old its stamp."""
    folder = {"path": str(drop), "settle_seconds": 120, "trust_close_write": False}
    config = make_config(sandbox, tmp_path, [folder], rescan_seconds=3600)
    with running(config) as daemon:
        (drop / "slow.png").write_bytes(media.png(seed=5))
        wait_for(lambda: daemon.settler.pending_count() == 1, 10, "the file to wait")
        # Old enough to be trusted, were it not for the file waiting there.
        wait_for(lambda: time.time() - drop.stat().st_ctime > 2.5, 10, "the folder to age")
        daemon.scanner.scan_all()
    with running(config) as daemon:
        assert daemon.scanner.start_scanned == 1
        assert daemon.settler.pending_count() == 1
