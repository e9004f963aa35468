"""Intake and state stages alone: the settler on its injectable clock, admission's screens,
sidecar writing. No daemon, no threads started, no sleeps."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
from conftest import wait_for
from watchdog.events import (
    FileAttribEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver

from watcher.intake.admission import Outcome, screen_name, screen_stat
from watcher.intake.settle import Settler
from watcher.state import sidecar

SETTLE = 2.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def look(settler: Settler, path: Path) -> float | None:
    """One look at ``path`` by the settler (what its thread does when the path is due)."""
    return settler._next_look(settler._pending[path])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settler(clock: FakeClock) -> Settler:
    return Settler(on_ready=lambda path, folder: None, clock=clock)


def notice(settler: Settler, path: Path, *, finished: bool = False) -> None:
    # trust_ctime=False: only the settler's own looks count, so the fake clock decides.
    settler.notice(path, None, SETTLE, trust_ctime=False, finished=finished)


def test_a_quiet_file_is_ready_after_the_settle_period(
    tmp_path: Path, settler: Settler, clock: FakeClock
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 10)
    notice(settler, path)
    assert look(settler, path) == clock.now + SETTLE
    clock.now += SETTLE - 0.1
    assert look(settler, path) == pytest.approx(clock.now + 0.1)
    clock.now += 0.1
    assert look(settler, path) is None


def test_a_change_restarts_the_quiet_period(
    tmp_path: Path, settler: Settler, clock: FakeClock
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 10)
    notice(settler, path)
    look(settler, path)
    clock.now += SETTLE - 0.5
    with open(path, "ab") as out:
        out.write(b"more")
    assert look(settler, path) == clock.now + SETTLE  # from this look on, not from the first
    clock.now += SETTLE
    assert look(settler, path) is None


def test_a_rename_counts_even_after_a_look_saw_the_file_mid_write(
    tmp_path: Path, settler: Settler, clock: FakeClock
) -> None:
    # Regression: an earlier look saw the file growing; the rename into place that followed
    # is how the writer says "done", so it must not wait out a fresh quiet period.
    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 10)
    notice(settler, path)
    look(settler, path)
    with open(path, "ab") as out:
        out.write(b"the rest")
    notice(settler, path, finished=True)
    assert look(settler, path) is None


def test_the_rename_hint_is_used_once(tmp_path: Path, settler: Settler, clock: FakeClock) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"x")
    notice(settler, path, finished=True)
    entry = settler._pending[path]
    assert settler._next_look(entry) is None
    assert not entry.finished_hint  # a later change waits for the quiet period like any other


def test_a_vanished_or_unusual_path_is_handed_on_for_the_pipeline_to_judge(
    tmp_path: Path, settler: Settler
) -> None:
    gone = tmp_path / "gone.png"
    gone.write_bytes(b"x")
    notice(settler, gone)
    gone.unlink()
    assert look(settler, gone) is None
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    notice(settler, fifo)
    assert look(settler, fifo) is None  # never opened: the pipeline skips it with a log line


# -- admission's screens ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("relative", "why"),
    [
        (".hidden.png", "hidden"),
        ("sub/.cache/a.png", "hidden"),
        ("a.png.asset.json", "sidecar"),
        (".a.png.asset.json.tmp-abc", "hidden"),
        ("movie.mp4.part", "partial download or temporary file"),
        ("movie.mp4.crdownload", "partial download or temporary file"),
        ("~lock.png", "partial download or temporary file"),
        ("x.png.swp", "partial download or temporary file"),
    ],
)
def test_names_we_never_touch(relative: str, why: str) -> None:
    decision = screen_name(relative)
    assert decision is not None and decision.outcome is Outcome.IGNORE and decision.reason == why


def test_scripts_and_ignore_globs() -> None:
    assert screen_name("office.txt") is None
    assert screen_name("office.txt", scripts=True) is not None
    assert screen_name("drafts/a.png", ("drafts/*",)) is not None
    assert screen_name("b.raw.png", ("*.raw.png",)) is not None
    assert screen_name("b.png", ("*.raw.png",)) is None


def test_only_regular_non_empty_files_go_on(tmp_path: Path) -> None:
    regular = tmp_path / "a.png"
    regular.write_bytes(b"x")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    link = tmp_path / "link.png"
    link.symlink_to(regular)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.png"))
    try:
        assert screen_stat(regular.lstat()) is None
        verdicts = {
            name: screen_stat((tmp_path / name).lstat())
            for name in ("empty.png", "link.png", "pipe.png", "sock.png")
        }
    finally:
        server.close()
    assert {name: v.outcome if v else None for name, v in verdicts.items()} == {
        "empty.png": Outcome.REJECT,
        "link.png": Outcome.SKIP,
        "pipe.png": Outcome.SKIP,
        "sock.png": Outcome.SKIP,
    }
    assert screen_stat(tmp_path.lstat()) is not None


# -- sidecars ---------------------------------------------------------------------------------
def test_a_sidecar_is_written_whole_with_the_umask_and_read_back(tmp_path: Path) -> None:
    location = sidecar.sidecar_path(tmp_path / "a.png")
    document = sidecar.build(status="uploaded", file=tmp_path / "a.png", size=3, asset_id="a1")
    sidecar.write(location, document)
    assert sidecar.read(location) == document
    assert json.loads(location.read_text())["schema"] == sidecar.SCHEMA
    mode = stat.S_IMODE(location.stat().st_mode)
    assert mode == 0o666 & ~sidecar.current_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["a.png.asset.json"]  # no temp file left


def test_a_sidecar_write_changes_no_attributes_under_the_folders_watch(tmp_path: Path) -> None:
    """Every event of a sidecar write costs each watcher of the folder: where the umask
    already gives the file its mode, no chmod (an attribute event) is added to them."""
    seen: list[tuple[str, str]] = []

    class Recorder(FileSystemEventHandler):
        def on_any_event(self, event: object) -> None:
            assert isinstance(event, FileSystemEvent)
            seen.append((event.event_type, os.fsdecode(event.src_path)))

    observer = InotifyObserver()
    observer.schedule(
        Recorder(),
        str(tmp_path),
        event_filter=[FileAttribEvent, FileCreatedEvent, FileModifiedEvent],
    )
    observer.start()
    try:
        sidecar.write(sidecar.sidecar_path(tmp_path / "a.png"), {"schema": sidecar.SCHEMA})
        (tmp_path / "sentinel").write_bytes(b"")  # its event comes after every earlier one
        wait_for(lambda: ("created", str(tmp_path / "sentinel")) in seen, what="the sentinel")
    finally:
        observer.stop()
        observer.join()
    assert [kind for kind, _ in seen if kind == "attrib"] == []
    assert [kind for kind, _ in seen].count("created") == 2  # the temp file, the sentinel


def test_a_sidecar_created_with_another_mode_is_given_the_umasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a default ACL of the folder would: the file comes out other than the umask says.
    monkeypatch.setattr(sidecar, "current_umask", lambda: 0o000)
    location = sidecar.sidecar_path(tmp_path / "a.png")
    sidecar.write(location, {"schema": sidecar.SCHEMA})
    assert stat.S_IMODE(location.stat().st_mode) == 0o666


def test_a_failed_write_leaves_neither_a_temp_file_nor_half_a_sidecar(tmp_path: Path) -> None:
    location = sidecar.sidecar_path(tmp_path / "a.png")
    location.mkdir()  # the rename onto it fails
    with pytest.raises(OSError):
        sidecar.write(location, {"schema": sidecar.SCHEMA, "status": "uploaded"})
    assert [p.name for p in tmp_path.iterdir()] == ["a.png.asset.json"]


def test_what_is_not_our_sidecar_reads_as_none(tmp_path: Path) -> None:
    other = tmp_path / "x.asset.json"
    other.write_text('{"schema": "someone-else/v1"}')
    assert sidecar.read(other) is None
    other.write_text("not json")
    assert sidecar.read(other) is None
    assert sidecar.read(tmp_path / "missing.asset.json") is None
