"""Measure the sandbox itself: one large presigned PUT, and small API requests per second.

The sandbox runs in its own process (``python -m watcher.sandbox``) so that the client's work
does not share its interpreter lock. Usage::

    python bench/sandbox_bench.py [--size-mib 1024] [--put-runs 3] [--threads 4] [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from common import API_KEY, MIB, sandbox_process

TARGET_PUT_MB_S = 300.0
TARGET_SMALL_RPS = 1000.0


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    target: float | None


def make_file(path: Path, size_mib: int) -> None:
    """Write the upload source and flush it to disk, so the kernel's writeback of this
    input does not throttle the sandbox's own writes while they are being timed."""
    block = os.urandom(MIB)
    with open(path, "wb") as out:
        for _ in range(size_mib):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())


def new_slot(api_url: str) -> str:
    created = requests.post(
        f"{api_url}/v1/asset",
        json={"content_type": "video/mp4"},
        headers={"X-Api-Key": API_KEY},
        timeout=30,
    )
    created.raise_for_status()
    return str(created.json()["data"]["url"])


def bench_large_puts(api_url: str, source: Path, runs: int) -> list[Result]:
    """PUT one file ``runs`` times, each into a fresh v1 presigned slot, streamed by requests
    with its Content-Length. The median is the figure: single runs swing with the kernel's
    writeback of earlier runs' bytes."""
    size = source.stat().st_size
    rates = []
    for _ in range(runs):
        url = new_slot(api_url)
        with open(source, "rb") as body:
            started = time.perf_counter()
            response = requests.put(
                url, data=body, headers={"Content-Type": "video/mp4"}, timeout=600
            )
            elapsed = time.perf_counter() - started
        response.raise_for_status()
        rates.append(size / elapsed / 1e6)
    results = [Result(f"large PUT, run {i}", rate, "MB/s", None) for i, rate in enumerate(rates, 1)]
    median = statistics.median(rates)
    return [*results, Result("large PUT, median", median, "MB/s", TARGET_PUT_MB_S)]


def _small_worker(api_url: str, deadline: float, counts: list[int], index: int) -> None:
    """POST /v1/asset over one keep-alive connection until the deadline."""
    split = urlsplit(api_url)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
    body = json.dumps({"content_type": "image/png"})
    headers = {"X-Api-Key": API_KEY, "Content-Type": "application/json"}
    done = 0
    while time.perf_counter() < deadline:
        connection.request("POST", "/v1/asset", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"POST /v1/asset answered {response.status}")
        done += 1
    connection.close()
    counts[index] = done


def bench_small_requests(api_url: str, threads: int, seconds: float) -> Result:
    counts = [0] * threads
    started = time.perf_counter()
    deadline = started + seconds
    workers = [
        threading.Thread(target=_small_worker, args=(api_url, deadline, counts, i))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return Result(
        f"POST /v1/asset, {threads} threads", sum(counts) / elapsed, "req/s", TARGET_SMALL_RPS
    )


def passed(result: Result) -> bool:
    return result.target is None or result.value >= result.target


def print_table(results: list[Result]) -> None:
    print(f"{'measure':<32} {'value':>8} {'unit':<6} {'target':>8}  ok")
    for r in results:
        target = f"{r.target:>8.0f}" if r.target is not None else " " * 8
        ok = "" if r.target is None else "yes" if passed(r) else "NO"
        print(f"{r.name:<32} {r.value:>8.0f} {r.unit:<6} {target}  {ok}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the large PUT")
    parser.add_argument("--put-runs", type=int, default=3, help="number of large PUTs")
    parser.add_argument("--threads", type=int, default=4, help="threads for small requests")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of small requests")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as scratch:
        root = Path(scratch)
        source = root / "large.bin"
        make_file(source, args.size_mib)
        with sandbox_process(root / "data") as (api_url, _storage_url):
            results = [
                *bench_large_puts(api_url, source, args.put_runs),
                bench_small_requests(api_url, args.threads, args.seconds),
            ]
    print_table(results)
    return 0 if all(passed(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
