"""The shared journal's connections: a few PostgreSQL connections shared by a daemon's threads,
and the retry that turns a lost connection into a pause instead of a failure.

**Connection loss** pauses work instead of failing it: every operation is retried, with the
connection opened again, until the database answers or the pool is closed. Nothing is marked
failed meanwhile (the caller simply waits), the outage is logged loudly when it starts and
every minute while it lasts, and once more when it ends. Each statement can safely run twice
(a commit whose answer was lost is repeated): the journal's writes set values, they do not add.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from watcher.state.journal import JournalError

# Under the shared journal's name: the messages are about it, whichever module logs them.
log = logging.getLogger("watcher.state.journal_pg")

T = TypeVar("T")
_OUTAGE_REMINDER_SECONDS = 60.0
_RETRY_MAX_SECONDS = 5.0
# Connections per daemon, at most: the server needs max_connections ≥ this × the fleet's size.
POOL_SIZE = 8


class JournalUnavailable(JournalError):
    """The journal was closed while waiting for its database to come back."""


def reason(error: psycopg.Error) -> str:
    """The first line of libpq's message (the rest repeats the host and port)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class ConnectionPool:
    """Up to `POOL_SIZE` connections made by ``connect``: statements of different workers run
    side by side instead of queueing behind one connection. ``where`` names the database in
    messages; ``waiting`` is called about every second by each thread waiting for it (a
    daemon's watchdog must not take a paused journal for a wedged worker)."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        where: str,
        waiting: Callable[[], None],
    ) -> None:
        self._connect = connect
        self._where = where
        self._waiting = waiting
        self._closing = threading.Event()
        self._pool = threading.Condition()
        self._idle: list[psycopg.Connection[Any]] = []
        self._opened = 0
        self._state = threading.Lock()  # the outage's bookkeeping
        self._outage_since: float | None = None
        self._outage_logged = 0.0
        self._outage_reason: str | None = None

    @property
    def outage(self) -> str | None:
        """Why the database is being waited for right now, or None."""
        return self._outage_reason

    def open_first(self) -> None:
        """Connect once now: a database that does not answer is a `JournalError` at once."""
        try:
            first = self._connect()
        except psycopg.Error as error:
            raise JournalError(
                f"journal database {self._where} cannot be reached: {reason(error)}"
            ) from None
        with self._pool:
            self._opened += 1
            self._idle.append(first)

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work`` on a connection; on a lost connection, wait for the database (loudly)
        and run it again: work pauses, nothing fails."""
        delay = 0.2
        while True:
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = self._acquire()
                result = work(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                # A broken connection is opened again; a live one (a deadlock, a cancelled
                # statement) had its transaction rolled back, and the statement runs again.
                if conn is not None:
                    self._give_back(conn)
                if self._closing.is_set():
                    raise JournalUnavailable(f"journal database {self._where} is closed") from None
                self._lost(error)
                self._waiting()
                self._closing.wait(delay)
                delay = min(_RETRY_MAX_SECONDS, delay * 2)
                continue
            except BaseException:
                if conn is not None:
                    self._give_back(conn)
                raise
            self._give_back(conn)
            if self._outage_since is not None:
                self._recovered()
            return result

    def close(self) -> None:
        self._closing.set()
        with self._pool:
            idle, self._idle = self._idle, []
            self._opened -= len(idle)
            self._pool.notify_all()
        for conn in idle:
            conn.close()

    def _acquire(self) -> psycopg.Connection[Any]:
        with self._pool:
            while True:
                if self._closing.is_set():
                    raise JournalUnavailable(f"journal database {self._where} is closed")
                if self._idle:
                    return self._idle.pop()
                if self._opened < POOL_SIZE:
                    self._opened += 1
                    break
                if not self._pool.wait(1.0):
                    self._waiting()  # every connection is busy, maybe waiting for the server
        try:
            return self._connect()
        except BaseException:
            self._discard(None)
            raise

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        if conn.broken or conn.closed or self._closing.is_set():
            self._discard(conn)
            return
        with self._pool:
            self._idle.append(conn)
            self._pool.notify()

    def _discard(self, conn: psycopg.Connection[Any] | None) -> None:
        if conn is not None:
            conn.close()
        with self._pool:
            self._opened -= 1
            self._pool.notify()

    def _recovered(self) -> None:
        with self._state:
            if self._outage_since is None:
                return
            log.warning(
                "journal database %s is back after %.0fs; resuming work",
                self._where,
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None
            self._outage_reason = None

    def _lost(self, error: psycopg.Error) -> None:
        now = time.monotonic()
        with self._state:
            self._outage_reason = f"journal database {self._where} unreachable: {reason(error)}"
            if self._outage_since is None:
                self._outage_since = now
                self._outage_logged = now
                log.error(
                    "journal database %s unreachable (%s): work paused, nothing is marked "
                    "failed; resuming when it answers again",
                    self._where,
                    reason(error),
                )
            elif now - self._outage_logged >= _OUTAGE_REMINDER_SECONDS:
                self._outage_logged = now
                log.error(
                    "journal database %s still unreachable after %.0fs (%s); work paused",
                    self._where,
                    now - self._outage_since,
                    reason(error),
                )
