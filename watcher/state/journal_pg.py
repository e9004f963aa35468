"""The shared journal: the same rows as the SQLite journal, in a PostgreSQL database that a
fleet of daemons (on one host or many) uses at once (see `watcher.state.journal_api`). What it
does is written once in `watcher.state.journal_core`; here is what is PostgreSQL's own: the
schema, its statements run on a pool of connections that rides out an outage
(`watcher.state.journal_pg_pool`), its dialect, the database's clock for everything the
fleet compares, and the claims on rows (`watcher.state.journal_pg_claims`).

Each statement can safely run twice (a commit whose answer was lost is repeated): writes set
values, they do not add.

**Credentials** never come from the config (it refuses a URL with a password): libpq reads
`PGPASSFILE` or `~/.pgpass`, or `PGPASSWORD`; the systemd credential `pgpass` is used as the
passfile when `PGPASSFILE` is not set.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import psycopg

from watcher.state.journal import DaemonRow, JournalError, TransitionHook
from watcher.state.journal_backend import Results, Statements, T
from watcher.state.journal_pg_claims import NOW, PgClaims
from watcher.state.journal_pg_pool import ConnectionPool

SCHEMA_VERSION = 1

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
CREATE TABLE IF NOT EXISTS conversions (
    source_sha256 TEXT NOT NULL,
    target_type   TEXT NOT NULL,
    source_type   TEXT NOT NULL,
    source_size   BIGINT NOT NULL,
    output_sha256 TEXT,
    output_size   BIGINT,
    action        TEXT,
    tool          TEXT,
    tool_version  TEXT,
    started_at    DOUBLE PRECISION,
    converted_at  DOUBLE PRECISION,
    PRIMARY KEY (source_sha256, target_type)
);
CREATE TABLE IF NOT EXISTS outbox (
    id          TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    path        TEXT NOT NULL,
    target      TEXT NOT NULL,
    body        TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     DOUBLE PRECISION NOT NULL,
    state       TEXT NOT NULL,
    last_error  TEXT,
    created_at  DOUBLE PRECISION NOT NULL,
    owner       TEXT,
    lease_until DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
"""


def default_owner() -> str:
    """This daemon's name in the claims: host, pid and a random tag (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _value(value: Any) -> Any:
    # States are StrEnums: store their text, as the SQLite journal does.
    return value.value if isinstance(value, Enum) else value


def _values(values: Any) -> tuple[Any, ...]:
    return tuple(_value(value) for value in values)


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


class _Converting:
    """A connection inside a transaction, storing enum members as their text (`_values`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, query: str, params: Any = (), /) -> Results:
        return self._conn.execute(query, _values(params))

    def executemany(self, query: str, params: Iterable[Any], /) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(query, (_values(values) for values in params))


class PgJournal(PgClaims):
    """The journal in PostgreSQL (see the module docstring)."""

    _MARK = "%s"
    # Values per `_in`: one array parameter, however many.
    _LOOKUP_CHUNK = sys.maxsize
    _FOR_UPDATE = " FOR UPDATE"
    _REPEATS_STATEMENTS = True

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
        self._start_claims()
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

    def _write(self, query: str, params: Any = (), *, files: bool = False) -> int:
        return self._atomically(lambda db: db.execute(query, params).rowcount)

    def _atomically(self, work: Callable[[Statements], T], *, files: bool = False) -> T:
        def run(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction():
                return work(_Converting(conn))

        return self._run(run)

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        return f"{column} = ANY(%s)", ([_value(value) for value in values],)

    def _upsert(
        self, table: str, columns: Sequence[str], keys: Sequence[str], rows: str | None = None
    ) -> str:
        source = rows or f"VALUES ({', '.join(['%s'] * len(columns))})"
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in columns if name not in keys)
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) {source} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
        )

    def _insert_new(self, table: str, columns: Sequence[str], rows: str) -> str:
        return f"INSERT INTO {table} ({', '.join(columns)}) {rows} ON CONFLICT DO NOTHING"

    # -- work handed to a running daemon by a command ----------------------------------------
    def take_requests(self) -> list[tuple[str, str]]:
        """(path, folder) of every request, each taken by exactly one daemon of the fleet."""
        rows = self._all(
            "DELETE FROM requests WHERE path IN "
            "(SELECT path FROM requests FOR UPDATE SKIP LOCKED) RETURNING path, folder, "
            "requested_at"
        )
        return [(path, folder) for path, folder, _ in sorted(rows, key=lambda row: row[2])]

    # -- the daemons using the journal (for `status`), on the database's clock --------------
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
