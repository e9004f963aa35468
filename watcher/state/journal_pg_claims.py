"""The shared journal's claims on rows: which daemon of a fleet works on a file now.

A row carries `owner` (the daemon working on it) and `lease_until` (seconds since the epoch,
on the *database's* clock, so hosts whose clocks differ still agree). `claim` is one atomic
`UPDATE … WHERE owner IS NULL OR owner = me OR lease_until < now`: of two daemons asking at
once, exactly one gets the row. Admitting a queued file claims it in the same statement
(`put`). The owner renews all its leases in one statement every third of the lease; a daemon
killed with `kill -9` stops renewing, and once its leases lapse `orphaned` hands its rows to
whoever asks; they resume from their recorded slots as after a restart. Writes to a row this
daemon claimed are fenced: each checks, in its own transaction, that the row is still this
daemon's, and raises `ClaimLost` if a take-over happened meanwhile (see `_fence`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from watcher.state.journal import ClaimLost, FileRow
from watcher.state.journal_core import FILE_COLUMNS, SELECT_FILES, JournalCore, file_row
from watcher.state.states import FINAL, FileState

# The database's clock, in seconds since the epoch: every lease is read and written on it.
NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
# Rows left mid-way that another daemon may take over once their claim has lapsed.
_RESUMABLE = (FileState.QUEUED, FileState.UPLOADING, FileState.RECORDING)


def _put_statement() -> str:
    columns = [*FILE_COLUMNS, "owner", "lease_until"]
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in columns if name != "path")
    return (
        f"INSERT INTO files ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * (len(FILE_COLUMNS) + 1))}, {NOW} + %s) "
        f"ON CONFLICT (path) DO UPDATE SET {updates} "
        # Not over a row another daemon is working on, nor over this very version once
        # it is past `queued`: another daemon admitted it first.
        f"WHERE (files.owner IS NULL OR files.owner = %s OR files.lease_until < {NOW}) "
        "AND NOT (files.size = EXCLUDED.size AND files.mtime_ns = EXCLUDED.mtime_ns "
        "AND files.inode = EXCLUDED.inode AND files.state <> 'queued')"
    )


class PgClaims(JournalCore):
    """Claims, leases and the fence on a fleet's shared journal (see the module docstring)."""

    _PUT = _put_statement()  # built once: every admitted file is put with it
    _HELD_ROW = "SELECT state, owner FROM files WHERE path = %s FOR UPDATE"
    # Finishing an upload ends the claim in the same write.
    _FINISHED = ", owner = NULL, lease_until = NULL"
    lease_seconds: float

    def _start_claims(self) -> None:
        # Rows this daemon claimed and has not let go: their writes are fenced (see `_fence`).
        self._held: set[str] = set()
        self._held_lock = threading.Lock()

    def _put_params(self, row: FileRow) -> Sequence[Any]:
        # A queued file is claimed as it is admitted; a final one belongs to nobody.
        owner = self.owner if row.state is FileState.QUEUED else None
        return (
            *(getattr(row, name) for name in FILE_COLUMNS),
            owner,
            self.lease_seconds if owner else None,
            self.owner,
        )

    def put_many(self, rows: list[FileRow], chunk: int = 5000) -> None:
        for row in rows:
            if row.state is not FileState.QUEUED:
                self._let_go(row.path)  # a row admitted final belongs to nobody
        super().put_many(rows, chunk)

    # -- what this daemon holds --------------------------------------------------------------
    def _holds(self, path: str) -> bool:
        with self._held_lock:
            return path in self._held

    def _admitted(self, row: FileRow) -> None:
        # Admitted queued, the row is claimed by this daemon; otherwise by nobody.
        if row.state is FileState.QUEUED:
            with self._held_lock:
                self._held.add(row.path)
        else:
            self._let_go(row.path)

    def _let_go(self, path: str) -> None:
        with self._held_lock:
            self._held.discard(path)

    def _moved(self, old_path: str, new_path: str) -> None:
        with self._held_lock:
            if old_path in self._held:
                self._held.discard(old_path)
                self._held.add(new_path)

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

    # -- claims ------------------------------------------------------------------------------
    def claim(self, path: str) -> bool:
        return self._claim(path, "1") is not None

    def claim_row(self, path: str) -> FileRow | None:
        row = self._claim(path, ", ".join(FILE_COLUMNS))
        return file_row(row) if row is not None else None

    def _claim(self, path: str, returning: str) -> tuple[Any, ...] | None:
        row = self._one(
            f"UPDATE files SET owner = %s, lease_until = {NOW} + %s "
            "WHERE path = %s AND state <> ALL(%s) "
            f"AND (owner IS NULL OR owner = %s OR lease_until < {NOW}) RETURNING {returning}",
            (self.owner, self.lease_seconds, path, [state.value for state in FINAL], self.owner),
        )
        if row is not None:
            with self._held_lock:
                self._held.add(path)
        return row

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
        resumable, states = self._in("state", _RESUMABLE)
        rows = self._all(
            f"{SELECT_FILES} WHERE {resumable} "
            f"AND (owner IS NULL OR (owner <> %s AND lease_until < {NOW})) "
            "ORDER BY created_at LIMIT 1000",
            (*states, self.owner),
        )
        return [file_row(row) for row in rows]
