"""Stages on their own, without a daemon: the worker pool's accounting, placement, retry delays."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import media
import pytest
from conftest import SANDBOX_KEY
from daemon_helpers import make_config

from watcher.config import FolderConfig
from watcher.config.apikey import ApiKey
from watcher.config.live import LiveConfig
from watcher.heygen.client import HeyGenClient
from watcher.heygen.uploadfile import UploadProtocol
from watcher.pipeline.outcome import AuthPause, retry_delay_seconds
from watcher.pipeline.pipeline import build_pipeline
from watcher.pipeline.workpool import Work, WorkPool
from watcher.sandbox import Sandbox
from watcher.state.journal_sqlite import SqliteJournal as Journal
from watcher.state.placement import move_file
from watcher.state.states import FileState


# -- the worker pool ------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path: Path) -> FolderConfig:
    return FolderConfig(path=tmp_path)


def a_pool(process, **options) -> WorkPool:  # type: ignore[no-untyped-def]
    pool = WorkPool(2, process, lambda path, folder: None, **options)
    pool.start()
    return pool


def test_a_release_twice_or_for_a_stranger_changes_no_count(folder: FolderConfig) -> None:
    handed: list[Path] = []

    def process(work: Work) -> None:
        pool.hand_off(work.path)
        handed.append(work.path)

    pool = a_pool(process)
    pool.submit(folder.path / "a", folder)
    assert not pool.wait_idle(0.2)  # handed off: still in flight until released
    pool.release(handed[0])
    pool.release(handed[0])
    pool.release(folder.path / "never-submitted")
    assert pool.wait_idle(5) and pool.busy == 0
    pool.submit(folder.path / "b", folder)  # the count still works afterwards
    assert not pool.wait_idle(0.2)
    pool.release(handed[1])
    assert pool.wait_idle(5) and pool.busy == 0
    pool.stop_accepting()
    assert pool.join(5)


def test_an_unexpected_error_is_reported_and_never_leaks_a_slot(folder: FolderConfig) -> None:
    seen: list[tuple[Path, str]] = []

    def process(work: Work) -> None:
        raise RuntimeError("a bug")

    pool = a_pool(process, on_unexpected=lambda path, error: seen.append((path, str(error))))
    pool.submit(folder.path / "a", folder)
    assert pool.wait_idle(5)
    assert seen == [(folder.path / "a", "a bug")]
    pool.stop_accepting()
    assert pool.join(5)


def test_a_path_seen_again_while_in_flight_is_looked_at_once_more(folder: FolderConfig) -> None:
    started, go_on = threading.Event(), threading.Event()
    again: list[Path] = []

    def process(work: Work) -> None:
        started.set()
        go_on.wait(5)

    pool = WorkPool(2, process, lambda path, folder: again.append(path))
    pool.start()
    pool.submit(folder.path / "a", folder)
    assert started.wait(5)
    pool.submit(folder.path / "a", folder)
    go_on.set()
    assert pool.wait_idle(5)
    assert again == [folder.path / "a"]
    pool.stop_accepting()
    assert pool.join(5)


# -- placement ------------------------------------------------------------------------------------
@pytest.fixture
def other_filesystem() -> Iterator[Path]:
    """A folder on another filesystem than the temp folder (tmpfs), where links cannot go."""
    base = Path("/dev/shm")
    if not base.is_dir() or os.stat(base).st_dev == os.stat(Path.cwd()).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to move across")
    folder = base / f"heygen-watcher-test-{os.getpid()}-{threading.get_ident()}"
    folder.mkdir()
    yield folder
    for entry in folder.iterdir():
        entry.unlink()
    folder.rmdir()


def test_move_never_replaces_a_file_or_a_sidecar_name(tmp_path: Path) -> None:
    source = tmp_path / "in" / "a.png"
    source.parent.mkdir()
    source.write_bytes(b"new")
    target = tmp_path / "out" / "a.png"
    target.parent.mkdir()
    target.write_bytes(b"old")
    (tmp_path / "out" / "a (1).png.asset.json").write_text("{}")
    moved = move_file(source, target)
    assert moved == tmp_path / "out" / "a (2).png"
    assert moved.read_bytes() == b"new" and target.read_bytes() == b"old"
    assert not source.exists()


def test_move_across_filesystems_never_replaces_either(
    tmp_path: Path, other_filesystem: Path
) -> None:
    source = tmp_path / "a.png"
    source.write_bytes(b"new")
    target = other_filesystem / "a.png"
    target.write_bytes(b"old")
    moved = move_file(source, target)
    assert moved == other_filesystem / "a (1).png"
    assert moved.read_bytes() == b"new" and target.read_bytes() == b"old"
    assert not source.exists()
    assert sorted(p.name for p in other_filesystem.iterdir()) == ["a (1).png", "a.png"]


# -- retry delays ---------------------------------------------------------------------------------
def test_retry_delays_double_and_add_up_to_about_the_window() -> None:
    window = 3600.0
    delays = [retry_delay_seconds(attempt, 5, window) for attempt in range(1, 5)]
    assert all(later > earlier for earlier, later in itertools.pairwise(delays))
    assert 0.75 * window <= sum(delays) <= 1.25 * window


# -- the pipeline's last line of defence -----------------------------------------------------------
class _BuggyProtocol(UploadProtocol):
    """Stands in for a bug: an upload that raises what no code path expects."""

    name = "v1-presigned"

    def upload(self, file, *, resume=None, on_slot=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the upload code")


def test_a_bug_mid_upload_leaves_the_file_retryable_and_counted(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.png").write_bytes(media.png(seed=7))
    config = make_config(sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}])
    journal = Journal(config.journal_path)
    events: list[tuple[str, dict[str, object]]] = []
    client = HeyGenClient(config.api, ApiKey(SANDBOX_KEY, "test"))
    pipeline = build_pipeline(
        LiveConfig(config),
        journal,
        client,
        _BuggyProtocol(client),
        renotice=lambda path, folder: None,
        on_event=lambda kind, details: events.append((kind, details)),
    )
    pipeline.pool.start()
    try:
        pipeline.pool.submit(drop / "a.png", config.folders[0])
        assert pipeline.pool.wait_idle(10)
        row = journal.get(str(drop / "a.png"))
        assert row is not None and row.state is FileState.RETRYING
        assert row.next_attempt_at is not None
        assert row.last_error == "internal error: RuntimeError: a bug in the upload code"
        assert ("failure", {"kind": "internal"}) in events
    finally:
        pipeline.pool.stop_accepting()
        pipeline.pool.join(5)
        client.close()
        journal.close()


def test_the_401_pause_is_shared_and_ends_for_everyone_at_a_key_reload() -> None:
    """Two daemons' pauses over one shared record (the journal's, here a variable)."""
    recorded: list[str | None] = [None]
    fleet = [
        AuthPause(
            shared=lambda: recorded[0],
            on_set=lambda reason: recorded.__setitem__(0, reason),
            on_clear=lambda: recorded.__setitem__(0, None),
        )
        for _ in range(2)
    ]
    refused, other = fleet
    assert refused.set("HTTP 401") and recorded == ["HTTP 401"]
    assert other.active and other.reason == "HTTP 401"  # taken from the fleet
    assert refused.active
    other.clear()  # its key reloaded: the pause ends for the fleet
    assert recorded == [None]
    assert not other.active and not refused.active  # the one refused resumes too
    # A 401 not yet recorded for the fleet holds the daemon that met it all the same.
    alone = AuthPause(shared=lambda: None)
    alone.set("HTTP 401")
    assert alone.active
