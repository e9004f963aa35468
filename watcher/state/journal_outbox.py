"""The outbox, written once for both backends: notifications written in the same transaction
as the change that causes them, then delivered by one daemon (claimed for a lease), retried,
and given up (dead) after a while."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

from watcher.state.journal import OutboxEvent
from watcher.state.journal_backend import JournalBackend

OUTBOX_COLUMNS = [f.name for f in fields(OutboxEvent)]
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


class OutboxRecords(JournalBackend):
    def add_events(self, events: Sequence[OutboxEvent]) -> None:
        """Events caused by no change of the journal's own (a test notification)."""
        self._atomically(lambda db: self._insert_events(db, events))

    def claim_events(self, now: float, lease_seconds: float, limit: int) -> list[OutboxEvent]:
        """Due pending events this daemon now holds for ``lease_seconds`` (each one claimed by
        one conditional UPDATE: another daemon of a fleet that claimed it first wins)."""
        mark = self._MARK
        due = self._all(
            f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM outbox WHERE state = {mark} "
            f"AND next_at <= {mark} AND (lease_until IS NULL OR lease_until < {mark}) "
            f"ORDER BY next_at LIMIT {int(limit)}",
            (PENDING, now, now),
        )
        claimed = []
        for row in due:
            taken = self._write(
                f"UPDATE outbox SET owner = {mark}, lease_until = {mark} WHERE id = {mark} "
                f"AND state = {mark} AND (lease_until IS NULL OR lease_until < {mark})",
                (self.owner, now + lease_seconds, row[0], PENDING, now),
            )
            if taken == 1:
                claimed.append(OutboxEvent(*row))
        return claimed

    def event_delivered(self, event_id: str) -> None:
        self._set_event(event_id, state=DELIVERED, owner=None, lease_until=None, last_error=None)

    def event_retry(self, event_id: str, attempts: int, next_at: float, error: str) -> None:
        self._set_event(
            event_id,
            attempts=attempts,
            next_at=next_at,
            last_error=error,
            owner=None,
            lease_until=None,
        )

    def event_dead(self, event_id: str, attempts: int, error: str) -> None:
        self._set_event(
            event_id, state=DEAD, attempts=attempts, last_error=error, owner=None, lease_until=None
        )

    def next_event_at(self) -> float | None:
        row = self._one(f"SELECT MIN(next_at) FROM outbox WHERE state = {self._MARK}", (PENDING,))
        return float(row[0]) if row and row[0] is not None else None

    def outbox_counts(self) -> dict[str, int]:
        rows = self._all("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        return {state: int(count) for state, count in rows}

    def dead_events(self, limit: int = 10) -> list[OutboxEvent]:
        rows = self._all(
            f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM outbox WHERE state = {self._MARK} "
            f"ORDER BY created_at DESC LIMIT {int(limit)}",
            (DEAD,),
        )
        return [OutboxEvent(*row) for row in rows]

    def _set_event(self, event_id: str, **changes: object) -> None:
        self._write(
            f"UPDATE outbox SET {self._assignments(changes)} WHERE id = {self._MARK}",
            (*changes.values(), event_id),
        )
