"""The shared journal: the same rows as the SQLite journal, in a PostgreSQL database that a
fleet of daemons (on one host or many) uses at once (see `watcher.state.journal_api`).

**Claims and leases.** A row carries `owner` (the daemon working on it) and `lease_until`
(seconds since the epoch, on the *database's* clock, so hosts whose clocks differ still agree).
`claim` is one atomic `UPDATE … WHERE owner IS NULL OR owner = me OR lease_until < now`: of
two daemons asking at once, exactly one gets the row. Admitting a queued file claims it in
the same statement. The owner renews all its leases in one statement every third of the lease;
a daemon killed with `kill -9` stops renewing, and once its leases lapse `orphaned` hands its
rows to whoever asks; they resume from their recorded slots as after a restart. Writes to a
row this daemon claimed are fenced: each checks, in its own transaction, that the row is still
this daemon's, and raises `ClaimLost` if a take-over happened meanwhile (see `_fence`).

**Connection loss** pauses work instead of failing it (see `watcher.state.journal_pg_pool`):
each statement is retried until the database answers, so each can safely run twice (a commit
whose answer was lost is repeated): writes set values, they do not add.

**Credentials** never come from the config (it refuses a URL with a password): libpq reads
`PGPASSFILE` or `~/.pgpass`, or `PGPASSWORD`; the systemd credential `pgpass` is used as the
passfile when `PGPASSFILE` is not set.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from watcher.state.journal import (
    VIDEO_ACTIVE_STATES,
    ClaimLost,
    DaemonRow,
    FileRow,
    JournalError,
    TransitionHook,
    VideoRow,
)
from watcher.state.journal_core import (
    _COLUMNS,
    _UPDATABLE,
    _VIDEO_COLUMNS,
    _VIDEO_UPDATABLE,
    JournalCore,
    _check_admitted,
    _file_row,
    _known_columns,
    _new_video,
)
from watcher.state.journal_pg_pool import ConnectionPool
from watcher.state.states import DUE, FINAL, WAITING, FileState

SCHEMA_VERSION = 1
T = TypeVar("T")
# The database's clock, in seconds since the epoch: every lease is read and written on it.
NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
# Rows left mid-way that another daemon may take over once their claim has lapsed.
_RESUMABLE = (FileState.QUEUED, FileState.UPLOADING, FileState.RECORDING)
# Serialises schema creation between daemons starting at the same moment.
_SCHEMA_LOCK = 0x68657967  # "heyg"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path            TEXT PRIMARY KEY,
    folder          TEXT NOT NULL,
    size            BIGINT NOT NULL,
    mtime_ns        BIGINT NOT NULL,
    inode           BIGINT NOT NULL,
    sha256          TEXT,
    content_type    TEXT,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION,
    asset_id        TEXT,
    asset_url       TEXT,
    protocol        TEXT,
    reused          INTEGER NOT NULL DEFAULT 0,
    previous_asset_id TEXT,
    slot            TEXT,
    slot_expires_at DOUBLE PRECISION,
    sidecar         TEXT,
    last_error      TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    owner           TEXT,
    lease_until     DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS files_state ON files (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS files_owner ON files (owner);
CREATE TABLE IF NOT EXISTS assets (
    sha256       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    asset_id     TEXT NOT NULL,
    url          TEXT NOT NULL,
    protocol     TEXT NOT NULL,
    uploaded_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sha256, content_type)
);
CREATE INDEX IF NOT EXISTS assets_size ON assets (size, content_type);
CREATE TABLE IF NOT EXISTS videos (
    path          TEXT PRIMARY KEY,
    template      TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    state         TEXT NOT NULL,
    video_id      TEXT,
    script_path   TEXT,
    body          TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       DOUBLE PRECISION,
    deadline      DOUBLE PRECISION,
    video_url     TEXT,
    thumbnail_url TEXT,
    duration      DOUBLE PRECISION,
    error         TEXT,
    submitted_at  DOUBLE PRECISION,
    completed_at  DOUBLE PRECISION,
    downloaded_to TEXT,
    created_at    DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS videos_due ON videos (next_at);
CREATE TABLE IF NOT EXISTS requests (
    path         TEXT PRIMARY KEY,
    folder       TEXT NOT NULL,
    requested_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_sidecars (
    location   TEXT PRIMARY KEY,
    file       TEXT NOT NULL,
    folder     TEXT NOT NULL,
    document   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    failures   INTEGER NOT NULL,
    next_at    DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS pauses (
    kind   TEXT PRIMARY KEY,
    until  DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS daemons (
    owner        TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT NOT NULL,
    started_at   DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    in_flight    INTEGER NOT NULL DEFAULT 0
);
"""


def default_owner() -> str:
    """This daemon's name in the claims: host, pid and a random tag (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _value(value: Any) -> Any:
    # States are StrEnums: store their text, as the SQLite journal does.
    return value.value if isinstance(value, Enum) else value


def _values(values: Any) -> tuple[Any, ...]:
    return tuple(_value(value) for value in values)


def _marks(count: int) -> str:
    return ", ".join(["%s"] * count)


def _connect_options() -> dict[str, Any]:
    """libpq options the URL does not carry: TCP keepalives (a host cut off is noticed in
    seconds, not hours) and the systemd credential as the passfile."""
    options: dict[str, Any] = {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "autocommit": True,
    }
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and "PGPASSFILE" not in os.environ:
        passfile = Path(credentials) / "pgpass"
        if passfile.is_file():
            options["passfile"] = str(passfile)
    return options


def safe_url(url: str) -> str:
    """The URL for messages (the config refuses passwords, but a message never shows one)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    userinfo, _, host = rest.rpartition("@")
    return f"{scheme}://{userinfo.split(':')[0]}@{host}"


def _put_statement() -> str:
    columns = [*_COLUMNS, "owner", "lease_until"]
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in columns if name != "path")
    return (
        f"INSERT INTO files ({', '.join(columns)}) "
        f"VALUES ({_marks(len(_COLUMNS) + 1)}, {NOW} + %s) "
        f"ON CONFLICT (path) DO UPDATE SET {updates} "
        # Not over a row another daemon is working on, nor over this very version once
        # it is past `queued`: another daemon admitted it first.
        f"WHERE (files.owner IS NULL OR files.owner = %s OR files.lease_until < {NOW}) "
        "AND NOT (files.size = EXCLUDED.size AND files.mtime_ns = EXCLUDED.mtime_ns "
        "AND files.inode = EXCLUDED.inode AND files.state <> 'queued')"
    )


# Built once: every admitted file is put with it.
_PUT_STATEMENT = _put_statement()


class PgJournal(JournalCore):
    """The journal in PostgreSQL (see the module docstring)."""

    _MARK = "%s"

    def __init__(
        self,
        url: str,
        *,
        owner: str | None = None,
        lease_seconds: float = 30.0,
        wait: bool = False,
        on_waiting: Callable[[], None] = lambda: None,
    ) -> None:
        self.url = url
        self.owner = owner or default_owner()
        self.lease_seconds = lease_seconds
        # Called about every second by each thread waiting for the database: a daemon's
        # watchdog must not take a paused journal for a wedged worker.
        self.on_waiting = on_waiting
        # Told of every change of a file's state this daemon makes (the -v log).
        self.on_transition: TransitionHook | None = None
        # Rows this daemon claimed and has not let go: their writes are fenced (see `_fence`).
        self._held: set[str] = set()
        self._held_lock = threading.Lock()
        self._pool = ConnectionPool(self._connect, safe_url(url), lambda: self.on_waiting())
        if not wait:
            self._pool.open_first()
        # With ``wait``, this waits (loudly) for the database to answer.
        self._run(self._ensure_schema)

    @property
    def where(self) -> str:
        return safe_url(self.url)

    @property
    def outage(self) -> str | None:
        return self._pool.outage

    # -- the connections ---------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, **_connect_options())

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise JournalError(
                    f"journal database {self.where} has schema version {row[0]}, written by a "
                    f"newer heygen-watcher (this one knows version {SCHEMA_VERSION}); upgrade "
                    "this daemon"
                )
            conn.execute(_SCHEMA)
            if row is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', %s)",
                    (str(SCHEMA_VERSION),),
                )

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        return self._pool.run(work)

    def close(self) -> None:
        self._pool.close()

    def _all(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return self._run(lambda conn: conn.execute(query, _values(params)).fetchall())

    def _one(self, query: str, params: Any = ()) -> tuple[Any, ...] | None:
        return self._run(lambda conn: conn.execute(query, _values(params)).fetchone())

    def _write(self, query: str, params: Any = ()) -> int:
        def run(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                return conn.execute(query, _values(params)).rowcount

        return self._run(run)

    # -- files -------------------------------------------------------------------------------
    def _put_params(self, row: FileRow) -> tuple[Any, ...]:
        # A queued file is claimed as it is admitted; a final one belongs to nobody.
        owner = self.owner if row.state is FileState.QUEUED else None
        return (
            *(getattr(row, name) for name in _COLUMNS),
            owner,
            self.lease_seconds if owner else None,
            self.owner,
        )

    def put(self, row: FileRow) -> None:
        _check_admitted(row)
        statement, params = _PUT_STATEMENT, _values(self._put_params(row))

        def run(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                found = conn.execute(
                    "SELECT state FROM files WHERE path = %s FOR UPDATE", (row.path,)
                ).fetchone()
                written = conn.execute(statement, params).rowcount
                if written and self.on_transition is not None:
                    self.on_transition(row.path, found[0] if found else None, row.state)
            return int(written)

        if self._run(run):
            # Admitted queued, the row is claimed by this daemon; otherwise by nobody.
            if row.state is FileState.QUEUED:
                with self._held_lock:
                    self._held.add(row.path)
            else:
                self._let_go(row.path)

    def put_many(self, rows: list[FileRow], chunk: int = 5000) -> None:
        for row in rows:
            _check_admitted(row)
            if row.state is not FileState.QUEUED:
                self._let_go(row.path)  # a row admitted final belongs to nobody
        statement = _PUT_STATEMENT
        for start in range(0, len(rows), chunk):
            batch = [_values(self._put_params(row)) for row in rows[start : start + chunk]]

            def run(conn: psycopg.Connection[Any], batch: list[tuple[Any, ...]] = batch) -> None:
                with conn.transaction(), conn.cursor() as cursor:
                    cursor.executemany(statement, batch)

            self._run(run)

    def update(self, key: str, **changes: Any) -> None:
        _known_columns(changes, _UPDATABLE, "files")
        changes["updated_at"] = time.time()
        self._run(lambda conn: self._update_in(conn, key, changes))

    def _update_in(self, conn: psycopg.Connection[Any], key: str, changes: dict[str, Any]) -> None:
        assignments = ", ".join(f"{name} = %s" for name in changes)
        fenced = self._holds(key)
        with conn.transaction():
            if "state" in changes or fenced:
                found = conn.execute(
                    "SELECT state, owner FROM files WHERE path = %s FOR UPDATE", (key,)
                ).fetchone()
                if found is None:
                    return
                if fenced:
                    self._fence(key, found[1])
                if "state" in changes:
                    self._change_state(key, found[0], changes["state"])
            conn.execute(
                f"UPDATE files SET {assignments} WHERE path = %s",
                _values((*changes.values(), key)),
            )

    def move(self, old_path: str, new_path: str, inode: int | None = None) -> None:
        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                if self._holds(old_path):
                    found = conn.execute(
                        "SELECT owner FROM files WHERE path = %s FOR UPDATE", (old_path,)
                    ).fetchone()
                    if found is not None:
                        self._fence(old_path, found[0])
                self._move_rows(conn, old_path, new_path, inode)

        self._run(run)
        with self._held_lock:
            if old_path in self._held:
                self._held.discard(old_path)
                self._held.add(new_path)

    def forget(self, path: str) -> None:
        self._write("DELETE FROM files WHERE path = %s", (path,))

    def finish_upload(self, key: str, *, cache: bool, **changes: Any) -> None:
        _known_columns(changes, _UPDATABLE, "files")
        changes.update(state=FileState.UPLOADED, updated_at=time.time())
        assignments = ", ".join(f"{name} = %s" for name in changes)

        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                found = conn.execute(
                    "SELECT state, owner FROM files WHERE path = %s FOR UPDATE", (key,)
                ).fetchone()
                if found is None:
                    return
                if found[0] == FileState.UPLOADED:
                    return  # a statement repeated after a lost answer: already done
                if self._holds(key):
                    self._fence(key, found[1])
                self._change_state(key, found[0], FileState.UPLOADED)
                conn.execute(
                    f"UPDATE files SET {assignments}, owner = NULL, lease_until = NULL "
                    "WHERE path = %s",
                    _values((*changes.values(), key)),
                )
                if cache:
                    conn.execute(
                        "INSERT INTO assets "
                        "(sha256, content_type, size, asset_id, url, protocol, uploaded_at) "
                        "SELECT sha256, content_type, size, asset_id, asset_url, protocol, %s "
                        "FROM files WHERE path = %s AND sha256 IS NOT NULL "
                        "AND asset_id IS NOT NULL "
                        "ON CONFLICT (sha256, content_type) DO UPDATE SET size = EXCLUDED.size, "
                        "asset_id = EXCLUDED.asset_id, url = EXCLUDED.url, "
                        "protocol = EXCLUDED.protocol, uploaded_at = EXCLUDED.uploaded_at",
                        (time.time(), key),
                    )

        self._run(run)
        self._let_go(key)

    def fingerprints(self) -> dict[str, tuple[int, int, str, float]]:
        rows = self._all("SELECT path, size, mtime_ns, state, updated_at FROM files")
        return {
            path: (size, mtime_ns, state, updated) for path, size, mtime_ns, state, updated in rows
        }

    def fingerprints_of(self, paths: Sequence[str]) -> dict[str, tuple[int, int, str, float]]:
        rows = self._all(
            "SELECT path, size, mtime_ns, state, updated_at FROM files WHERE path = ANY(%s)",
            (list(paths),),
        )
        return {
            path: (size, mtime_ns, state, updated) for path, size, mtime_ns, state, updated in rows
        }

    def rows_in(self, states: tuple[str, ...]) -> list[FileRow]:
        rows = self._all(
            f"SELECT {', '.join(_COLUMNS)} FROM files WHERE state = ANY(%s) ORDER BY created_at",
            ([_value(state) for state in states],),
        )
        return [_file_row(row) for row in rows]

    def due(self, now: float) -> list[FileRow]:
        rows = self._all(
            f"SELECT {', '.join(_COLUMNS)} FROM files "
            "WHERE state = ANY(%s) AND next_attempt_at <= %s ORDER BY next_attempt_at",
            ([_value(state) for state in DUE], now),
        )
        return [_file_row(row) for row in rows]

    def next_due_at(self) -> float | None:
        row = self._one(
            "SELECT MIN(next_attempt_at) FROM files WHERE state = ANY(%s)",
            ([_value(state) for state in DUE],),
        )
        return row[0] if row else None

    def counts(self) -> dict[str, int]:
        rows = self._all("SELECT state, COUNT(*) FROM files GROUP BY state")
        return {state: count for state, count in rows}

    def oldest_waiting(self) -> float | None:
        row = self._one(
            "SELECT MIN(created_at) FROM files WHERE state = ANY(%s)",
            ([_value(state) for state in WAITING],),
        )
        return row[0] if row else None

    def recent_failures(self, limit: int = 10) -> list[FileRow]:
        rows = self._all(
            f"SELECT {', '.join(_COLUMNS)} FROM files WHERE state IN ('failed', 'retrying') "
            # An upload whose record (move, sidecar) cannot be written yet says why too.
            "OR (state = 'recording' AND last_error IS NOT NULL) "
            "ORDER BY updated_at DESC LIMIT %s",
            (limit,),
        )
        return [_file_row(row) for row in rows]

    def _update_for_paths(self, query: str, paths: list[str] | None) -> int:
        now = time.time()
        if paths is None:
            return self._write(query, (now, now))
        return self._write(query + " AND path = ANY(%s)", (now, now, paths))

    # -- sidecars that could not be written yet ----------------------------------------------
    def defer_sidecar(
        self,
        location: str,
        file: str,
        folder: str,
        document: dict[str, Any],
        reason: str,
        next_at_for: Callable[[int], float],
    ) -> int:
        def run(conn: psycopg.Connection[Any]) -> int:
            now = time.time()
            with conn.transaction():
                row = conn.execute(
                    "SELECT failures, created_at FROM pending_sidecars WHERE location = %s "
                    "FOR UPDATE",
                    (location,),
                ).fetchone()
                failures, created = (row[0] + 1, row[1]) if row else (1, now)
                values = (file, folder, json.dumps(document), reason, failures)
                conn.execute(
                    "INSERT INTO pending_sidecars VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (location) DO UPDATE SET file = EXCLUDED.file, "
                    "folder = EXCLUDED.folder, document = EXCLUDED.document, "
                    "reason = EXCLUDED.reason, failures = EXCLUDED.failures, "
                    "next_at = EXCLUDED.next_at",
                    (location, *values, next_at_for(failures), created),
                )
            return int(failures)

        return self._run(run)

    def sidecar_written(self, location: str) -> None:
        self._write("DELETE FROM pending_sidecars WHERE location = %s", (location,))

    def shortened_sidecars(self, limit: int = 10) -> list[tuple[str, str]]:
        rows = self._all(
            "SELECT path, sidecar FROM files WHERE sidecar LIKE '%%~%%.asset.json' "
            "ORDER BY updated_at DESC"
        )
        found = [
            (path, side)
            for path, side in rows
            if Path(side).name != Path(path).name + ".asset.json"
        ]
        return found[:limit]

    # -- work handed to a running daemon by a command ----------------------------------------
    def request(self, path: str, folder: str) -> float:
        """Ask a daemon of the fleet to look at ``path``; returns the time asked."""
        now = time.time()
        self._write(
            "INSERT INTO requests (path, folder, requested_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (path) DO UPDATE SET folder = EXCLUDED.folder, "
            "requested_at = EXCLUDED.requested_at",
            (path, folder, now),
        )
        return now

    def take_requests(self) -> list[tuple[str, str]]:
        """(path, folder) of every request, each taken by exactly one daemon of the fleet."""
        rows = self._all(
            "DELETE FROM requests WHERE path IN "
            "(SELECT path FROM requests FOR UPDATE SKIP LOCKED) RETURNING path, folder, "
            "requested_at"
        )
        return [(path, folder) for path, folder, _ in sorted(rows, key=lambda row: row[2])]

    # -- claims ------------------------------------------------------------------------------
    def claim(self, path: str) -> bool:
        return self._claim(path, "1") is not None

    def claim_row(self, path: str) -> FileRow | None:
        row = self._claim(path, ", ".join(_COLUMNS))
        return _file_row(row) if row is not None else None

    def _claim(self, path: str, returning: str) -> tuple[Any, ...] | None:
        row = self._one(
            f"UPDATE files SET owner = %s, lease_until = {NOW} + %s "
            "WHERE path = %s AND state <> ALL(%s) "
            f"AND (owner IS NULL OR owner = %s OR lease_until < {NOW}) RETURNING {returning}",
            (self.owner, self.lease_seconds, path, [_value(s) for s in FINAL], self.owner),
        )
        if row is not None:
            with self._held_lock:
                self._held.add(path)
        return row

    def _holds(self, path: str) -> bool:
        with self._held_lock:
            return path in self._held

    def _let_go(self, path: str) -> None:
        with self._held_lock:
            self._held.discard(path)

    def _fence(self, path: str, owner: str | None) -> None:
        """``owner``: the row's, read `FOR UPDATE` in the transaction of a write to a row this
        daemon claimed; it must still be this daemon. The owner is this process's own name
        (host, pid, a random tag), so a daemon that stalled past its lease (frozen, swapped
        out, cut off) and was taken over finds another name there, or none, and writes
        nothing: not the asset, not a failure, not `uploaded`. The row stays locked until the
        write commits, so no take-over slips in between the check and the write."""
        if owner != self.owner:
            # Still counted as held: every later write of the work in hand is refused too,
            # until the work ends (`release`).
            raise ClaimLost(
                path,
                f"this daemon's claim lapsed (it stalled past its lease of "
                f"{self.lease_seconds:g}s) and another daemon took the file over",
            )

    def renew_claims(self) -> int:
        return self._write(
            f"UPDATE files SET lease_until = {NOW} + %s WHERE owner = %s",
            (self.lease_seconds, self.owner),
        )

    def release(self, path: str) -> None:
        self._let_go(path)
        self._write(
            "UPDATE files SET owner = NULL, lease_until = NULL WHERE path = %s AND owner = %s",
            (path, self.owner),
        )

    def orphaned(self) -> list[FileRow]:
        rows = self._all(
            f"SELECT {', '.join(_COLUMNS)} FROM files WHERE state = ANY(%s) "
            f"AND (owner IS NULL OR (owner <> %s AND lease_until < {NOW})) "
            "ORDER BY created_at LIMIT 1000",
            ([_value(state) for state in _RESUMABLE], self.owner),
        )
        return [_file_row(row) for row in rows]

    # -- asset cache -------------------------------------------------------------------------
    def cache_recorded_assets(self) -> int:
        return self._write(
            "INSERT INTO assets "
            "(sha256, content_type, size, asset_id, url, protocol, uploaded_at) "
            "SELECT DISTINCT ON (sha256, content_type) sha256, content_type, size, asset_id, "
            "asset_url, protocol, created_at "
            "FROM files WHERE state = 'uploaded' AND reused = 0 "
            "AND sha256 IS NOT NULL AND asset_id IS NOT NULL AND asset_url IS NOT NULL "
            "ON CONFLICT (sha256, content_type) DO NOTHING"
        )

    # -- videos ------------------------------------------------------------------------------
    def add_video(self, path: str, template: str, endpoint: str, state: str, **values: Any) -> None:
        columns = _new_video(path, template, endpoint, state, values)

        def run(conn: psycopg.Connection[Any]) -> None:
            # The whole row is replaced (columns not given go back to their defaults).
            with conn.transaction():
                conn.execute("DELETE FROM videos WHERE path = %s", (path,))
                conn.execute(
                    f"INSERT INTO videos ({', '.join(columns)}) VALUES ({_marks(len(columns))})",
                    _values(columns.values()),
                )

        self._run(run)

    def update_video(self, path: str, **changes: Any) -> None:
        _known_columns(changes, _VIDEO_UPDATABLE, "videos")
        changes["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = %s" for name in changes)
        self._write(f"UPDATE videos SET {assignments} WHERE path = %s", (*changes.values(), path))

    def claim_video(self, path: str, from_state: str, to_state: str, **changes: Any) -> bool:
        changes.update(state=to_state, updated_at=time.time())
        assignments = ", ".join(f"{name} = %s" for name in changes)
        return (
            self._write(
                f"UPDATE videos SET {assignments} WHERE path = %s AND state = %s",
                (*changes.values(), path, from_state),
            )
            == 1
        )

    def claim_video_step(self, path: str, now: float, hold_seconds: float) -> bool:
        return (
            self._write(
                "UPDATE videos SET next_at = %s WHERE path = %s AND state = ANY(%s) "
                "AND (next_at IS NULL OR next_at <= %s)",
                (now + hold_seconds, path, list(VIDEO_ACTIVE_STATES), now),
            )
            == 1
        )

    def due_videos(self, now: float) -> list[str]:
        rows = self._all(
            "SELECT path FROM videos WHERE state = ANY(%s) AND next_at <= %s ORDER BY next_at",
            (list(VIDEO_ACTIVE_STATES), now),
        )
        return [row[0] for row in rows]

    def next_video_at(self) -> float | None:
        row = self._one(
            "SELECT MIN(next_at) FROM videos WHERE state = ANY(%s)", (list(VIDEO_ACTIVE_STATES),)
        )
        return row[0] if row else None

    def videos_in(self, states: tuple[str, ...]) -> list[VideoRow]:
        rows = self._all(
            f"SELECT {', '.join(_VIDEO_COLUMNS)} FROM videos WHERE state = ANY(%s)",
            (list(states),),
        )
        return [VideoRow(*row) for row in rows]

    # -- process-wide facts ------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (key, json.dumps(value)),
        )

    # -- the daemons using the journal (for `status`) -----------------------------------------
    def register_daemon(self, version: str) -> None:
        self._write(
            "INSERT INTO daemons (owner, host, pid, version, started_at, heartbeat_at) "
            f"VALUES (%s, %s, %s, %s, {NOW}, {NOW}) ON CONFLICT (owner) DO UPDATE SET "
            "heartbeat_at = EXCLUDED.heartbeat_at",
            (self.owner, socket.gethostname(), os.getpid(), version),
        )
        # Daemons silent for a day are gone (killed, host lost): they leave the view.
        self._write(f"DELETE FROM daemons WHERE heartbeat_at < {NOW} - 86400")

    def beat_daemon(self, in_flight: int) -> None:
        self._write(
            f"UPDATE daemons SET heartbeat_at = {NOW}, in_flight = %s WHERE owner = %s",
            (in_flight, self.owner),
        )

    def unregister_daemon(self) -> None:
        self._write("DELETE FROM daemons WHERE owner = %s", (self.owner,))

    def daemons(self) -> list[DaemonRow]:
        rows = self._all(
            f"SELECT owner, host, pid, version, started_at, {NOW} - heartbeat_at, in_flight "
            "FROM daemons ORDER BY host, pid"
        )
        return [DaemonRow(*row) for row in rows]

    # -- pauses shared by every daemon using the journal -------------------------------------
    def pause_fleet(self, kind: str, seconds: float, reason: str) -> None:
        self._write(
            f"INSERT INTO pauses (kind, until, reason) VALUES (%s, {NOW} + %s, %s) "
            "ON CONFLICT (kind) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason "
            "WHERE pauses.until < EXCLUDED.until",
            (kind, seconds, reason),
        )

    def fleet_pause(self, kind: str) -> tuple[float, str]:
        row = self._one(f"SELECT until - {NOW}, reason FROM pauses WHERE kind = %s", (kind,))
        return (float(row[0]), str(row[1])) if row and row[0] > 0 else (0.0, "")

    def resume_fleet(self, kind: str) -> None:
        self._write("DELETE FROM pauses WHERE kind = %s", (kind,))
