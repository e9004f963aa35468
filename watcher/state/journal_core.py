"""The journal's operations on files, written once for both backends (`JournalCore`): every
statement in the backend's parameter style, and the one place the file states' transition
table (`watcher.state.states`) is enforced.

**A change of state** is checked in the UPDATE's own WHERE clause: it matches only a row in
one of the states the new one may be entered from (`ENTERED_FROM`), so the usual write is one
statement, committed on its own. Only a write that clause refused (the row gone, or a move
the table does not allow: `IllegalTransition`), a write a transition hook listens to (the
daemon's -v log, which needs the old state), or one to a row this daemon claimed on a shared
journal (fenced: see `watcher.state.journal_pg_claims`) reads the row first, in one transaction.
"""

from __future__ import annotations

import operator
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import fields
from functools import cached_property
from pathlib import Path
from typing import Any

from watcher.state.journal import CachedAsset, FileRow, OutboxEvent
from watcher.state.journal_backend import Statements
from watcher.state.journal_conversions import ConversionRecords
from watcher.state.journal_outbox import OutboxRecords
from watcher.state.journal_side import SideRecords, known_columns
from watcher.state.states import (
    ADMITTED,
    DUE,
    ENTERED_FROM,
    WAITING,
    FileState,
    check_transition,
)

FILE_COLUMNS = [f.name for f in fields(FileRow)]
# Every read of whole rows starts so (a row is read for each file handled).
SELECT_FILES = f"SELECT {', '.join(FILE_COLUMNS)} FROM files"
_STATE_COLUMN = FILE_COLUMNS.index("state")
# A row's values in column order, in one call (a million rows are adopted at start).
ROW_VALUES = operator.attrgetter(*FILE_COLUMNS)
# What `update` may change: everything but the key and the creation time.
_UPDATABLE = frozenset(FILE_COLUMNS) - {"path", "created_at"}
_ASSET_COLUMNS = ("sha256", "content_type", "size", "asset_id", "url", "protocol", "uploaded_at")
_FROM_UPLOADED_ROWS = "SELECT sha256, content_type, size, asset_id, asset_url, protocol, "


def file_row(values: Sequence[Any]) -> FileRow:
    listed = list(values)
    listed[_STATE_COLUMN] = FileState(listed[_STATE_COLUMN])
    return FileRow(*listed)


def _check_admitted(row: FileRow) -> None:
    if row.state not in ADMITTED:
        raise ValueError(
            f"{row.path}: a file is admitted as one of {sorted(ADMITTED)}, not {row.state!r}"
        )


class JournalCore(SideRecords, ConversionRecords, OutboxRecords):
    """Files and their asset cache, on any backend (see the module docstring)."""

    # The backend's statement admitting a whole row (`put`), which `_put_params` fills.
    _PUT: str
    # The row's state and owner (NULL where rows have none), locked until the commit.
    _HELD_ROW: str
    # What finishing an upload sets besides the caller's columns (a shared journal's claim
    # ends with it).
    _FINISHED = ""
    # Statements may run twice (a commit whose answer was lost is repeated): finishing an
    # upload that is finished already is then done, not an illegal move.
    _REPEATS_STATEMENTS = False

    @abstractmethod
    def _put_params(self, row: FileRow) -> Sequence[Any]:
        """`_PUT`'s parameters for admitting ``row``."""

    @cached_property
    def _entry_conditions(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """For an UPDATE to each state: the WHERE clause that lets it match only a row the
        transition table allows into that state, and the clause's values."""
        return {state.value: self._state_in(allowed) for state, allowed in ENTERED_FROM.items()}

    def _state_in(self, allowed: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        if not allowed:
            return " AND 1 = 0", ()  # entered from no state (`IN ()` is not SQL everywhere)
        return f" AND state IN ({', '.join([self._MARK] * len(allowed))})", allowed

    def _entered_from(self, state: str | None) -> tuple[str, tuple[str, ...]]:
        """`_entry_conditions` for ``state``; no condition for an update that leaves the
        state alone. A name that is no state is a ValueError, as in `check_transition`."""
        if state is None:
            return "", ()
        condition = self._entry_conditions.get(state)
        if condition is None:
            raise ValueError(f"{state!r} is not a file state")
        return condition

    def _change_state(self, key: str, old: str, new: str) -> None:
        """Inside the transaction that moves a row from ``old`` to ``new``: refuse a move the
        transition table does not allow, and tell the hook of a real change."""
        check_transition(key, old, new)
        if self.on_transition is not None and old != new:
            self.on_transition(key, old, new)

    # -- files: writes -----------------------------------------------------------------------
    def put(self, row: FileRow, *, events: Sequence[OutboxEvent] = ()) -> None:
        """Insert or replace a whole row: a file (or a new version of it) is admitted, with
        the notifications its admission causes (a rejection) in the same transaction."""
        _check_admitted(row)
        params = self._put_params(row)
        if self.on_transition is None and not events:
            written = self._write(self._PUT, params, files=True)
        else:
            written = self._atomically(
                lambda db: self._put_heard(db, row, params, events), files=True
            )
        if written:
            self._admitted(row)

    def _put_heard(
        self, db: Statements, row: FileRow, params: Sequence[Any], events: Sequence[OutboxEvent]
    ) -> int:
        found = db.execute(self._HELD_ROW, (row.path,)).fetchone()
        written = db.execute(self._PUT, params).rowcount
        if written and self.on_transition is not None:
            self.on_transition(row.path, found[0] if found else None, row.state)
        if written:
            self._insert_events(db, events)
        return written

    def put_many(self, rows: list[FileRow], chunk: int = 5000) -> None:
        """Insert many rows in a few transactions (adopting a backlog at start-up)."""
        for row in rows:
            _check_admitted(row)
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]

            def admit(db: Statements, part: list[FileRow] = part) -> None:
                db.executemany(self._PUT, map(self._put_params, part))

            self._atomically(admit, files=True)

    def update(self, key: str, *, events: Sequence[OutboxEvent] = (), **changes: Any) -> None:
        """Change some columns of the row for path ``key``, committed before returning.

        Only known columns; a change of state must be one the transition table allows
        (`IllegalTransition` names the file and both states). A row that is gone (the file
        vanished meanwhile) is left alone. ``events``: the notifications the change causes,
        written in its transaction."""
        known_columns(changes, _UPDATABLE, "files")
        changes["updated_at"] = time.time()
        mark = self._MARK
        statement = f"UPDATE files SET {self._assignments(changes)} WHERE path = {mark}"
        values = (*changes.values(), key)
        state = changes.get("state")
        fenced = self._holds(key)
        if not fenced and not events and (state is None or self.on_transition is None):
            condition, allowed = self._entered_from(state)
            moved = self._write(statement + condition, (*values, *allowed), files=True)
            if moved or state is None:
                return

        # Fenced, heard, or refused by the WHERE clause: the row gone, or a move the table
        # does not allow (`IllegalTransition`).
        def checked(db: Statements) -> None:
            found = db.execute(self._HELD_ROW, (key,)).fetchone()
            if found is None:
                return
            if fenced:
                self._fence(key, found[1])
            if state is not None:
                self._change_state(key, found[0], state)
            db.execute(statement, values)
            self._insert_events(db, events)

        self._atomically(checked, files=True)

    def record_slot(
        self, path: str, *, slot: str, asset_id: str, expires_at: float | None, **changes: Any
    ) -> None:
        """Where the bytes go (opaque JSON to the journal), committed before they are sent."""
        self.update(
            path,
            state=FileState.UPLOADING,
            slot=slot,
            slot_expires_at=expires_at,
            asset_id=asset_id,
            **changes,
        )

    def finish_upload(
        self, key: str, *, cache: bool, events: Sequence[OutboxEvent] = (), **changes: Any
    ) -> None:
        """Mark a file `uploaded` and (unless its asset was reused) remember its asset for the
        cache, in one transaction with the notifications it causes."""
        known_columns(changes, _UPDATABLE, "files")
        changes.update(state=FileState.UPLOADED, updated_at=time.time())
        mark = self._MARK
        assignments = self._assignments(changes)
        statement = f"UPDATE files SET {assignments}{self._FINISHED} WHERE path = {mark}"
        values = (*changes.values(), key)
        fenced = self._holds(key)

        def finish(db: Statements) -> None:
            moved = False
            if not fenced and self.on_transition is None:
                condition, allowed = self._entry_conditions[FileState.UPLOADED]
                moved = bool(db.execute(statement + condition, (*values, *allowed)).rowcount)
            if not moved:
                found = db.execute(self._HELD_ROW, (key,)).fetchone()
                if found is None:
                    return
                if self._REPEATS_STATEMENTS and found[0] == FileState.UPLOADED:
                    return  # a statement repeated after a lost answer: already done
                if fenced:
                    self._fence(key, found[1])
                self._change_state(key, found[0], FileState.UPLOADED)
                db.execute(statement, values)
            if cache:
                db.execute(self._cache_asset, (time.time(), key))
            self._insert_events(db, events)

        self._atomically(finish, files=True)
        self._let_go(key)

    @cached_property
    def _cache_asset(self) -> str:
        mark = self._MARK
        rows = (
            f"{_FROM_UPLOADED_ROWS}{mark} FROM files "
            f"WHERE path = {mark} AND sha256 IS NOT NULL AND asset_id IS NOT NULL"
        )
        return self._upsert("assets", _ASSET_COLUMNS, ("sha256", "content_type"), rows)

    def move(self, old_path: str, new_path: str, inode: int | None = None) -> None:
        """The file was moved (``after_upload: move``): its row follows it, in one commit,
        with its new inode (a move across filesystems is a copy) and no retry pending (the
        retry that moved it is the one under way)."""
        fenced = self._holds(old_path)
        mark = self._MARK

        def follow(db: Statements) -> None:
            if fenced:
                found = db.execute(self._HELD_ROW, (old_path,)).fetchone()
                if found is not None:
                    self._fence(old_path, found[1])
            for table in ("files", "videos"):
                db.execute(f"DELETE FROM {table} WHERE path = {mark}", (new_path,))
                db.execute(
                    f"UPDATE {table} SET path = {mark}, updated_at = {mark} WHERE path = {mark}",
                    (new_path, time.time(), old_path),
                )
            if inode is not None:
                db.execute(
                    f"UPDATE files SET inode = {mark}, next_attempt_at = NULL WHERE path = {mark}",
                    (inode, new_path),
                )

        self._atomically(follow, files=True)
        self._moved(old_path, new_path)

    def forget(self, path: str) -> None:
        self._write(f"DELETE FROM files WHERE path = {self._MARK}", (path,), files=True)

    def mark_for_retry(self, paths: list[str] | None = None) -> int:
        """Failed (or waiting, or held for the key) rows become due now with a fresh attempt
        count."""
        mark = self._MARK
        query = (
            f"UPDATE files SET state = 'retrying', attempts = 0, next_attempt_at = {mark}, "
            f"updated_at = {mark} WHERE state IN ('failed', 'retrying', 'held')"
        )
        return self._update_for_paths(query, paths)

    # -- files: reads ------------------------------------------------------------------------
    def get(self, path: str) -> FileRow | None:
        row = self._one(f"{SELECT_FILES} WHERE path = {self._MARK}", (path,))
        return file_row(row) if row else None

    def fingerprints(self) -> dict[str, tuple[int, int, str, float]]:
        """path → (size, mtime_ns, state, updated_at) for every row: what a scan compares
        against (and, for uploaded files, whether their sidecar changed since)."""
        rows = self._all("SELECT path, size, mtime_ns, state, updated_at FROM files")
        return {path: (size, mtime_ns, state, at) for path, size, mtime_ns, state, at in rows}

    def fingerprints_of(self, paths: Sequence[str]) -> dict[str, tuple[int, int, str, float]]:
        """`fingerprints` of these paths only (those with a row): what a scan of one folder
        compares against, so that a pass costs what it lists, not the whole journal."""
        found: dict[str, tuple[int, int, str, float]] = {}
        for chunk in self._chunks(paths):
            among, values = self._in("path", chunk)
            rows = self._all(
                f"SELECT path, size, mtime_ns, state, updated_at FROM files WHERE {among}", values
            )
            for path, size, mtime_ns, state, updated_at in rows:
                found[path] = (size, mtime_ns, state, updated_at)
        return found

    def rows_in(self, states: tuple[str, ...]) -> list[FileRow]:
        among, values = self._in("state", states)
        rows = self._all(
            f"{SELECT_FILES} WHERE {among} ORDER BY created_at",
            values,
        )
        return [file_row(row) for row in rows]

    def due(self, now: float) -> list[FileRow]:
        """Rows waiting for a retry whose time has come."""
        among, values = self._in("state", DUE)
        rows = self._all(
            f"{SELECT_FILES} WHERE {among} AND next_attempt_at <= {self._MARK} "
            "ORDER BY next_attempt_at",
            (*values, now),
        )
        return [file_row(row) for row in rows]

    def next_due_at(self) -> float | None:
        among, values = self._in("state", DUE)
        row = self._one(f"SELECT MIN(next_attempt_at) FROM files WHERE {among}", values)
        return row[0] if row else None

    def counts(self) -> dict[str, int]:
        """Rows per state."""
        rows = self._all("SELECT state, COUNT(*) FROM files GROUP BY state")
        return {state: count for state, count in rows}

    def oldest_waiting(self) -> float | None:
        among, values = self._in("state", WAITING)
        row = self._one(f"SELECT MIN(created_at) FROM files WHERE {among}", values)
        return row[0] if row else None

    def recent_failures(self, limit: int = 10) -> list[FileRow]:
        rows = self._all(
            f"{SELECT_FILES} WHERE state IN ('failed', 'retrying') "
            # An upload whose record (move, sidecar) cannot be written yet says why too.
            "OR (state = 'recording' AND last_error IS NOT NULL) "
            f"ORDER BY updated_at DESC LIMIT {self._MARK}",
            (limit,),
        )
        return [file_row(row) for row in rows]

    def shortened_sidecars(self, limit: int = 10) -> list[tuple[str, str]]:
        """(file, sidecar) of uploaded files whose sidecar has a shortened name (the name was
        too long for ``<name>.asset.json``: see `watcher.state.names`)."""
        rows = self._all(
            f"SELECT path, sidecar FROM files WHERE sidecar LIKE {self._MARK} "
            "ORDER BY updated_at DESC",
            ("%~%.asset.json",),
        )
        found = [
            (path, side)
            for path, side in rows
            if Path(side).name != Path(path).name + ".asset.json"
        ]
        return found[:limit]

    # -- asset cache -------------------------------------------------------------------------
    def cached_asset(self, sha256: str, content_type: str, newer_than: float) -> CachedAsset | None:
        mark = self._MARK
        row = self._one(
            "SELECT asset_id, url, protocol, uploaded_at FROM assets "
            f"WHERE sha256 = {mark} AND content_type = {mark} AND uploaded_at >= {mark}",
            (sha256, content_type, newer_than),
        )
        return CachedAsset(*row) if row else None

    def may_have_asset(self, size: int, content_type: str, newer_than: float) -> bool:
        """Could the cache hold these bytes? Identical bytes have identical sizes, so when no
        cached asset has this size the file need not be hashed before its upload."""
        mark = self._MARK
        row = self._one(
            f"SELECT 1 FROM assets WHERE size = {mark} AND content_type = {mark} "
            f"AND uploaded_at >= {mark} LIMIT 1",
            (size, content_type, newer_than),
        )
        return row is not None

    def cache_recorded_assets(self) -> int:
        """Fill the asset cache from uploaded rows (after a rebuild from sidecars)."""
        rows = (
            f"{_FROM_UPLOADED_ROWS}created_at FROM files WHERE state = 'uploaded' AND reused = 0 "
            "AND sha256 IS NOT NULL AND asset_id IS NOT NULL AND asset_url IS NOT NULL"
        )
        return self._write(self._insert_new("assets", _ASSET_COLUMNS, rows))
