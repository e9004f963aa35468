"""What a journal backend supplies to the operations written once (`watcher.state.journal_core`):
running a statement (its parameter mark, `?` or `%s`), a transaction, the few phrases its SQL
dialect spells its own way, and, for a shared journal, the claims on rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import astuple, fields
from typing import Any, Protocol, TypeVar

from watcher.state.journal import FileRow, OutboxEvent, TransitionHook

T = TypeVar("T")
# The outbox's columns, in `OutboxEvent`'s order (`journal_outbox`).
_OUTBOX_COLUMNS = [f.name for f in fields(OutboxEvent)]


class Results(Protocol):
    """What a statement run in a transaction answers."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Statements(Protocol):
    """A connection inside one transaction (in the backend's parameter style)."""

    def execute(self, query: str, params: Any = ..., /) -> Results: ...

    def executemany(self, query: str, params: Iterable[Any], /) -> object: ...


class JournalBackend(ABC):
    """The primitives each backend implements; everything else is built on them."""

    # The parameter mark of the backend's driver.
    _MARK: str
    # At most this many values in one `_in` (SQLite's oldest limit on bound parameters is 999).
    _LOOKUP_CHUNK: int
    # What a read in a transaction adds to keep its rows locked until the commit (nothing on
    # SQLite, whose write transaction holds the whole database already).
    _FOR_UPDATE: str
    # Told of every change of a file's state (the daemon's -v log).
    on_transition: TransitionHook | None
    # This daemon's name in the daemons table (and in a shared journal's claims).
    owner: str

    @abstractmethod
    def _one(self, query: str, params: Any = ()) -> tuple[Any, ...] | None:
        """One row of a read, or None."""

    @abstractmethod
    def _all(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Every row of a read."""

    @abstractmethod
    def _write(self, query: str, params: Any = (), *, files: bool = False) -> int:
        """Run one write, committed on its own; how many rows it changed. ``files``: it may
        change the files table (a backend that caches the counts counts again)."""

    @abstractmethod
    def _atomically(self, work: Callable[[Statements], T], *, files: bool = False) -> T:
        """Run ``work`` in one write transaction (``files`` as for `_write`)."""

    @abstractmethod
    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        """A condition that ``column`` is one of ``values``, and its parameters."""

    @abstractmethod
    def _upsert(
        self, table: str, columns: Sequence[str], keys: Sequence[str], rows: str | None = None
    ) -> str:
        """An INSERT of ``columns`` that replaces the row with the same ``keys``: from one
        row of parameters, or from the ``rows`` of a SELECT."""

    @abstractmethod
    def _insert_new(self, table: str, columns: Sequence[str], rows: str) -> str:
        """An INSERT of the ``rows`` of a SELECT that keeps any row already there."""

    def _assignments(self, columns: Iterable[str]) -> str:
        """The SET list of an UPDATE of ``columns``, each from its own parameter."""
        return ", ".join(f"{name} = {self._MARK}" for name in columns)

    def _insert_events(self, db: Statements, events: Sequence[OutboxEvent]) -> None:
        """Inside the caller's transaction: the notifications its change causes (any write
        of the journal may cause some; `journal_outbox` delivers them)."""
        if not events:
            return
        marks = ", ".join([self._MARK] * len(_OUTBOX_COLUMNS))
        db.executemany(
            f"INSERT INTO outbox ({', '.join(_OUTBOX_COLUMNS)}) VALUES ({marks})",
            [astuple(event) for event in events],
        )

    def _chunks(self, values: Sequence[T]) -> Iterator[Sequence[T]]:
        for start in range(0, len(values), self._LOOKUP_CHUNK):
            yield values[start : start + self._LOOKUP_CHUNK]

    # -- claims ------------------------------------------------------------------------------
    # A journal that no other process writes holds no claims: nothing is fenced. The shared
    # journal overrides these (see `watcher.state.journal_pg_claims`).
    def _holds(self, path: str) -> bool:
        """Has this daemon claimed the row (so each write must check it still has)?"""
        return False

    def _fence(self, path: str, owner: str | None) -> None:
        """Refuse a write to a held row whose ``owner`` (read in the write's transaction,
        locked until the commit) is no longer this daemon: `ClaimLost`."""
        return None

    def _admitted(self, row: FileRow) -> None:
        """``row`` was admitted (`put`): who holds it now."""
        return None

    def _let_go(self, path: str) -> None:
        """This daemon's work on the row ended: its writes need no fence any more."""
        return None

    def _moved(self, old_path: str, new_path: str) -> None:
        """The row moved with its file: a claim on it moves along."""
        return None
