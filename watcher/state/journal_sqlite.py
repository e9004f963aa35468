"""The embedded journal: one SQLite file, used by one daemon (see `watcher.state.journal_api`).

Durability: WAL mode with ``synchronous=NORMAL``. In WAL mode a commit is written to the WAL
file before `commit()` returns, so it survives the process being killed (``kill -9``, an OOM
kill, a crash): the kernel still holds and later writes those pages. Only a power cut or
kernel crash can lose the last few commits (never corrupt the database), and then the cost is
bounded: the file is still in its folder and is picked up again, at worst uploaded to a fresh
slot once more. ``FULL`` would add an fsync to every commit, several milliseconds each on
ordinary disks, for protection the daemon does not need.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from watcher.state.journal import (
    VIDEO_ACTIVE_STATES,
    DaemonRow,
    FileRow,
    JournalError,
    TransitionHook,
    VideoRow,
)
from watcher.state.journal_core import (
    _COLUMNS,
    _ROW_VALUES,
    _UPDATABLE,
    _VIDEO_COLUMNS,
    _VIDEO_UPDATABLE,
    JournalCore,
    _check_admitted,
    _file_row,
    _known_columns,
    _new_video,
)
from watcher.state.states import DUE, ENTERED_FROM, FINAL, WAITING, FileState

SCHEMA_VERSION = 1
_DUE_MARKS = ", ".join("?" for _ in DUE)
# Paths per `IN (...)` lookup: under SQLite's oldest limit on bound parameters (999).
_LOOKUP_CHUNK = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path            TEXT PRIMARY KEY,
    folder          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    mtime_ns        INTEGER NOT NULL,
    inode           INTEGER NOT NULL,
    sha256          TEXT,
    content_type    TEXT,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    asset_id        TEXT,
    asset_url       TEXT,
    protocol        TEXT,
    reused          INTEGER NOT NULL DEFAULT 0,
    previous_asset_id TEXT,
    slot            TEXT,
    slot_expires_at REAL,
    sidecar         TEXT,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_state ON files (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS assets (
    sha256       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    asset_id     TEXT NOT NULL,
    url          TEXT NOT NULL,
    protocol     TEXT NOT NULL,
    uploaded_at  REAL NOT NULL,
    PRIMARY KEY (sha256, content_type)
);
CREATE INDEX IF NOT EXISTS assets_size ON assets (size, content_type);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    path          TEXT PRIMARY KEY,
    template      TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    state         TEXT NOT NULL,
    video_id      TEXT,
    script_path   TEXT,
    body          TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       REAL,
    deadline      REAL,
    video_url     TEXT,
    thumbnail_url TEXT,
    duration      REAL,
    error         TEXT,
    submitted_at  REAL,
    completed_at  REAL,
    downloaded_to TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS videos_due ON videos (next_at);
CREATE TABLE IF NOT EXISTS requests (
    path         TEXT PRIMARY KEY,
    folder       TEXT NOT NULL,
    requested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_sidecars (
    location   TEXT PRIMARY KEY,
    file       TEXT NOT NULL,
    folder     TEXT NOT NULL,
    document   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    failures   INTEGER NOT NULL,
    next_at    REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS daemons (
    owner        TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    in_flight    INTEGER NOT NULL DEFAULT 0
);
"""

_PUT = (
    f"INSERT OR REPLACE INTO files ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_COLUMNS))})"
)


# For an UPDATE to each state: the WHERE clause that lets it match only a row the transition
# table allows into that state, and the clause's values.
_ENTRY_CONDITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    state.value: (f" AND state IN ({', '.join('?' * len(allowed))})", allowed)
    for state, allowed in ENTERED_FROM.items()
}


def _entered_from(state: str | None) -> tuple[str, tuple[str, ...]]:
    """`_ENTRY_CONDITIONS` for ``state``; no condition for an update that leaves the state
    alone. A name that is no state is a ValueError, as in `check_transition`."""
    if state is None:
        return "", ()
    condition = _ENTRY_CONDITIONS.get(state)
    if condition is None:
        raise ValueError(f"{state!r} is not a file state")
    return condition


class SqliteJournal(JournalCore):
    """The embedded journal: one SQLite file, one daemon (see `watcher.state.journal_api`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.on_waiting: Callable[[], None] = lambda: None  # a local file is never awaited
        self._lock = threading.RLock()
        # Commits through this handle that changed files, and the counts as of one (`counts`).
        self._commits = 0
        self._counted_at: tuple[int, int] | None = None
        self._counts: dict[str, int] = {}
        # The one place every state change passes: the daemon logs them at -v through this.
        self.on_transition: TransitionHook | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._check_integrity()
            self._db.executescript(_SCHEMA)
            self._check_version()
        except (sqlite3.DatabaseError, OSError) as error:
            raise JournalError(
                f"journal {path} cannot be used: {error}. Rebuild it from the sidecars with "
                "`heygen-watcher run --rebuild-journal` (the broken file is kept aside)."
            ) from None

    def _check_integrity(self) -> None:
        row = self._db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {row[0] if row else 'no answer'}")

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"written by a newer version (schema {row[0]})")

    @property
    def where(self) -> str:
        return str(self.path)

    @property
    def outage(self) -> str | None:
        return None  # a local file: unreadable is an error, never a wait

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, query: str, params: Any = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(query, params).fetchone()
        return row

    def _all(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(query, params).fetchall()

    @contextmanager
    def _transaction(self, *, files: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``files=False`` when it leaves the files table alone (the
        counts need not be counted again after it: see `counts`)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if files:
                self._commits += 1

    # -- files -------------------------------------------------------------------------------
    # Writes that need no look at the row first run as one statement, committed on its own
    # (SQLite's autocommit): a third of the statements, each of which hands the interpreter
    # lock to another thread and back. Only the transition hook (the -v log) needs the old
    # state read first, and only a write whose move the WHERE clause refused needs the full
    # transaction, which tells a vanished row from an illegal move.
    def put(self, row: FileRow) -> None:
        """Insert or replace a whole row: a file (or a new version of it) is admitted."""
        _check_admitted(row)
        values = _ROW_VALUES(row)
        if self.on_transition is None:
            with self._lock:
                self._db.execute(_PUT, values)
                self._commits += 1
            return
        with self._transaction() as db:
            found = db.execute("SELECT state FROM files WHERE path = ?", (row.path,)).fetchone()
            self.on_transition(row.path, found[0] if found else None, row.state)
            db.execute(_PUT, values)

    def put_many(self, rows: list[FileRow], chunk: int = 5000) -> None:
        """Insert many rows in a few transactions (adopting a backlog at start-up)."""
        for row in rows:
            _check_admitted(row)
        for start in range(0, len(rows), chunk):
            with self._transaction() as db:
                db.executemany(_PUT, map(_ROW_VALUES, rows[start : start + chunk]))

    def update(self, key: str, **changes: Any) -> None:
        """Change some columns of the row for path ``key``, committed before returning.

        Only known columns; a change of state must be one the transition table allows
        (`IllegalTransition` names the file and both states). A row that is gone (the file
        vanished meanwhile) is left alone."""
        _known_columns(changes, _UPDATABLE, "files")
        changes["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in changes)
        statement = f"UPDATE files SET {assignments} WHERE path = ?"
        state = changes.get("state")
        if state is None or self.on_transition is None:
            condition, allowed = _entered_from(state)
            with self._lock:
                moved = self._db.execute(statement + condition, (*changes.values(), key, *allowed))
                self._commits += 1
            if state is None or moved.rowcount:
                return
        # A change of state that a hook hears, or one the WHERE clause refused: the row gone,
        # or a move the table does not allow (`IllegalTransition`).
        with self._transaction() as db:
            found = db.execute("SELECT state FROM files WHERE path = ?", (key,)).fetchone()
            if found is None:
                return
            self._change_state(key, found[0], state)
            db.execute(statement, (*changes.values(), key))

    def move(self, old_path: str, new_path: str, inode: int | None = None) -> None:
        """The file was moved (``after_upload: move``): its row follows it, in one commit,
        with its new inode (a move across filesystems is a copy) and no retry pending (the
        retry that moved it is the one under way)."""
        with self._transaction() as db:
            self._move_rows(db, old_path, new_path, inode)

    # -- videos ------------------------------------------------------------------------------
    def add_video(self, path: str, template: str, endpoint: str, state: str, **values: Any) -> None:
        columns = _new_video(path, template, endpoint, state, values)
        marks = ", ".join("?" for _ in columns)
        with self._transaction(files=False) as db:
            db.execute(
                f"INSERT OR REPLACE INTO videos ({', '.join(columns)}) VALUES ({marks})",
                tuple(columns.values()),
            )

    def update_video(self, path: str, **changes: Any) -> None:
        _known_columns(changes, _VIDEO_UPDATABLE, "videos")
        changes["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self._transaction(files=False) as db:
            db.execute(f"UPDATE videos SET {assignments} WHERE path = ?", (*changes.values(), path))

    def claim_video(self, path: str, from_state: str, to_state: str, **changes: Any) -> bool:
        """Move a video from one state to another only if it is still in the first: the one
        caller that wins may act (e.g. send the generate request), any other must not."""
        changes.update(state=to_state, updated_at=time.time())
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self._transaction(files=False) as db:
            cursor = db.execute(
                f"UPDATE videos SET {assignments} WHERE path = ? AND state = ?",
                (*changes.values(), path, from_state),
            )
            return cursor.rowcount == 1

    def claim_video_step(self, path: str, now: float, hold_seconds: float) -> bool:
        marks = ", ".join("?" for _ in VIDEO_ACTIVE_STATES)
        with self._transaction(files=False) as db:
            cursor = db.execute(
                f"UPDATE videos SET next_at = ? WHERE path = ? AND state IN ({marks}) "
                "AND (next_at IS NULL OR next_at <= ?)",
                (now + hold_seconds, path, *VIDEO_ACTIVE_STATES, now),
            )
            return cursor.rowcount == 1

    def due_videos(self, now: float) -> list[str]:
        marks = ", ".join("?" for _ in VIDEO_ACTIVE_STATES)
        with self._lock:
            rows = self._db.execute(
                f"SELECT path FROM videos WHERE state IN ({marks}) AND next_at <= ? "
                "ORDER BY next_at",
                (*VIDEO_ACTIVE_STATES, now),
            ).fetchall()
        return [row[0] for row in rows]

    def next_video_at(self) -> float | None:
        marks = ", ".join("?" for _ in VIDEO_ACTIVE_STATES)
        with self._lock:
            row = self._db.execute(
                f"SELECT MIN(next_at) FROM videos WHERE state IN ({marks})", VIDEO_ACTIVE_STATES
            ).fetchone()
        return row[0] if row else None

    def videos_in(self, states: tuple[str, ...]) -> list[VideoRow]:
        marks = ", ".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_VIDEO_COLUMNS)} FROM videos WHERE state IN ({marks})", states
            ).fetchall()
        return [VideoRow(*row) for row in rows]

    def forget(self, path: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM files WHERE path = ?", (path,))

    def fingerprints(self) -> dict[str, tuple[int, int, str, float]]:
        """path → (size, mtime_ns, state, updated_at) for every row: what a scan compares
        against (and, for uploaded files, whether their sidecar changed since)."""
        with self._lock:
            return {
                path: (size, mtime_ns, state, updated_at)
                for path, size, mtime_ns, state, updated_at in self._db.execute(
                    "SELECT path, size, mtime_ns, state, updated_at FROM files"
                )
            }

    def fingerprints_of(self, paths: Sequence[str]) -> dict[str, tuple[int, int, str, float]]:
        """`fingerprints` of these paths only (those with a row): what a scan of one folder
        compares against, so that a pass costs what it lists, not the whole journal."""
        found: dict[str, tuple[int, int, str, float]] = {}
        with self._lock:
            for start in range(0, len(paths), _LOOKUP_CHUNK):
                chunk = paths[start : start + _LOOKUP_CHUNK]
                marks = ", ".join("?" for _ in chunk)
                for path, size, mtime_ns, state, updated_at in self._db.execute(
                    "SELECT path, size, mtime_ns, state, updated_at FROM files "
                    f"WHERE path IN ({marks})",
                    chunk,
                ):
                    found[path] = (size, mtime_ns, state, updated_at)
        return found

    def rows_in(self, states: tuple[str, ...]) -> list[FileRow]:
        marks = ", ".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM files WHERE state IN ({marks}) "
                "ORDER BY created_at",
                states,
            ).fetchall()
        return [_file_row(row) for row in rows]

    def due(self, now: float) -> list[FileRow]:
        """Rows waiting for a retry whose time has come."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM files "
                f"WHERE state IN ({_DUE_MARKS}) AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at",
                (*DUE, now),
            ).fetchall()
        return [_file_row(row) for row in rows]

    def next_due_at(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT MIN(next_attempt_at) FROM files WHERE state IN ({_DUE_MARKS})", DUE
            ).fetchone()
        return row[0] if row else None

    def counts(self) -> dict[str, int]:
        """Rows per state. Counted again only after a commit (ours, or another process's:
        SQLite's data_version): the status line asks every few seconds, and counting is a
        walk of every row (10 ms at 100,000, forever, on an idle daemon)."""
        with self._lock:
            version = (self._commits, self._db.execute("PRAGMA data_version").fetchone()[0])
            if version != self._counted_at:
                rows = self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state")
                self._counts = {state: count for state, count in rows}
                self._counted_at = version
            return dict(self._counts)

    def oldest_waiting(self) -> float | None:
        marks = ", ".join("?" for _ in WAITING)
        with self._lock:
            row = self._db.execute(
                f"SELECT MIN(created_at) FROM files WHERE state IN ({marks})", WAITING
            ).fetchone()
        return row[0] if row else None

    def recent_failures(self, limit: int = 10) -> list[FileRow]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM files WHERE state IN ('failed', 'retrying') "
                # An upload whose record (move, sidecar) cannot be written yet says why too.
                "OR (state = 'recording' AND last_error IS NOT NULL) "
                "ORDER BY updated_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_file_row(row) for row in rows]

    # -- sidecars that could not be written yet ----------------------------------------------
    # A decided document (a rejection, a failure, a video's progress) whose write failed (a
    # full disk, no permission, a read-only filesystem) waits here with why, and is written
    # at `next_at`: nothing decided is forgotten because the disk said no once.
    def defer_sidecar(
        self,
        location: str,
        file: str,
        folder: str,
        document: dict[str, Any],
        reason: str,
        next_at_for: Callable[[int], float],
    ) -> int:
        """Keep ``document`` for a later write at ``next_at_for(failures so far)``; returns
        how many writes of it have failed."""
        now = time.time()
        with self._transaction(files=False) as db:
            row = db.execute(
                "SELECT failures, created_at FROM pending_sidecars WHERE location = ?", (location,)
            ).fetchone()
            failures, created = (row[0] + 1, row[1]) if row else (1, now)
            next_at = next_at_for(failures)
            db.execute(
                "INSERT OR REPLACE INTO pending_sidecars VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (location, file, folder, json.dumps(document), reason, failures, next_at, created),
            )
        return int(failures)

    def sidecar_written(self, location: str) -> None:
        """A write at ``location`` succeeded: whatever waited for it is superseded."""
        with self._lock:
            # Nearly always nothing waited: a read is much cheaper than a write transaction.
            waiting = self._db.execute(
                "SELECT 1 FROM pending_sidecars WHERE location = ?", (location,)
            ).fetchone()
            if waiting is None:
                return
            with self._transaction(files=False) as db:
                db.execute("DELETE FROM pending_sidecars WHERE location = ?", (location,))

    def shortened_sidecars(self, limit: int = 10) -> list[tuple[str, str]]:
        """(file, sidecar) of uploaded files whose sidecar has a shortened name (the name was
        too long for ``<name>.asset.json``: see `watcher.state.names`)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT path, sidecar FROM files WHERE sidecar LIKE '%~%.asset.json' "
                "ORDER BY updated_at DESC"
            ).fetchall()
        found = [
            (path, side)
            for path, side in rows
            if Path(side).name != Path(path).name + ".asset.json"
        ]
        return found[:limit]

    # -- process-wide facts (for `status`) ---------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction(files=False) as db:
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def _update_for_paths(self, query: str, paths: list[str] | None) -> int:
        """Run an UPDATE taking (now, now) for every row it matches, or only for ``paths``."""
        now = time.time()
        with self._transaction() as db:
            if paths is None:
                return db.execute(query, (now, now)).rowcount
            return sum(
                db.execute(query + " AND path = ?", (now, now, path)).rowcount for path in paths
            )

    # -- work handed to a running daemon by a command ----------------------------------------
    def request(self, path: str, folder: str) -> float:
        """Ask the daemon that owns this journal to look at ``path``; returns the time asked."""
        now = time.time()
        with self._transaction(files=False) as db:
            db.execute(
                "INSERT OR REPLACE INTO requests (path, folder, requested_at) VALUES (?, ?, ?)",
                (path, folder, now),
            )
        return now

    def take_requests(self) -> list[tuple[str, str]]:
        """(path, folder) of every request, removed as they are taken (the daemon's side)."""
        with self._lock:
            # A read first: an idle daemon asks every few seconds and should write nothing.
            if self._db.execute("SELECT 1 FROM requests LIMIT 1").fetchone() is None:
                return []
        with self._transaction(files=False) as db:
            rows = db.execute("SELECT path, folder FROM requests ORDER BY requested_at").fetchall()
            db.execute("DELETE FROM requests")
        return [(path, folder) for path, folder in rows]

    # -- asset cache -------------------------------------------------------------------------
    def cache_recorded_assets(self) -> int:
        """Fill the asset cache from uploaded rows (after a rebuild from sidecars)."""
        with self._transaction(files=False) as db:
            return db.execute(
                "INSERT OR IGNORE INTO assets "
                "(sha256, content_type, size, asset_id, url, protocol, uploaded_at) "
                "SELECT sha256, content_type, size, asset_id, asset_url, protocol, created_at "
                "FROM files WHERE state = 'uploaded' AND reused = 0 "
                "AND sha256 IS NOT NULL AND asset_id IS NOT NULL AND asset_url IS NOT NULL"
            ).rowcount

    def finish_upload(self, key: str, *, cache: bool, **changes: Any) -> None:
        """Mark a file `uploaded` and (unless its asset was reused) remember its asset for the
        cache, in one transaction."""
        _known_columns(changes, _UPDATABLE, "files")
        changes.update(state=FileState.UPLOADED, updated_at=time.time())
        assignments = ", ".join(f"{name} = ?" for name in changes)
        statement = f"UPDATE files SET {assignments} WHERE path = ?"
        with self._transaction() as db:
            moved = False
            if self.on_transition is None:
                condition, allowed = _ENTRY_CONDITIONS[FileState.UPLOADED]
                moved = bool(
                    db.execute(statement + condition, (*changes.values(), key, *allowed)).rowcount
                )
            if not moved:
                found = db.execute("SELECT state FROM files WHERE path = ?", (key,)).fetchone()
                if found is None:
                    return
                self._change_state(key, found[0], FileState.UPLOADED)
                db.execute(statement, (*changes.values(), key))
            if cache:
                db.execute(
                    "INSERT OR REPLACE INTO assets "
                    "(sha256, content_type, size, asset_id, url, protocol, uploaded_at) "
                    "SELECT sha256, content_type, size, asset_id, asset_url, protocol, ? "
                    "FROM files WHERE path = ? AND sha256 IS NOT NULL AND asset_id IS NOT NULL",
                    (time.time(), key),
                )

    # -- claims ------------------------------------------------------------------------------
    # One process owns a SQLite journal (the state-directory lock), so no other daemon can
    # hold a claim: every row that exists and is not final may be worked on, and nothing is
    # ever left behind by another daemon (this process's own leftovers resume at start).
    def claim(self, path: str) -> bool:
        with self._lock:
            found = self._db.execute("SELECT state FROM files WHERE path = ?", (path,)).fetchone()
        return found is not None and found[0] not in FINAL

    def claim_row(self, path: str) -> FileRow | None:
        row = self.get(path)
        return row if row is not None and row.state not in FINAL else None

    def renew_claims(self) -> int:
        return 0

    def release(self, path: str) -> None:
        return None

    def orphaned(self) -> list[FileRow]:
        return []

    # -- the daemons using the journal (for `status`) -----------------------------------------
    def register_daemon(self, version: str) -> None:
        now = time.time()
        with self._transaction(files=False) as db:
            db.execute(
                "INSERT OR REPLACE INTO daemons "
                "(owner, host, pid, version, started_at, heartbeat_at, in_flight) "
                "VALUES (?, ?, ?, ?, ?, ?, 0)",
                (self.owner, socket.gethostname(), os.getpid(), version, now, now),
            )

    def beat_daemon(self, in_flight: int) -> None:
        with self._transaction(files=False) as db:
            db.execute(
                "UPDATE daemons SET heartbeat_at = ?, in_flight = ? WHERE owner = ?",
                (time.time(), in_flight, self.owner),
            )

    def unregister_daemon(self) -> None:
        with self._transaction(files=False) as db:
            db.execute("DELETE FROM daemons WHERE owner = ?", (self.owner,))

    def daemons(self) -> list[DaemonRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT owner, host, pid, version, started_at, ? - heartbeat_at, in_flight "
                "FROM daemons ORDER BY host, pid",
                (time.time(),),
            ).fetchall()
        return [DaemonRow(*row) for row in rows]

    # -- pauses shared by every daemon using the journal -------------------------------------
    def pause_fleet(self, kind: str, seconds: float, reason: str) -> None:
        with self._transaction(files=False) as db:
            key = f"pause:{kind}"
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            until = time.time() + seconds
            if row is None or json.loads(row[0])["until"] < until:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (key, json.dumps({"until": until, "reason": reason})),
                )

    def fleet_pause(self, kind: str) -> tuple[float, str]:
        pause = self.get_meta(f"pause:{kind}")
        left = pause["until"] - time.time() if pause else 0.0
        return (left, pause["reason"]) if pause and left > 0 else (0.0, "")

    def resume_fleet(self, kind: str) -> None:
        with self._transaction(files=False) as db:
            db.execute("DELETE FROM meta WHERE key = ?", (f"pause:{kind}",))
