"""The burst with a fleet: two daemons sharing a PostgreSQL journal against one daemon on
SQLite, the same total concurrency, the same sandbox (50 ms added to every request); and the
journal's bookkeeping per file, PostgreSQL against SQLite.

    python bench/run.py --only fleet              # the rows of the README's table
    python bench/fleet_bench.py --postgresql URL [--files 300]

`bench/run.py` starts a throwaway PostgreSQL server of its own (the tests' `pgcluster`:
`initdb` and `pg_ctl` from the Debian packages, on 127.0.0.1, `fsync=off`) and skips the
scenario, saying why, where none can run. Here, URL names an empty database the benchmark may
fill (each run uses a fresh set of file names). Each daemon is `heygen-watcher run` in its own
process, as in bench/run.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BENCH, Row, sandbox_process, sandbox_settings, wait_until
from daemon_harness import Daemon, drop_burst, fast_api, settings_text, sidecars_in
from journal_bench import measure_bookkeeping

from watcher.state.journal import SqliteJournal

CONCURRENCY = 32  # in all: one daemon with all of it, or two with half each
DAEMONS = 2


def burst(work: Path, api_url: str, count: int, seed: int, journals: list[str | None]) -> float:
    drop = work / "drop"
    drop.mkdir(parents=True)
    folder = [{"path": str(drop), "trust_close_write": True}]
    daemons = []
    for number, journal in enumerate(journals):
        settings = {"journal": journal} if journal else {}
        daemon = Daemon(
            work / f"daemon-{number}",
            api_url,
            folder,
            api=fast_api(CONCURRENCY // len(journals)),
            **settings,
        )
        daemons.append(daemon)
    try:
        for daemon in daemons:
            daemon.wait_ready()
        started = drop_burst(drop, count, seed)
        wait_until(lambda: sidecars_in(drop) >= count, 600, "every sidecar", poll=0.005)
        return count / (time.monotonic() - started)
    finally:
        for daemon in daemons:
            daemon.stop()


def bookkeeping_ms(url: str | None, files: int, scratch: Path) -> float:
    """Median journal time per uploaded file (every write it costs, each committed)."""
    if url is None:
        journal: Any = SqliteJournal(scratch / "bookkeeping.sqlite3")
    else:
        from watcher.state.journal_pg import PgJournal

        journal = PgJournal(url)
    base = int(time.time()) % 1_000_000 * 1000  # fresh paths in a reused database
    return statistics.median(measure_bookkeeping(journal, files, base)) * 1000


def scenario_fleet(work: Path, api_url: str, args: argparse.Namespace) -> list[Row]:
    """bench/run.py's `fleet` scenario: its rows, or none (and why) without a server."""
    sys.path.insert(0, str(BENCH.parent / "tests"))
    try:
        import pgcluster
    except ImportError as error:
        print(f"fleet: skipped: cannot load the PostgreSQL helper ({error})", file=sys.stderr)
        return []
    reason = pgcluster.why_not()
    if reason is not None:
        print(f"fleet: skipped: {reason}", file=sys.stderr)
        return []
    server = pgcluster.Cluster()
    try:
        server.start()
        sandbox_settings(api_url, latency_seconds=args.burst_latency_ms / 1000)
        try:
            seed = 7_000_000
            sqlite = burst(work / "sqlite", api_url, args.files, seed, [None])
            shared = server.new_database()
            fleet = burst(
                work / "postgresql", api_url, args.files, seed + 500_000, [shared] * DAEMONS
            )
        finally:
            sandbox_settings(api_url, latency_seconds=0.0)
        files = args.fleet_journal_files
        work.mkdir(parents=True, exist_ok=True)
        sqlite_ms = bookkeeping_ms(None, files, work)
        postgresql_ms = bookkeeping_ms(server.new_database(), files, work)
    finally:
        server.destroy()
    burst_name = (
        f"fleet: burst of {args.files} files, {args.burst_latency_ms:g} ms/request, "
        f"concurrency {CONCURRENCY} in all"
    )
    half = CONCURRENCY // DAEMONS
    journal_name = f"fleet: journal bookkeeping per uploaded file, median of {files}"
    one_settings = settings_text(fast_api(CONCURRENCY), True)
    each_settings = settings_text(fast_api(half), True)
    return [
        Row(burst_name, f"one daemon, SQLite journal; {one_settings}", sqlite, "files/s"),
        Row(
            burst_name,
            f"{DAEMONS} daemons, one PostgreSQL journal; each {each_settings}",
            fleet,
            "files/s",
            sqlite,
            fleet / sqlite,
        ),
        Row(journal_name, "SQLite (state_dir on local disk)", sqlite_ms, "ms"),
        Row(
            journal_name,
            "PostgreSQL (local server, fsync off, one daemon)",
            postgresql_ms,
            "ms",
            sqlite_ms,
            postgresql_ms / sqlite_ms,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgresql", metavar="URL", required=True)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--daemons", type=int, default=DAEMONS, help="daemons sharing PostgreSQL")
    args = parser.parse_args()
    seed = int(time.time()) % 1_000_000 * 1000
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        with sandbox_process(work / "sandbox-data") as (api_url, _):
            sandbox_settings(api_url, latency_seconds=args.latency_ms / 1000)
            sqlite = burst(work / "sqlite", api_url, args.files, seed, [None])
            fleet = burst(
                work / "fleet",
                api_url,
                args.files,
                seed + 500_000,
                [args.postgresql] * args.daemons,
            )
    print(f"burst: {args.files} files, {args.latency_ms:g} ms/request, concurrency {CONCURRENCY}")
    print(f"  one daemon, SQLite journal:        {sqlite:7.1f} files/s")
    fleet_name = f"{args.daemons} daemon(s), PostgreSQL journal:"
    print(f"  {fleet_name:<35}{fleet:7.1f} files/s ({fleet / sqlite:.2f}x)")


if __name__ == "__main__":
    main()
