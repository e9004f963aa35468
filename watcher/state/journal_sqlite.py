"""The embedded journal: one SQLite file, used by one daemon (see `watcher.state.journal_api`).
What it does is written once in `watcher.state.journal_core`; here is what is SQLite's own: the
file and its one connection, the schema, a lock around each statement, and the counts kept
between commits.

Durability: WAL mode with ``synchronous=NORMAL``. In WAL mode a commit is written to the WAL
file before `commit()` returns, so it survives the process being killed (``kill -9``, an OOM
kill, a crash): the kernel still holds and later writes those pages. Only a power cut or
kernel crash can lose the last few commits (never corrupt the database), and then the cost is
bounded: the file is still in its folder and is picked up again, at worst uploaded to a fresh
slot once more. ``FULL`` would add an fsync to every commit, several milliseconds each on
ordinary disks, for protection the daemon does not need.

**Writes** that need no look at the row first run as one statement, committed on its own
(SQLite's autocommit): a third of the statements, each of which hands the interpreter lock to
another thread and back.
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

from watcher.state.journal import DaemonRow, FileRow, JournalError, TransitionHook
from watcher.state.journal_backend import Statements, T
from watcher.state.journal_core import FILE_COLUMNS, ROW_VALUES, JournalCore
from watcher.state.states import FINAL

SCHEMA_VERSION = 1

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
CREATE TABLE IF NOT EXISTS conversions (
    source_sha256 TEXT NOT NULL,
    target_type   TEXT NOT NULL,
    source_type   TEXT NOT NULL,
    source_size   INTEGER NOT NULL,
    output_sha256 TEXT,
    output_size   INTEGER,
    action        TEXT,
    tool          TEXT,
    tool_version  TEXT,
    started_at    REAL,
    converted_at  REAL,
    PRIMARY KEY (source_sha256, target_type)
);
CREATE TABLE IF NOT EXISTS outbox (
    id          TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    path        TEXT NOT NULL,
    target      TEXT NOT NULL,
    body        TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL,
    state       TEXT NOT NULL,
    last_error  TEXT,
    created_at  REAL NOT NULL,
    owner       TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
"""

_PUT = (
    f"INSERT OR REPLACE INTO files ({', '.join(FILE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(FILE_COLUMNS))})"
)


class SqliteJournal(JournalCore):
    """The embedded journal: one SQLite file, one daemon (see `watcher.state.journal_api`)."""

    _MARK = "?"
    # Values per `IN (...)`: under SQLite's oldest limit on bound parameters (999).
    _LOOKUP_CHUNK = 900
    # A write transaction (BEGIN IMMEDIATE) holds the whole database: no row lock to take.
    _FOR_UPDATE = ""
    _HELD_ROW = "SELECT state, NULL FROM files WHERE path = ?"
    _PUT = _PUT

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

    # -- statements --------------------------------------------------------------------------
    def _one(self, query: str, params: Any = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(query, params).fetchone()
        return row

    def _all(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(query, params).fetchall()

    def _write(self, query: str, params: Any = (), *, files: bool = False) -> int:
        with self._lock:
            changed = self._db.execute(query, params).rowcount
            if files:
                self._commits += 1
        return changed

    def _atomically(self, work: Callable[[Statements], T], *, files: bool = False) -> T:
        with self._transaction(files=files) as db:
            return work(db)

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

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)

    def _upsert(
        self, table: str, columns: Sequence[str], keys: Sequence[str], rows: str | None = None
    ) -> str:
        source = rows or f"VALUES ({', '.join('?' * len(columns))})"
        return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) {source}"

    def _insert_new(self, table: str, columns: Sequence[str], rows: str) -> str:
        return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) {rows}"

    def _put_params(self, row: FileRow) -> Sequence[Any]:
        return ROW_VALUES(row)

    def counts(self) -> dict[str, int]:
        """Rows per state. Counted again only after a commit (ours, or another process's:
        SQLite's data_version): the status line asks every few seconds, and counting is a
        walk of every row (10 ms at 100,000, forever, on an idle daemon)."""
        with self._lock:
            version = (self._commits, self._db.execute("PRAGMA data_version").fetchone()[0])
            if version != self._counted_at:
                self._counts = super().counts()
                self._counted_at = version
            return dict(self._counts)

    def take_requests(self) -> list[tuple[str, str]]:
        """(path, folder) of every request, removed as they are taken (the daemon's side)."""
        # A read first: an idle daemon asks every few seconds and should write nothing.
        if self._one("SELECT 1 FROM requests LIMIT 1") is None:
            return []
        with self._transaction(files=False) as db:
            rows = db.execute("SELECT path, folder FROM requests ORDER BY requested_at").fetchall()
            db.execute("DELETE FROM requests")
        return [(path, folder) for path, folder in rows]

    # -- claims ------------------------------------------------------------------------------
    # One process owns a SQLite journal (the state-directory lock), so no other daemon can
    # hold a claim: every row that exists and is not final may be worked on, and nothing is
    # ever left behind by another daemon (this process's own leftovers resume at start).
    def claim(self, path: str) -> bool:
        found = self._one("SELECT state FROM files WHERE path = ?", (path,))
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

    # -- the daemons using the journal (for `status`), on this host's clock ------------------
    def register_daemon(self, version: str) -> None:
        now = time.time()
        self._write(
            "INSERT OR REPLACE INTO daemons "
            "(owner, host, pid, version, started_at, heartbeat_at, in_flight) "
            "VALUES (?, ?, ?, ?, ?, ?, 0)",
            (self.owner, socket.gethostname(), os.getpid(), version, now, now),
        )

    def beat_daemon(self, in_flight: int) -> None:
        self._write(
            "UPDATE daemons SET heartbeat_at = ?, in_flight = ? WHERE owner = ?",
            (time.time(), in_flight, self.owner),
        )

    def daemons(self) -> list[DaemonRow]:
        rows = self._all(
            "SELECT owner, host, pid, version, started_at, ? - heartbeat_at, in_flight "
            "FROM daemons ORDER BY host, pid",
            (time.time(),),
        )
        return [DaemonRow(*row) for row in rows]

    # -- pauses shared by every daemon using the journal (kept in meta) ----------------------
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
        self._write("DELETE FROM meta WHERE key = ?", (f"pause:{kind}",))
