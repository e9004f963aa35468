"""The journal alone: the transition table, known columns, the asset cache (no daemon)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from watcher.state.journal import FileRow, Journal
from watcher.state.states import TRANSITIONS, FileState, IllegalTransition


def a_row(path: str, state: FileState = FileState.QUEUED, **values: object) -> FileRow:
    now = time.time()
    fields: dict[str, object] = {
        "path": path,
        "folder": "/drop",
        "size": 3,
        "mtime_ns": 1,
        "inode": 1,
        "sha256": "ab" * 32,
        "content_type": "image/png",
        "state": state,
        "attempts": 0,
        "next_attempt_at": None,
        "asset_id": None,
        "asset_url": None,
        "protocol": None,
        "reused": 0,
        "previous_asset_id": None,
        "slot": None,
        "slot_expires_at": None,
        "sidecar": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
    }
    fields.update(values)
    return FileRow(**fields)  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    opened = Journal(tmp_path / "journal.sqlite3")
    yield opened  # type: ignore[misc]
    opened.close()


def test_a_file_goes_the_whole_way(journal: Journal) -> None:
    journal.put(a_row("/drop/a.png"))
    journal.record_slot("/drop/a.png", slot="{}", asset_id="a1", expires_at=None)
    journal.update(
        "/drop/a.png", state=FileState.RECORDING, asset_url="https://x/a1", protocol="v1-presigned"
    )
    journal.finish_upload("/drop/a.png", cache=True)
    row = journal.get("/drop/a.png")
    assert row is not None and row.state is FileState.UPLOADED


def test_an_illegal_move_names_the_file_and_both_states(journal: Journal) -> None:
    journal.put(a_row("/drop/a.png", FileState.UPLOADED))
    with pytest.raises(IllegalTransition) as caught:
        journal.update("/drop/a.png", state=FileState.UPLOADING)
    assert "/drop/a.png" in str(caught.value)
    assert "'uploaded'" in str(caught.value) and "'uploading'" in str(caught.value)
    row = journal.get("/drop/a.png")
    assert row is not None and row.state is FileState.UPLOADED  # nothing was written


@pytest.mark.parametrize("current", list(FileState))
def test_every_move_outside_the_table_is_refused(journal: Journal, current: FileState) -> None:
    path = f"/drop/{current}.png"
    for wanted in FileState:
        _force(journal, path, current)
        if wanted in TRANSITIONS[current]:
            journal.update(path, state=wanted)
        else:
            with pytest.raises(IllegalTransition):
                journal.update(path, state=wanted)


def _force(journal: Journal, path: str, state: FileState) -> None:
    """Put a row straight into ``state`` (test set-up only: admission states go through put)."""
    admitted = FileState.REJECTED if state is FileState.REJECTED else FileState.QUEUED
    journal.put(a_row(path, admitted))
    for step in _path_to(state):
        journal.update(path, state=step)


def _path_to(state: FileState) -> list[FileState]:
    return {
        FileState.QUEUED: [],
        FileState.UPLOADING: [FileState.UPLOADING],
        FileState.RECORDING: [FileState.RECORDING],
        FileState.UPLOADED: [FileState.RECORDING, FileState.UPLOADED],
        FileState.RETRYING: [FileState.RETRYING],
        FileState.FAILED: [FileState.FAILED],
        FileState.HELD: [FileState.HELD],
        FileState.REJECTED: [],
    }[state]


def test_rejected_is_admitted_and_final(journal: Journal) -> None:
    journal.put(a_row("/drop/r.txt", FileState.REJECTED))
    with pytest.raises(IllegalTransition):
        journal.update("/drop/r.txt", state=FileState.QUEUED)


def test_only_admission_states_can_be_put(journal: Journal) -> None:
    with pytest.raises(ValueError, match="admitted"):
        journal.put(a_row("/drop/a.png", FileState.UPLOADING))


def test_update_accepts_only_known_columns(journal: Journal) -> None:
    journal.put(a_row("/drop/a.png"))
    with pytest.raises(ValueError, match="statee"):
        journal.update("/drop/a.png", statee=FileState.FAILED)
    with pytest.raises(ValueError, match="path"):
        journal.update("/drop/a.png", path="/elsewhere")


def test_an_update_of_a_vanished_row_changes_nothing(journal: Journal) -> None:
    journal.update("/drop/gone.png", state=FileState.UPLOADING)
    assert journal.get("/drop/gone.png") is None


def test_the_asset_cache_remembers_uploads_but_not_reuses(journal: Journal) -> None:
    journal.put(a_row("/drop/a.png", sha256="11" * 32))
    journal.update(
        "/drop/a.png",
        state=FileState.RECORDING,
        asset_id="a1",
        asset_url="u1",
        protocol="v1-presigned",
    )
    journal.finish_upload("/drop/a.png", cache=True)
    cached = journal.cached_asset("11" * 32, "image/png", 0)
    assert cached is not None and cached.asset_id == "a1"
    assert journal.may_have_asset(3, "image/png", 0)
    assert not journal.may_have_asset(4, "image/png", 0)
    assert journal.cached_asset("11" * 32, "image/png", time.time() + 60) is None

    journal.put(a_row("/drop/b.png", sha256="22" * 32))
    journal.update(
        "/drop/b.png",
        state=FileState.RECORDING,
        asset_id="a1",
        asset_url="u1",
        protocol="v1-presigned",
    )
    journal.finish_upload("/drop/b.png", cache=False)
    assert journal.cached_asset("22" * 32, "image/png", 0) is None
