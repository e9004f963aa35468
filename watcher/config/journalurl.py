"""Where the journal lives: the SQLite file in `state_dir` (the default), or a PostgreSQL
database shared by a fleet of daemons (`journal: postgresql://user@host/db`).

The database password follows the API key's rules: never in the config file. A URL that
carries one is refused; libpq finds it in `PGPASSFILE` (or `~/.pgpass`), in `PGPASSWORD`, or
the daemon reads the systemd credential `pgpass` as its passfile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from watcher.config.checker import Checker

SCHEMES = ("postgresql", "postgres")
DEFAULT_LEASE_SECONDS = 30.0


def read_journal(check: Checker, top: Mapping[str, Any]) -> str | None:
    """The `journal` key: None for the SQLite default, else a checked libpq URL."""
    url = check.string(top, "", "journal", None)
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        password = parts.password
        query = parse_qs(parts.query)
    except ValueError as error:
        check.error("journal", f"not a valid URL: {error}")
        return None
    if parts.scheme not in SCHEMES:
        check.error(
            "journal",
            "must be a postgresql:// URL (leave it out for the SQLite journal in state_dir)",
        )
        return None
    if password is not None or "password" in query:
        # Said without echoing the URL: the message must not carry the password either.
        check.error(
            "journal",
            "the URL contains a password; passwords never go in the config file: use "
            "PGPASSFILE (or ~/.pgpass), PGPASSWORD, or the systemd credential `pgpass`",
        )
        return None
    return url


def read_lease_seconds(check: Checker, top: Mapping[str, Any]) -> float:
    return float(check.number(top, "", "lease_seconds", DEFAULT_LEASE_SECONDS, minimum=1.0))
