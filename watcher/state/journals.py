"""Opening the configured journal: the SQLite file in `state_dir`, or the shared PostgreSQL
database named by `journal:` (whose driver is imported only when it is used)."""

from __future__ import annotations

from collections.abc import Callable

from watcher.config import Config
from watcher.state.journal import JournalError
from watcher.state.journal_api import Journal
from watcher.state.journal_sqlite import SqliteJournal


def open_journal(
    config: Config, *, wait: bool = False, on_waiting: Callable[[], None] = lambda: None
) -> Journal:
    """``wait``: a database that does not answer yet is waited for (loudly) instead of being
    an error; the daemon waits, a command reports it."""
    if config.journal_url is None:
        return SqliteJournal(config.journal_path)
    try:
        from watcher.state.journal_pg import PgJournal
    except ImportError:
        raise JournalError(
            "a postgresql:// journal needs the PostgreSQL driver: "
            "pip install 'heygen-watcher[postgresql]'"
        ) from None
    return PgJournal(
        config.journal_url,
        lease_seconds=config.lease_seconds,
        wait=wait,
        on_waiting=on_waiting,
    )


def journal_label(config: Config) -> str:
    """Where the journal is, for messages, without opening it."""
    if config.journal_url is None:
        return str(config.journal_path)
    from watcher.state.journal_pg import safe_url

    return safe_url(config.journal_url)
