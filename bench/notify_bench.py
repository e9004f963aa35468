"""Notifications must not slow uploads: the burst with a webhook to a receiver that answers in
200 ms, against the same burst with no notification, in the same run.

    python bench/notify_bench.py [--files 500] [--delay 0.2]

Settings: v1-presigned, `concurrency` 4, `trust_close_write`, one folder, the sandbox in its
own process; the webhook row adds `notify: [{url: <receiver>, secret_file: …}]` (events: all).
The row is met when the throughput with the webhook is at least 0.95× of the one without.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import sandbox_process, wait_until
from daemon_harness import Daemon, drop_burst, fast_api, sidecars_in


class SlowReceiver:
    """Answers every POST with 204 after ``delay`` seconds; counts what it got."""

    def __init__(self, delay: float) -> None:
        self.count = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(delay)  # the receiver's own slowness, which the bench is about
                with lock:
                    receiver.count += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def burst(work: Path, api_url: str, files: int, seed: int, notify: list[dict[str, str]]) -> float:
    drop = work / "drop"
    drop.mkdir(parents=True)
    daemon = Daemon(
        work,
        api_url,
        [{"path": str(drop), "trust_close_write": True, "settle_seconds": 0.2}],
        api=fast_api(4),
        notify=notify,
    )
    try:
        daemon.wait_ready()
        started = drop_burst(drop, files, seed)
        wait_until(lambda: sidecars_in(drop) >= files, 600, "the sidecars", poll=0.01)
        return files / (time.monotonic() - started)
    finally:
        daemon.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--delay", type=float, default=0.2, help="the receiver's answer time")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    receiver = SlowReceiver(args.delay)
    try:
        secret = work / "webhook-secret"
        secret.write_text("whsec_" + base64.b64encode(os.urandom(24)).decode() + "\n")
        secret.chmod(0o600)
        hook = [{"url": receiver.url, "secret_file": str(secret)}]
        bares: list[float] = []
        hookeds: list[float] = []
        with sandbox_process(work / "sandbox") as (api_url, _storage):
            # Alternating rounds, medians: one burst's noise is larger than the difference.
            for round_ in range(args.rounds):
                seed = 2 * round_ * args.files
                bares.append(burst(work / f"bare{round_}", api_url, args.files, seed, []))
                hookeds.append(
                    burst(work / f"hook{round_}", api_url, args.files, seed + args.files, hook)
                )
        bare, hooked = statistics.median(bares), statistics.median(hookeds)
        ratio = hooked / bare
        settings = (
            f"{args.files} PNGs, v1-presigned, concurrency 4, trust_close_write, "
            f"median of {args.rounds}"
        )
        print(f"| measure ({settings}) | files/s | against no webhook | must | met |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| burst, no notification | {bare:.1f} | | | |")
        print(
            f"| burst, webhook answering in {args.delay * 1000:.0f} ms | {hooked:.1f} | "
            f"{ratio:.2f}× | ≥ 0.95× | {'yes' if ratio >= 0.95 else 'NO'} |"
        )
        pairs = ", ".join(f"{b:.0f}/{h:.0f}" for b, h in zip(bares, hookeds, strict=True))
        print(f"(files/s of each round, without/with: {pairs})")
    finally:
        receiver.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
