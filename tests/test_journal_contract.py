"""The journal's contract, held by both backends alike: SQLite (the embedded default) and
PostgreSQL (a fleet's shared journal, on a real throwaway server). Every operation of
`watcher.state.journal_api.Journal`: the transition table, known columns, the asset cache,
videos, meta, counts and claims. No daemon here."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pgcluster
import pytest

from watcher.state.journal import ClaimLost, FileRow, SqliteJournal
from watcher.state.journal_api import Journal
from watcher.state.journal_pg import PgJournal
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


@pytest.fixture(scope="module")
def server() -> Iterator[pgcluster.Cluster]:
    yield from pgcluster.cluster()


def _ignore_transition(path: str, old: str | None, new: str) -> None:
    return None


# SQLite writes on two paths: one statement each when nothing listens for transitions, or a
# read of the old state first when something does (the daemon's -v log). Both keep the contract.
@pytest.fixture(params=["sqlite", "sqlite, heard", "postgresql"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    opened: Journal
    if request.param.startswith("sqlite"):
        opened = SqliteJournal(tmp_path / "journal.sqlite3")
        if request.param == "sqlite, heard":
            opened.on_transition = _ignore_transition
    else:
        server = request.getfixturevalue("server")
        opened = PgJournal(server.new_database(), owner="me", lease_seconds=30)
    yield opened
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


def test_a_listener_hears_every_change_of_state_with_the_state_before(journal: Journal) -> None:
    heard: list[tuple[str, str | None, str]] = []
    journal.on_transition = lambda path, old, new: heard.append((path, old, new))
    test_a_file_goes_the_whole_way(journal)
    journal.update("/drop/a.png", sidecar="/drop/a.png.asset.json")  # no change of state
    assert heard == [
        ("/drop/a.png", None, "queued"),
        ("/drop/a.png", "queued", "uploading"),
        ("/drop/a.png", "uploading", "recording"),
        ("/drop/a.png", "recording", "uploaded"),
    ]


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
    for wanted in FileState:
        path = f"/drop/{current}-{wanted}.png"
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


def _uploaded(journal: Journal, path: str, asset: str, **values: object) -> None:
    journal.put(a_row(path, **values))
    journal.update(
        path, state=FileState.RECORDING, asset_id=asset, asset_url=f"u-{asset}", protocol="p"
    )
    journal.finish_upload(path, cache=True)


def test_put_replaces_a_queued_row_and_put_many_admits_in_bulk(journal: Journal) -> None:
    journal.put(a_row("/drop/a.png", size=3))
    journal.put(a_row("/drop/a.png", size=5, mtime_ns=2))  # a new version of the file
    row = journal.get("/drop/a.png")
    assert row is not None and row.size == 5
    rows = [a_row(f"/drop/{n}.png", FileState.UPLOADED, asset_id=f"a{n}") for n in range(7)]
    journal.put_many(rows, chunk=3)
    assert journal.counts() == {"queued": 1, "uploaded": 7}
    fingerprints = journal.fingerprints()
    assert fingerprints["/drop/a.png"][:3] == (5, 2, "queued")
    assert fingerprints["/drop/6.png"][:3] == (3, 1, "uploaded")
    assert fingerprints["/drop/6.png"][3] == pytest.approx(rows[6].updated_at)


def test_fingerprints_of_some_paths_only(journal: Journal) -> None:
    rows = [a_row(f"/drop/{n}.png", FileState.UPLOADED, asset_id=f"a{n}") for n in range(1000)]
    journal.put_many(rows)
    # More paths than one lookup takes, some without a row.
    asked = [f"/drop/{n}.png" for n in range(0, 2000, 2)]
    found = journal.fingerprints_of(asked)
    assert sorted(found) == sorted(f"/drop/{n}.png" for n in range(0, 1000, 2))
    assert found["/drop/998.png"][:3] == (3, 1, "uploaded")
    assert journal.fingerprints_of([]) == {}


def test_slots_moves_and_forgetting(journal: Journal) -> None:
    journal.put(a_row("/drop/a.png"))
    journal.record_slot(
        "/drop/a.png", slot='{"url": "s"}', asset_id="a1", expires_at=123.5, attempts=2
    )
    row = journal.get("/drop/a.png")
    assert row is not None
    assert (row.state, row.slot, row.asset_id, row.slot_expires_at, row.attempts) == (
        FileState.UPLOADING,
        '{"url": "s"}',
        "a1",
        123.5,
        2,
    )
    journal.add_video("/drop/a.png", "t", "/v2/video/generate", "waiting_script", next_at=1.0)
    journal.move("/drop/a.png", "/done/a.png")
    assert journal.get("/drop/a.png") is None and journal.video("/drop/a.png") is None
    moved = journal.get("/done/a.png")
    assert moved is not None and moved.slot == '{"url": "s"}'
    assert journal.video("/done/a.png") is not None
    journal.forget("/done/a.png")
    assert journal.get("/done/a.png") is None


def test_due_retries_failures_and_the_oldest_waiting(journal: Journal) -> None:
    now = time.time()
    journal.put(a_row("/drop/soon.png", created_at=now - 50))
    journal.update("/drop/soon.png", state=FileState.RETRYING, next_attempt_at=now - 1)
    journal.put(a_row("/drop/later.png", created_at=now - 10))
    journal.update("/drop/later.png", state=FileState.RETRYING, next_attempt_at=now + 100)
    journal.put(a_row("/drop/bad.png"))
    journal.update("/drop/bad.png", state=FileState.FAILED, last_error="no")
    assert [row.path for row in journal.due(now)] == ["/drop/soon.png"]
    assert journal.next_due_at() == pytest.approx(now - 1)
    assert journal.oldest_waiting() == pytest.approx(now - 50)
    assert {row.path for row in journal.recent_failures()} == {
        "/drop/soon.png",
        "/drop/later.png",
        "/drop/bad.png",
    }
    assert [row.path for row in journal.rows_in((FileState.FAILED,))] == ["/drop/bad.png"]
    assert journal.mark_for_retry(["/drop/bad.png"]) == 1
    row = journal.get("/drop/bad.png")
    assert row is not None and row.state is FileState.RETRYING and row.attempts == 0
    assert journal.mark_for_retry() == 3
    assert journal.counts() == {"retrying": 3}


def test_the_cache_is_filled_from_recorded_uploads(journal: Journal) -> None:
    journal.put_many(
        [
            a_row(
                "/drop/a.png",
                FileState.UPLOADED,
                sha256="33" * 32,
                asset_id="x",
                asset_url="ux",
                protocol="p",
            ),
            a_row(
                "/drop/b.png",
                FileState.UPLOADED,
                sha256="44" * 32,
                asset_id="y",
                asset_url="uy",
                protocol="p",
                reused=1,
            ),
        ]
    )
    assert journal.cache_recorded_assets() == 1
    cached = journal.cached_asset("33" * 32, "image/png", 0)
    assert cached is not None and (cached.asset_id, cached.url) == ("x", "ux")
    assert journal.cached_asset("44" * 32, "image/png", 0) is None


def test_videos_their_claims_and_retries(journal: Journal) -> None:
    now = time.time()
    journal.add_video("/drop/a.png", "t", "/v3/videos", "ready", next_at=now - 1, body="{}")
    journal.add_video("/drop/b.png", "t", "/v3/videos", "waiting_script", next_at=now + 60)
    assert journal.due_videos(now) == ["/drop/a.png"]
    assert journal.next_video_at() == pytest.approx(now - 1)
    # Of two callers moving the same video on, exactly one wins.
    assert journal.claim_video("/drop/a.png", "ready", "submitting", attempts=1)
    assert not journal.claim_video("/drop/a.png", "ready", "submitting", attempts=1)
    journal.update_video("/drop/a.png", state="unknown", error="lost")
    video = journal.video("/drop/a.png")
    assert video is not None and (video.state, video.attempts, video.error) == (
        "unknown",
        1,
        "lost",
    )
    assert [v.path for v in journal.videos_in(("unknown",))] == ["/drop/a.png"]
    assert journal.video_counts() == {"unknown": 1, "waiting_script": 1}
    assert journal.mark_videos_for_retry() == 1
    video = journal.video("/drop/a.png")
    assert video is not None and (video.state, video.error) == ("ready", None)
    with pytest.raises(ValueError, match="nope"):
        journal.update_video("/drop/a.png", nope=1)


def test_a_video_step_is_taken_once_until_its_hold_passes(journal: Journal) -> None:
    now = time.time()
    journal.add_video("/drop/a.png", "t", "/v3/videos", "processing", next_at=now - 1)
    journal.add_video("/drop/b.png", "t", "/v3/videos", "processing", next_at=now + 60)
    journal.add_video("/drop/c.png", "t", "/v3/videos", "completed", next_at=None)
    assert journal.claim_video_step("/drop/a.png", now, 30)
    assert not journal.claim_video_step("/drop/a.png", now, 30)  # taken: no second poll
    assert journal.due_videos(now) == []
    assert journal.next_video_at() == pytest.approx(now + 30)
    # Once the hold has passed (its taker died mid-step), the step is taken again.
    assert journal.claim_video_step("/drop/a.png", now + 31, 30)
    assert not journal.claim_video_step("/drop/b.png", now, 30)  # not due yet
    assert not journal.claim_video_step("/drop/c.png", now, 30)  # done: no step
    assert not journal.claim_video_step("/drop/none.png", now, 30)


def test_meta_holds_json_values(journal: Journal) -> None:
    assert journal.get_meta("uploads_paused") is None
    journal.set_meta("uploads_paused", "401: key refused")
    journal.set_meta("numbers", {"a": [1, 2]})
    assert journal.get_meta("uploads_paused") == "401: key refused"
    assert journal.get_meta("numbers") == {"a": [1, 2]}
    journal.set_meta("uploads_paused", None)
    assert journal.get_meta("uploads_paused") is None


def test_a_daemon_claims_what_it_works_on(journal: Journal) -> None:
    assert not journal.claim("/drop/none.png")  # no row
    journal.put(a_row("/drop/a.png"))
    assert journal.claim("/drop/a.png")
    assert journal.claim("/drop/a.png")  # its own claim again
    assert journal.renew_claims() >= 0
    journal.release("/drop/a.png")
    _uploaded(journal, "/drop/b.png", "b1")
    assert not journal.claim("/drop/b.png")  # final: nothing left to do
    assert journal.orphaned() == [] or all(row.path != "/drop/b.png" for row in journal.orphaned())
    assert journal.where


def test_claiming_a_row_returns_it_as_it_is_now(journal: Journal) -> None:
    assert journal.claim_row("/drop/none.png") is None  # no row
    journal.put(a_row("/drop/a.png", attempts=2))
    journal.record_slot("/drop/a.png", slot="{}", asset_id="a1", expires_at=None)
    claimed = journal.claim_row("/drop/a.png")
    assert claimed == journal.get("/drop/a.png")
    assert claimed is not None and (claimed.state, claimed.asset_id, claimed.attempts) == (
        FileState.UPLOADING,
        "a1",
        2,
    )
    _uploaded(journal, "/drop/b.png", "b1")
    assert journal.claim_row("/drop/b.png") is None  # final: nothing left to do


# -- the shared journal: several daemons at once ----------------------------------------------
@pytest.fixture
def shared_url(server: pgcluster.Cluster) -> str:
    return server.new_database()


def test_of_two_daemons_claiming_one_file_exactly_one_wins(shared_url: str) -> None:
    one = PgJournal(shared_url, owner="one", lease_seconds=30)
    two = PgJournal(shared_url, owner="two", lease_seconds=30)
    try:
        one.put(a_row("/drop/a.png"))  # admitting a queued file claims it
        assert not two.claim("/drop/a.png")
        assert one.claim("/drop/a.png")
        # Nor may the other daemon admit it again over the claim.
        two.put(a_row("/drop/a.png", size=9, mtime_ns=9))
        row = one.get("/drop/a.png")
        assert row is not None and row.size == 3
        assert two.claim_row("/drop/a.png") is None
        one.release("/drop/a.png")
        taken = two.claim_row("/drop/a.png")
        assert taken is not None and taken.size == 3
        assert not one.claim("/drop/a.png")
        assert one.claim_row("/drop/a.png") is None
    finally:
        one.close()
        two.close()


def test_a_lapsed_claim_is_orphaned_and_taken_over(shared_url: str) -> None:
    dead = PgJournal(shared_url, owner="dead", lease_seconds=1)
    alive = PgJournal(shared_url, owner="alive", lease_seconds=30)
    try:
        dead.put(a_row("/drop/a.png"))
        dead.record_slot("/drop/a.png", slot="{}", asset_id="a1", expires_at=None)
        assert alive.orphaned() == []  # the lease is still live
        assert not alive.claim("/drop/a.png")
        rows = wait_until(alive.orphaned, "the lease to lapse")
        assert [row.path for row in rows] == ["/drop/a.png"]
        assert rows[0].state is FileState.UPLOADING and rows[0].slot == "{}"
        assert alive.claim("/drop/a.png")
        assert alive.orphaned() == []
        assert not dead.claim("/drop/a.png")  # it came back: the file is no longer its own
        # Renewing keeps a claim alive past its first lease.
        alive.put(a_row("/drop/b.png"))
        assert alive.renew_claims() == 2
    finally:
        dead.close()
        alive.close()


def test_a_daemon_taken_over_after_a_stall_writes_nothing_more_to_the_file(
    shared_url: str,
) -> None:
    stalled = PgJournal(shared_url, owner="stalled", lease_seconds=1)
    other = PgJournal(shared_url, owner="other", lease_seconds=30)
    path = "/drop/a.png"
    try:
        stalled.put(a_row(path))
        assert stalled.claim(path)
        stalled.record_slot(path, slot="{}", asset_id="a1", expires_at=None)
        wait_until(other.orphaned, "the stalled daemon's lease to lapse")
        assert other.claim(path)
        # The stalled daemon wakes up: none of its writes to the file goes through.
        for write in (
            lambda: stalled.update(path, state=FileState.RECORDING, asset_id="late"),
            lambda: stalled.update(path, last_error="late"),  # not only changes of state
            lambda: stalled.record_slot(path, slot="{}", asset_id="late", expires_at=None),
            lambda: stalled.move(path, "/drop/moved/a.png"),
            lambda: stalled.finish_upload(path, cache=True, sidecar="late"),
        ):
            with pytest.raises(ClaimLost, match="another daemon took the file over"):
                write()
        row = other.get(path)
        assert row is not None and row.state is FileState.UPLOADING and row.asset_id == "a1"
        assert row.last_error is None
        # The daemon that took it over finishes it; the stalled one's release is no harm.
        other.update(path, state=FileState.RECORDING, asset_url="https://x/a1", protocol="v1")
        stalled.release(path)
        other.finish_upload(path, cache=True, sidecar=path + ".asset.json")
        finished = other.get(path)
        assert finished is not None and finished.state is FileState.UPLOADED
        # Rows it never claimed (a command's `retry`, the housekeeper) are not fenced.
        other.put(a_row("/drop/b.png"))
        other.release("/drop/b.png")
        stalled.update("/drop/b.png", last_error="seen by another daemon")
    finally:
        stalled.close()
        other.close()


def test_of_two_daemons_taking_a_video_step_exactly_one_wins(shared_url: str) -> None:
    one = PgJournal(shared_url, owner="one")
    two = PgJournal(shared_url, owner="two")
    try:
        now = time.time()
        one.add_video("/drop/a.png", "t", "/v2/video/generate", "processing", next_at=now)
        taken = [
            one.claim_video_step("/drop/a.png", now, 30),
            two.claim_video_step("/drop/a.png", now, 30),
        ]
        assert sorted(taken) == [False, True]
    finally:
        one.close()
        two.close()


def test_a_version_already_taken_further_is_not_admitted_again(shared_url: str) -> None:
    one = PgJournal(shared_url, owner="one", lease_seconds=30)
    two = PgJournal(shared_url, owner="two", lease_seconds=30)
    try:
        _uploaded(one, "/drop/a.png", "a1")
        two.put(a_row("/drop/a.png"))  # the same version, seen late by the other daemon
        row = two.get("/drop/a.png")
        assert row is not None and row.state is FileState.UPLOADED
        two.put(a_row("/drop/a.png", mtime_ns=5))  # a new version is a new life
        row = two.get("/drop/a.png")
        assert row is not None and row.state is FileState.QUEUED
    finally:
        one.close()
        two.close()


def test_the_cache_is_shared_by_the_fleet(shared_url: str) -> None:
    one = PgJournal(shared_url, owner="one")
    two = PgJournal(shared_url, owner="two")
    try:
        _uploaded(one, "/site1/a.png", "a1", sha256="55" * 32)
        cached = two.cached_asset("55" * 32, "image/png", 0)
        assert cached is not None and cached.asset_id == "a1"
    finally:
        one.close()
        two.close()


def test_a_newer_schema_is_refused_with_a_clear_message(shared_url: str) -> None:
    import psycopg

    PgJournal(shared_url).close()
    with psycopg.connect(shared_url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    from watcher.state.journal import JournalError

    with pytest.raises(JournalError, match=r"schema version 99.*newer heygen-watcher"):
        PgJournal(shared_url)


def test_an_unreachable_database_is_a_clear_error_for_a_command() -> None:
    from watcher.state.journal import JournalError

    port = pgcluster._free_port()
    with pytest.raises(JournalError, match="cannot be reached") as caught:
        PgJournal(f"postgresql://nobody@127.0.0.1:{port}/x")
    assert "\n" not in str(caught.value)


def test_the_journal_waits_for_a_restarted_server(server: pgcluster.Cluster) -> None:
    """A stopped server pauses every call (nothing raised, nothing lost); each resumes once
    the server is back."""
    import threading

    url = server.new_database()
    journal = PgJournal(url, owner="one")
    try:
        journal.put(a_row("/drop/a.png"))
        server.stop()
        done = threading.Event()

        def write() -> None:
            journal.update("/drop/a.png", state=FileState.UPLOADING, attempts=1)
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(1.0)  # paused, not failed
        outage = journal.outage
        assert outage is not None and "unreachable" in outage  # for /healthz and the log
        server.start()
        writer.join(timeout=60)
        assert done.is_set()
        assert journal.outage is None
        row = journal.get("/drop/a.png")
        assert row is not None and row.state is FileState.UPLOADING and row.attempts == 1
    finally:
        journal.close()


def wait_until(read: object, what: str, timeout: float = 20.0) -> list[FileRow]:
    from conftest import wait_for

    return wait_for(read, timeout, what)  # type: ignore[arg-type,return-value]


def test_the_daemons_using_the_journal(journal: Journal) -> None:
    assert journal.daemons() == []
    journal.register_daemon("9.9")
    journal.beat_daemon(7)
    (me,) = journal.daemons()
    assert (me.pid, me.version, me.in_flight) == (os.getpid(), "9.9", 7)
    assert me.host == socket.gethostname() and 0 <= me.heartbeat_age < 60
    journal.unregister_daemon()
    assert journal.daemons() == []


def test_the_systemd_credential_is_the_passfile_unless_one_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from watcher.state.journal_pg import _connect_options

    monkeypatch.delenv("PGPASSFILE", raising=False)
    assert "passfile" not in _connect_options()
    (tmp_path / "pgpass").write_text("db:5432:heygen:heygen:secret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert _connect_options()["passfile"] == str(tmp_path / "pgpass")
    monkeypatch.setenv("PGPASSFILE", "/etc/elsewhere")
    assert "passfile" not in _connect_options()  # libpq reads the operator's own


def test_a_pause_shared_by_the_fleet(journal: Journal) -> None:
    assert journal.fleet_pause("rate_limit") == (0.0, "")
    journal.pause_fleet("rate_limit", 30, "429 first")
    journal.pause_fleet("rate_limit", 5, "429 shorter")  # the later end is kept
    left, reason = journal.fleet_pause("rate_limit")
    assert 20 < left <= 30 and reason == "429 first"
    journal.pause_fleet("other", 0.01, "brief")
    wait_until(lambda: journal.fleet_pause("other") == (0.0, ""), "the brief pause to end")


def test_a_shared_pause_ends_when_told(journal: Journal) -> None:
    journal.pause_fleet("auth", 86400, "401 key refused")
    journal.pause_fleet("rate_limit", 30, "429")
    journal.resume_fleet("auth")
    assert journal.fleet_pause("auth") == (0.0, "")
    assert journal.fleet_pause("rate_limit")[0] > 20  # only that kind ended
    journal.resume_fleet("auth")  # ending no pause is no error
    journal.pause_fleet("auth", 60, "401 again")  # and a new one starts afresh
    assert journal.fleet_pause("auth")[1] == "401 again"


def test_requests_handed_to_the_daemon(journal: Journal) -> None:
    assert journal.take_requests() == []
    journal.request("/drop/a.png", "/drop")
    journal.request("/drop/b.png", "/drop")
    journal.request("/drop/a.png", "/drop")  # asked again: still one request
    assert sorted(journal.take_requests()) == [("/drop/a.png", "/drop"), ("/drop/b.png", "/drop")]
    assert journal.take_requests() == []


def test_every_change_of_state_is_told(journal: Journal) -> None:
    told: list[tuple[str, str | None, str]] = []
    journal.on_transition = lambda path, old, new: told.append((path, old, new))
    journal.put(a_row("/drop/a.png"))
    journal.update("/drop/a.png", state=FileState.UPLOADING)
    journal.update("/drop/a.png", attempts=2)  # no change of state: nothing told
    journal.update("/drop/a.png", state=FileState.RECORDING, asset_id="x", asset_url="u")
    journal.finish_upload("/drop/a.png", cache=False)
    assert told == [
        ("/drop/a.png", None, "queued"),
        ("/drop/a.png", "queued", "uploading"),
        ("/drop/a.png", "uploading", "recording"),
        ("/drop/a.png", "recording", "uploaded"),
    ]


def test_sidecars_waiting_to_be_written(journal: Journal) -> None:
    assert journal.pending_sidecars() == [] and journal.next_sidecar_at() is None
    now = time.time()
    assert journal.defer_sidecar("/d/a.json", "/d/a", "/d", {"k": 1}, "disk full", lambda n: now)
    assert (
        journal.defer_sidecar("/d/a.json", "/d/a", "/d", {"k": 2}, "still", lambda n: now + n) == 2
    )
    (pending,) = journal.pending_sidecars()
    assert (pending.document, pending.reason, pending.failures) == ({"k": 2}, "still", 2)
    assert journal.pending_sidecars(due_before=now) == []
    assert journal.next_sidecar_at() == pytest.approx(now + 2)
    journal.sidecar_written("/d/a.json")
    assert journal.pending_sidecars() == []


def test_shortened_sidecars_and_moves_with_a_new_inode(journal: Journal) -> None:
    long_name = "/d/" + "x" * 300 + ".png"
    _uploaded(journal, long_name, "a1")
    journal.update(long_name, sidecar="/d/xxxx~1a2b.asset.json")
    assert journal.shortened_sidecars() == [(long_name, "/d/xxxx~1a2b.asset.json")]
    journal.put(a_row("/d/b.png"))
    journal.update("/d/b.png", state=FileState.RETRYING, next_attempt_at=1.0)
    journal.move("/d/b.png", "/done/b.png", inode=77)
    moved = journal.get("/done/b.png")
    assert moved is not None and (moved.inode, moved.next_attempt_at) == (77, None)


def test_counts_follow_every_change(journal: Journal) -> None:
    """Counts may be kept between commits, never past one (the status line asks often)."""
    assert journal.counts() == {}
    journal.put(a_row("/drop/a.png"))
    assert journal.counts() == {"queued": 1}
    journal.put_many([a_row(f"/drop/{n}.png", FileState.UPLOADED) for n in range(3)])
    assert journal.counts() == {"queued": 1, "uploaded": 3}
    journal.forget("/drop/1.png")
    assert journal.counts() == {"queued": 1, "uploaded": 2}


def test_sqlite_counts_follow_another_processs_commits(tmp_path: Path) -> None:
    """A command's own handle on the daemon's journal (another process) commits too."""
    path = tmp_path / "journal.sqlite3"
    daemons = SqliteJournal(path)
    commands = SqliteJournal(path)
    try:
        assert daemons.counts() == {}
        commands.put(a_row("/drop/a.png"))
        assert daemons.counts() == {"queued": 1}
    finally:
        commands.close()
        daemons.close()


def counting_queries(journal: SqliteJournal) -> list[str]:
    """The statements that count the rows by state, as the journal runs them from now on."""
    counted: list[str] = []
    journal._db.set_trace_callback(
        lambda statement: counted.append(statement) if "GROUP BY" in statement else None
    )
    return counted


def test_sqlite_counts_again_only_after_a_commit(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    counted = counting_queries(journal)
    try:
        journal.put_many([a_row(f"/drop/{n}.png", FileState.UPLOADED) for n in range(3)])
        for _ in range(5):
            assert journal.counts() == {"uploaded": 3}
        assert len(counted) == 1
        journal.forget("/drop/0.png")
        assert journal.counts() == {"uploaded": 2}
        assert len(counted) == 2
    finally:
        journal.close()


def test_sqlite_counts_are_not_counted_again_for_a_heartbeat(tmp_path: Path) -> None:
    """The daemon's heartbeat commits every few seconds without touching a file's row."""
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    counted = counting_queries(journal)
    try:
        journal.register_daemon("test")
        journal.put(a_row("/drop/a.png"))
        assert journal.counts() == {"queued": 1}
        journal.beat_daemon(0)
        assert journal.counts() == {"queued": 1}
        assert len(counted) == 1
    finally:
        journal.close()
