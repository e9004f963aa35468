"""The burst with a fleet: two daemons sharing a PostgreSQL journal against one daemon on
SQLite, the same total concurrency, the same sandbox (50 ms added to every request).

    python bench/fleet_bench.py --postgresql URL [--files 300]

URL names an empty database the benchmark may fill (each run uses a fresh set of file names).
Each daemon is `heygen-watcher run` in its own process, as in bench/run.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import sandbox_process, sandbox_settings, wait_until
from run import Daemon, drop_burst, fast_api, sidecars_in

CONCURRENCY = 32  # in all: one daemon with all of it, or two with half each


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgresql", metavar="URL", required=True)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--daemons", type=int, default=2, help="daemons sharing PostgreSQL")
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
