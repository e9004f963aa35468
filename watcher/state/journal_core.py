"""What both journal backends do the same way, written once (`JournalCore`): the statements'
logic, in each backend's parameter style, and the transition rules of a file's states."""

from __future__ import annotations

import json
import operator
import time
from abc import ABC, abstractmethod
from dataclasses import fields
from typing import Any

from watcher.state.journal import (
    CachedAsset,
    FileRow,
    PendingSidecar,
    TransitionHook,
    VideoRow,
)
from watcher.state.states import ADMITTED, FileState, check_transition


def _check_admitted(row: FileRow) -> None:
    if row.state not in ADMITTED:
        raise ValueError(
            f"{row.path}: a file is admitted as one of {sorted(ADMITTED)}, not {row.state!r}"
        )


_COLUMNS = [f.name for f in fields(FileRow)]
_STATE_COLUMN = _COLUMNS.index("state")
# A row's values in column order, in one call (a million rows are adopted at start).
_ROW_VALUES = operator.attrgetter(*_COLUMNS)
# What `update` may change: everything but the key and the creation time.
_UPDATABLE = frozenset(_COLUMNS) - {"path", "created_at"}


def _file_row(values: tuple[Any, ...]) -> FileRow:
    listed = list(values)
    listed[_STATE_COLUMN] = FileState(listed[_STATE_COLUMN])
    return FileRow(*listed)


def _known_columns(changes: dict[str, Any], allowed: frozenset[str], table: str) -> None:
    if allowed.issuperset(changes):
        return  # the usual case, answered without building sets
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValueError(f"not columns of {table} that can be changed: {', '.join(unknown)}")


_VIDEO_COLUMNS = [f.name for f in fields(VideoRow)]
_VIDEO_UPDATABLE = frozenset(_VIDEO_COLUMNS) - {"path", "created_at"}


def _new_video(
    path: str, template: str, endpoint: str, state: str, values: dict[str, Any]
) -> dict[str, Any]:
    """A new video row's columns, by name."""
    now = time.time()
    return {
        "path": path,
        "template": template,
        "endpoint": endpoint,
        "state": state,
        "created_at": now,
        "updated_at": now,
        **values,
    }


class JournalCore(ABC):
    """What both journal backends do the same way, written once: the retry policy's queries
    (in each backend's parameter style, `_MARK`) and operations built on `update`."""

    _MARK = "?"
    on_transition: TransitionHook | None

    @abstractmethod
    def update(self, key: str, **changes: Any) -> None: ...

    def _change_state(self, key: str, old: str, new: str) -> None:
        """Inside the transaction that moves a row from ``old`` to ``new``: refuse a move the
        transition table does not allow, and tell the hook of a real change."""
        check_transition(key, old, new)
        if self.on_transition is not None and old != new:
            self.on_transition(key, old, new)

    @abstractmethod
    def _update_for_paths(self, query: str, paths: list[str] | None) -> int:
        """Run an UPDATE taking (now, now), for every row it matches or only for ``paths``."""

    @abstractmethod
    def _one(self, query: str, params: Any = ()) -> tuple[Any, ...] | None:
        """One row of a read (in the backend's parameter style, `_MARK`), or None."""

    @abstractmethod
    def _all(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Every row of a read."""

    def _move_rows(self, db: Any, old_path: str, new_path: str, inode: int | None) -> None:
        """Inside `move`'s transaction (``db``: the backend's connection): the file's rows
        follow it, with its new inode and no retry pending."""
        mark = self._MARK
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

    # -- reads both backends make alike ------------------------------------------------------
    def get(self, path: str) -> FileRow | None:
        row = self._one(
            f"SELECT {', '.join(_COLUMNS)} FROM files WHERE path = {self._MARK}", (path,)
        )
        return _file_row(row) if row else None

    def video(self, path: str) -> VideoRow | None:
        row = self._one(
            f"SELECT {', '.join(_VIDEO_COLUMNS)} FROM videos WHERE path = {self._MARK}", (path,)
        )
        return VideoRow(*row) if row else None

    def video_counts(self) -> dict[str, int]:
        rows = self._all("SELECT state, COUNT(*) FROM videos GROUP BY state")
        return {state: count for state, count in rows}

    def get_meta(self, key: str) -> Any:
        row = self._one(f"SELECT value FROM meta WHERE key = {self._MARK}", (key,))
        return json.loads(row[0]) if row else None

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

    def pending_sidecars(self, due_before: float | None = None) -> list[PendingSidecar]:
        query = "SELECT location, file, folder, document, reason, failures, next_at FROM "
        query += "pending_sidecars"
        arguments: tuple[float, ...] = ()
        if due_before is not None:
            query += f" WHERE next_at <= {self._MARK}"
            arguments = (due_before,)
        rows = self._all(query + " ORDER BY next_at", arguments)
        return [
            PendingSidecar(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])
            for row in rows
        ]

    def next_sidecar_at(self) -> float | None:
        row = self._one("SELECT MIN(next_at) FROM pending_sidecars")
        return row[0] if row else None

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

    def mark_videos_for_retry(self, paths: list[str] | None = None) -> int:
        """Videos that did not complete (lost answer, failed, timed out) start over: a rendered
        body is sent again; one that never got that far looks for its script again."""
        mark = self._MARK
        query = (
            "UPDATE videos SET state = CASE WHEN body IS NULL THEN 'waiting_script' "
            f"ELSE 'ready' END, video_id = NULL, error = NULL, attempts = 0, next_at = {mark}, "
            "deadline = NULL, video_url = NULL, thumbnail_url = NULL, duration = NULL, "
            f"submitted_at = NULL, completed_at = NULL, updated_at = {mark} "
            "WHERE state IN ('unknown', 'failed', 'timed_out')"
        )
        return self._update_for_paths(query, paths)

    def mark_for_retry(self, paths: list[str] | None = None) -> int:
        """Failed (or waiting, or held for the key) rows become due now with a fresh attempt
        count."""
        mark = self._MARK
        query = (
            f"UPDATE files SET state = 'retrying', attempts = 0, next_attempt_at = {mark}, "
            f"updated_at = {mark} WHERE state IN ('failed', 'retrying', 'held')"
        )
        return self._update_for_paths(query, paths)
