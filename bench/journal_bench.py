"""Journal figures at 100,000 rows: start-up cost and per-file bookkeeping.

    python bench/journal_bench.py [--rows 100000] [--postgresql URL]

Start-up is what the daemon does with the journal before watching: open it (integrity check),
load every row's fingerprint for the scan, and query the unfinished and due rows. Bookkeeping is
every journal write one uploaded file costs (admitted, slot recorded, recording, uploaded
with its asset cached, and the claim taken and released), each its own committed transaction
as in the daemon. With ``--postgresql URL`` (an empty database) the bookkeeping is measured on
the shared journal too, for the overhead per file of a fleet's journal.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from watcher.state.journal import FileRow
from watcher.state.journal_api import Journal as AnyJournal
from watcher.state.journal_sqlite import SqliteJournal as Journal


def row(index: int, state: str, now: float) -> FileRow:
    return FileRow(
        path=f"/srv/drop/sub{index % 100}/file{index:06}.jpg",
        folder="/srv/drop",
        size=100_000 + index,
        mtime_ns=1_700_000_000_000_000_000 + index,
        inode=index,
        sha256=f"{index:064x}",
        content_type="image/jpeg",
        state=state,
        attempts=0,
        next_attempt_at=None,
        asset_id=f"asset{index}",
        asset_url=f"https://files.heygen.ai/asset/asset{index}",
        protocol="v1-presigned",
        reused=0,
        previous_asset_id=None,
        slot=None,
        slot_expires_at=None,
        sidecar=None,
        last_error=None,
        created_at=now,
        updated_at=now,
    )


def fill(path: Path, rows: int) -> None:
    journal = Journal(path)
    now = time.time()
    with journal._transaction() as db:  # one bulk transaction: setting up, not measuring
        for index in range(rows):
            values = row(index, "uploaded", now)
            db.execute(
                "INSERT INTO files VALUES (" + ", ".join("?" * 21) + ")",
                tuple(vars(values).values()),
            )
    journal.close()


def measure_startup(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    journal = Journal(path)
    fingerprints = journal.fingerprints()
    journal.rows_in(("queued", "uploading", "recording", "held"))
    journal.rows_in(("failed",))
    journal.due(time.time())
    elapsed = time.perf_counter() - started
    journal.close()
    return elapsed, len(fingerprints)


def measure_bookkeeping(journal: AnyJournal, files: int, base: int) -> list[float]:
    timings = []
    for offset in range(files):
        index = base + offset
        started = time.perf_counter()
        fresh = row(index, "queued", time.time())
        journal.put(fresh)
        journal.claim(fresh.path)
        journal.record_slot(
            fresh.path,
            slot=f'{{"protocol": "v1-presigned", "url": "https://s/{index}"}}',
            asset_id=f"a{index}",
            expires_at=None,
            attempts=1,
        )
        journal.update(fresh.path, state="recording", asset_id=f"a{index}", asset_url="u")
        journal.finish_upload(fresh.path, cache=True, slot=None, slot_expires_at=None)
        journal.get(fresh.path)
        journal.release(fresh.path)
        timings.append(time.perf_counter() - started)
    journal.close()
    return timings


def summary(label: str, timings: list[float]) -> None:
    per_file_ms = [t * 1000 for t in timings]
    p99 = sorted(per_file_ms)[int(len(per_file_ms) * 0.99)]
    median = statistics.median(per_file_ms)
    print(f"{label + ' per file, median':<42}{median:>9.3f} ms")
    print(f"{label + ' per file, mean':<42}{statistics.mean(per_file_ms):>9.3f} ms")
    print(f"{label + ' per file, p99':<42}{p99:>9.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--postgresql", metavar="URL", help="also measure this shared journal")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "journal.sqlite3"
        fill(path, args.rows)
        startup, loaded = measure_startup(path)
        timings = measure_bookkeeping(Journal(path), args.files, args.rows)
    print(f"journal with {loaded:,} rows")
    print(f"{'measure':<42}{'figure':>12}   target: start-up ≤ 2 s, per file ≤ 1 ms (SQLite)")
    print(f"{'start-up (open, check, load)':<42}{startup:>10.3f} s")
    summary("SQLite bookkeeping", timings)
    if args.postgresql:
        from watcher.state.journal_pg import PgJournal

        summary(
            "PostgreSQL bookkeeping", measure_bookkeeping(PgJournal(args.postgresql), args.files, 0)
        )


if __name__ == "__main__":
    main()
