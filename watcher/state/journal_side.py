"""What the journal keeps beside the files' rows, written once for both backends: videos,
sidecars waiting to be written again, requests from commands, and process-wide facts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from watcher.state.journal import VIDEO_ACTIVE_STATES, OutboxEvent, PendingSidecar, VideoRow
from watcher.state.journal_backend import JournalBackend, Statements

VIDEO_COLUMNS = [f.name for f in fields(VideoRow)]
# What `update_video` may change: everything but the key and the creation time.
VIDEO_UPDATABLE = frozenset(VIDEO_COLUMNS) - {"path", "created_at"}
_PENDING_COLUMNS = (
    "location",
    "file",
    "folder",
    "document",
    "reason",
    "failures",
    "next_at",
    "created_at",
)


def known_columns(changes: dict[str, Any], allowed: frozenset[str], table: str) -> None:
    if allowed.issuperset(changes):
        return  # the usual case, answered without building sets
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValueError(f"not columns of {table} that can be changed: {', '.join(unknown)}")


class SideRecords(JournalBackend):
    """Videos, pending sidecars, requests and meta, on any backend."""

    # -- videos ------------------------------------------------------------------------------
    def video(self, path: str) -> VideoRow | None:
        row = self._one(
            f"SELECT {', '.join(VIDEO_COLUMNS)} FROM videos WHERE path = {self._MARK}", (path,)
        )
        return VideoRow(*row) if row else None

    def add_video(self, path: str, template: str, endpoint: str, state: str, **values: Any) -> None:
        now = time.time()
        columns = {
            "path": path,
            "template": template,
            "endpoint": endpoint,
            "state": state,
            "created_at": now,
            "updated_at": now,
            **values,
        }
        marks = ", ".join([self._MARK] * len(columns))

        def replace(db: Statements) -> None:
            # The whole row is replaced (columns not given go back to their defaults).
            db.execute(f"DELETE FROM videos WHERE path = {self._MARK}", (path,))
            db.execute(
                f"INSERT INTO videos ({', '.join(columns)}) VALUES ({marks})",
                tuple(columns.values()),
            )

        self._atomically(replace)

    def update_video(
        self, path: str, *, events: Sequence[OutboxEvent] = (), **changes: Any
    ) -> None:
        known_columns(changes, VIDEO_UPDATABLE, "videos")
        changes["updated_at"] = time.time()
        statement = f"UPDATE videos SET {self._assignments(changes)} WHERE path = {self._MARK}"
        values = (*changes.values(), path)
        if not events:
            self._write(statement, values)
            return

        def with_events(db: Statements) -> None:
            if db.execute(statement, values).rowcount:
                self._insert_events(db, events)

        self._atomically(with_events)

    def claim_video(self, path: str, from_state: str, to_state: str, **changes: Any) -> bool:
        """Move a video from one state to another only if it is still in the first: the one
        caller that wins may act (e.g. send the generate request), any other must not."""
        changes.update(state=to_state, updated_at=time.time())
        mark = self._MARK
        assignments = self._assignments(changes)
        moved = self._write(
            f"UPDATE videos SET {assignments} WHERE path = {mark} AND state = {mark}",
            (*changes.values(), path, from_state),
        )
        return moved == 1

    def claim_video_step(self, path: str, now: float, hold_seconds: float) -> bool:
        mark = self._MARK
        active, states = self._in("state", VIDEO_ACTIVE_STATES)
        taken = self._write(
            f"UPDATE videos SET next_at = {mark} WHERE path = {mark} AND {active} "
            f"AND (next_at IS NULL OR next_at <= {mark})",
            (now + hold_seconds, path, *states, now),
        )
        return taken == 1

    def due_videos(self, now: float) -> list[str]:
        active, states = self._in("state", VIDEO_ACTIVE_STATES)
        rows = self._all(
            f"SELECT path FROM videos WHERE {active} AND next_at <= {self._MARK} ORDER BY next_at",
            (*states, now),
        )
        return [row[0] for row in rows]

    def next_video_at(self) -> float | None:
        active, states = self._in("state", VIDEO_ACTIVE_STATES)
        row = self._one(f"SELECT MIN(next_at) FROM videos WHERE {active}", states)
        return row[0] if row else None

    def videos_in(self, states: tuple[str, ...]) -> list[VideoRow]:
        wanted, values = self._in("state", states)
        rows = self._all(f"SELECT {', '.join(VIDEO_COLUMNS)} FROM videos WHERE {wanted}", values)
        return [VideoRow(*row) for row in rows]

    def video_counts(self) -> dict[str, int]:
        rows = self._all("SELECT state, COUNT(*) FROM videos GROUP BY state")
        return {state: count for state, count in rows}

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

    def _update_for_paths(self, query: str, paths: list[str] | None) -> int:
        """Run an UPDATE taking (now, now), for every row it matches or only for ``paths``."""
        now = time.time()
        if paths is None:
            return self._write(query, (now, now), files=True)

        def each_chunk(db: Statements) -> int:
            changed = 0
            for chunk in self._chunks(paths):
                among, values = self._in("path", chunk)
                changed += db.execute(f"{query} AND {among}", (now, now, *values)).rowcount
            return changed

        return self._atomically(each_chunk, files=True)

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
        mark = self._MARK
        replace = self._upsert("pending_sidecars", _PENDING_COLUMNS, ("location",))

        def keep(db: Statements) -> int:
            now = time.time()
            row = db.execute(
                "SELECT failures, created_at FROM pending_sidecars "
                f"WHERE location = {mark}{self._FOR_UPDATE}",
                (location,),
            ).fetchone()
            failures, created = (row[0] + 1, row[1]) if row else (1, now)
            values = (file, folder, json.dumps(document), reason, failures)
            db.execute(replace, (location, *values, next_at_for(failures), created))
            return int(failures)

        return self._atomically(keep)

    def sidecar_written(self, location: str) -> None:
        """A write at ``location`` succeeded: whatever waited for it is superseded."""
        where = f"FROM pending_sidecars WHERE location = {self._MARK}"
        # Nearly always nothing waited: a read is much cheaper than a write.
        if self._one(f"SELECT 1 {where}", (location,)) is not None:
            self._write(f"DELETE {where}", (location,))

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

    # -- work handed to a running daemon by a command ----------------------------------------
    def request(self, path: str, folder: str) -> float:
        """Ask a daemon using this journal to look at ``path``; returns the time asked."""
        now = time.time()
        self._write(
            self._upsert("requests", ("path", "folder", "requested_at"), ("path",)),
            (path, folder, now),
        )
        return now

    # -- process-wide facts (for `status`) ---------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self._write(self._upsert("meta", ("key", "value"), ("key",)), (key, json.dumps(value)))

    def get_meta(self, key: str) -> Any:
        row = self._one(f"SELECT value FROM meta WHERE key = {self._MARK}", (key,))
        return json.loads(row[0]) if row else None

    def unregister_daemon(self) -> None:
        self._write(f"DELETE FROM daemons WHERE owner = {self._MARK}", (self.owner,))
